package chart

import (
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

// rules returns the rules of a rendered ClusterRole as "resource verb"
// pairs.
func rules(t *testing.T, objs []*unstructured.Unstructured, name string) []string {
	t.Helper()
	return kindRules(t, objs, "ClusterRole", name)
}

// kindRules returns the rules of a rendered ClusterRole or Role as
// "resource verb" pairs.
func kindRules(t *testing.T, objs []*unstructured.Unstructured, kind, name string) []string {
	t.Helper()
	o := Find(objs, kind, name)
	if o == nil {
		t.Fatalf("%s %s not rendered", kind, name)
	}
	raw, err := yaml.Marshal(o.Object["rules"])
	if err != nil {
		t.Fatal(err)
	}
	var rs []struct {
		Resources, Verbs []string
	}
	if err := yaml.Unmarshal(raw, &rs); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range rs {
		for _, res := range r.Resources {
			for _, v := range r.Verbs {
				out = append(out, res+" "+v)
			}
		}
	}
	return out
}

// The agent's and the descheduler's member roles grant what their code
// calls and nothing that reaches further (a Secret outside the release
// namespace, list or watch of Secrets, patch, another node's status writes
// are left to the admission policy), and the member mode renders the
// agents' node restriction policy, bound, unless agent.nodeRestriction is
// off.
func TestMemberRolesAreNarrow(t *testing.T) {
	objs := render(t, "livemigrate-system", append(slices.Clone(memberSets), "deschedulerMemberIdentity.kind=User", "deschedulerMemberIdentity.name=karmada")...)
	agent := rules(t, objs, "livemigrate-agent")
	for _, want := range []string{"podcheckpoints update", "podcheckpoints/status update", "volumereplications/status update"} {
		if !slices.Contains(agent, want) {
			t.Errorf("the agent's role lacks %q: %v", want, agent)
		}
	}
	for _, r := range agent {
		if strings.HasSuffix(r, " patch") && !strings.HasPrefix(r, "events ") || strings.HasPrefix(r, "secrets ") || strings.HasSuffix(r, " delete") {
			t.Errorf("the agent's ClusterRole grants %q, which the agent never uses (or needs only in its own namespace)", r)
		}
	}
	desch := rules(t, objs, "livemigrate-descheduler-member")
	for _, r := range desch {
		if strings.HasPrefix(r, "secrets ") {
			t.Errorf("the descheduler's member ClusterRole grants %q: Secrets only in the agents' namespace", r)
		}
	}
	// The replication credentials: a Role in the release namespace (the
	// agents'), bound to the agent and to the descheduler's identity.
	for _, c := range []struct {
		role, subject string
		want          []string
	}{
		{"livemigrate-agent-credentials", "livemigrate-agent", []string{"secrets get"}},
		{"livemigrate-descheduler-member", "karmada", []string{"secrets get", "secrets create", "secrets delete"}},
	} {
		if got := kindRules(t, objs, "Role", c.role); !slices.Equal(got, c.want) {
			t.Errorf("Role %s grants %v, want %v", c.role, got, c.want)
		}
		role := Find(objs, "Role", c.role)
		if role.GetNamespace() != "livemigrate-system" {
			t.Errorf("Role %s is in namespace %q, want the release namespace", c.role, role.GetNamespace())
		}
		b := Find(objs, "RoleBinding", c.role)
		if b == nil || b.GetNamespace() != "livemigrate-system" {
			t.Errorf("RoleBinding %s not rendered in the release namespace: %v", c.role, b)
			continue
		}
		raw, _ := yaml.Marshal(b.Object)
		if !strings.Contains(string(raw), "name: "+c.subject) || !strings.Contains(string(raw), "kind: Role\n") {
			t.Errorf("RoleBinding %s does not bind Role %s to %s:\n%s", c.role, c.role, c.subject, raw)
		}
	}

	policy := Find(objs, "ValidatingAdmissionPolicy", "livemigrate-agent-node-restriction")
	if policy == nil || Find(objs, "ValidatingAdmissionPolicyBinding", "livemigrate-agent-node-restriction") == nil {
		t.Fatal("the member mode renders no node restriction policy and binding for the agents")
	}
	raw, _ := yaml.Marshal(policy.Object)
	if !strings.Contains(string(raw), "system:serviceaccount:livemigrate-system:livemigrate-agent") {
		t.Errorf("the policy does not match the agent's ServiceAccount of the release namespace:\n%s", raw)
	}
	off := render(t, "livemigrate-system", append(slices.Clone(memberSets), "agent.nodeRestriction=false")...)
	if Find(off, "ValidatingAdmissionPolicy", "livemigrate-agent-node-restriction") != nil {
		t.Error("agent.nodeRestriction=false still renders the policy")
	}
}

// roleRules returns the rules of a rendered Role or ClusterRole as
// "resource verb" pairs, with "[names]" when resourceNames restrict them.
func roleRules(t *testing.T, objs []*unstructured.Unstructured, kind, namespace, name string) []string {
	t.Helper()
	var o *unstructured.Unstructured
	for _, c := range objs {
		if c.GetKind() == kind && c.GetName() == name && c.GetNamespace() == namespace {
			o = c
		}
	}
	if o == nil {
		t.Fatalf("%s %s/%s not rendered", kind, namespace, name)
	}
	raw, err := yaml.Marshal(o.Object["rules"])
	if err != nil {
		t.Fatal(err)
	}
	var rs []struct {
		Resources, Verbs, ResourceNames []string
	}
	if err := yaml.Unmarshal(raw, &rs); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range rs {
		for _, res := range r.Resources {
			for _, v := range r.Verbs {
				rule := res + " " + v
				if len(r.ResourceNames) > 0 {
					rule += " [" + strings.Join(r.ResourceNames, ",") + "]"
				}
				out = append(out, rule)
			}
		}
	}
	return out
}

// bound returns the subjects' names bound to a role by the rendered
// bindings of kind bindingKind.
func bound(objs []*unstructured.Unstructured, bindingKind, namespace, role string) []string {
	var out []string
	for _, o := range objs {
		if o.GetKind() != bindingKind || o.GetNamespace() != namespace {
			continue
		}
		if name, _, _ := unstructured.NestedString(o.Object, "roleRef", "name"); name != role {
			continue
		}
		subjects, _, _ := unstructured.NestedSlice(o.Object, "subjects")
		for _, s := range subjects {
			out = append(out, s.(map[string]any)["name"].(string))
		}
	}
	return out
}

// What the descheduler and the doctor read in a member with the push-mode
// credentials (the agents' report Leases, the doctor's CRDs and webhook
// registration) is bound to deschedulerMemberIdentity, read-only and, where
// the names are known, by name.
func TestMemberIdentityReadsAgentReports(t *testing.T) {
	objs := render(t, "livemigrate-system", append(slices.Clone(memberSets), "deschedulerMemberIdentity.kind=User", "deschedulerMemberIdentity.name=karmada-push")...)
	if got := roleRules(t, objs, "Role", "livemigrate-system", "livemigrate-agent-reports"); !slices.Equal(got, []string{"leases get"}) {
		t.Errorf("livemigrate-agent-reports grants %v, want [leases get]", got)
	}
	want := []string{
		"customresourcedefinitions get [podcheckpoints.agent.livemigrate.io,podrestores.agent.livemigrate.io,volumereplications.agent.livemigrate.io]",
		"mutatingwebhookconfigurations get [livemigrate-restore]",
	}
	if got := roleRules(t, objs, "ClusterRole", "", "livemigrate-doctor-member"); !slices.Equal(got, want) {
		t.Errorf("livemigrate-doctor-member grants %v, want %v", got, want)
	}
	for _, b := range []struct{ kind, namespace, role string }{
		{"ClusterRoleBinding", "", "livemigrate-descheduler-member"},
		{"RoleBinding", "livemigrate-system", "livemigrate-agent-reports"},
		{"ClusterRoleBinding", "", "livemigrate-doctor-member"},
	} {
		if got := bound(objs, b.kind, b.namespace, b.role); !slices.Equal(got, []string{"karmada-push"}) {
			t.Errorf("%s is bound to %v, want [karmada-push]", b.role, got)
		}
	}
	unbound := render(t, "livemigrate-system", memberSets...)
	if got := bound(unbound, "RoleBinding", "livemigrate-system", "livemigrate-agent-reports"); len(got) > 0 {
		t.Errorf("without deschedulerMemberIdentity livemigrate-agent-reports is bound to %v", got)
	}
}

// The doctor's roles are read-only (get and list), name what they can,
// are bound to doctor.subjects only, and are not rendered without them.
func TestDoctorRolesAreReadOnly(t *testing.T) {
	subjects := []string{"doctor.subjects[0].kind=User", "doctor.subjects[0].name=alice",
		"doctor.subjects[1].kind=ServiceAccount", "doctor.subjects[1].name=ops", "doctor.subjects[1].namespace=tools"}
	karmada := render(t, "karmada-system", append(slices.Clone(karmadaSets), subjects...)...)
	host := render(t, "karmada-system", append(slices.Clone(hostSets), subjects...)...)
	for _, r := range []struct {
		objs                  []*unstructured.Unstructured
		kind, namespace, name string
		binding               string
		want                  []string
	}{
		{karmada, "ClusterRole", "", "livemigrate-doctor", "ClusterRoleBinding", []string{
			"customresourcedefinitions get [livemigrations.livemigrate.io,clusterlatencies.livemigrate.io]",
			"validatingwebhookconfigurations get [livemigrate-descheduler]",
			"mutatingwebhookconfigurations get [livemigrate-descheduler]",
			"clusters get", "clusters list", "clusterlatencies get",
		}},
		{karmada, "Role", "karmada-system", "livemigrate-doctor", "RoleBinding", []string{
			"leases get [livemigrate-descheduler,livemigrate-scheduler,karmada-scheduler]",
		}},
		{karmada, "Role", "karmada-cluster", "livemigrate-doctor-member-credentials", "RoleBinding", []string{"secrets get"}},
		{host, "Role", "karmada-system", "livemigrate-doctor", "RoleBinding", []string{"secrets get [livemigrate-descheduler-webhook-cert]"}},
	} {
		if got := roleRules(t, r.objs, r.kind, r.namespace, r.name); !slices.Equal(got, r.want) {
			t.Errorf("%s %s/%s grants %v, want %v", r.kind, r.namespace, r.name, got, r.want)
		}
		if got := bound(r.objs, r.binding, r.namespace, r.name); !slices.Equal(got, []string{"alice", "ops"}) {
			t.Errorf("%s %s/%s is bound to %v, want [alice ops]", r.kind, r.namespace, r.name, got)
		}
	}
	for _, objs := range [][]*unstructured.Unstructured{render(t, "karmada-system", karmadaSets...), render(t, "karmada-system", hostSets...), render(t, "livemigrate-system", memberSets...)} {
		for _, o := range objs {
			if o.GetName() == "livemigrate-doctor" || o.GetName() == "livemigrate-doctor-member-credentials" {
				t.Errorf("without doctor.subjects the chart renders %s %s", o.GetKind(), o.GetName())
			}
		}
	}
}
