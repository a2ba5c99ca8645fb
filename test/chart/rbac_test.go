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
