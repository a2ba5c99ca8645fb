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
	o := Find(objs, "ClusterRole", name)
	if o == nil {
		t.Fatalf("ClusterRole %s not rendered", name)
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
// calls and nothing that reaches further (list or watch every Secret,
// patch, another node's status writes are left to the admission policy),
// and the member mode renders the agents' node restriction policy, bound,
// unless agent.nodeRestriction is off.
func TestMemberRolesAreNarrow(t *testing.T) {
	objs := render(t, "livemigrate-system", memberSets...)
	agent := rules(t, objs, "livemigrate-agent")
	for _, want := range []string{"podcheckpoints update", "podcheckpoints/status update", "volumereplications/status update", "secrets get"} {
		if !slices.Contains(agent, want) {
			t.Errorf("the agent's role lacks %q: %v", want, agent)
		}
	}
	for _, r := range agent {
		if strings.HasSuffix(r, " patch") && !strings.HasPrefix(r, "events ") || r == "secrets list" || r == "secrets watch" || strings.HasSuffix(r, " delete") {
			t.Errorf("the agent's role grants %q, which the agent never uses", r)
		}
	}
	desch := rules(t, objs, "livemigrate-descheduler-member")
	var secrets []string
	for _, r := range desch {
		if strings.HasPrefix(r, "secrets ") {
			secrets = append(secrets, strings.TrimPrefix(r, "secrets "))
		}
	}
	if !slices.Equal(secrets, []string{"get", "create", "delete"}) {
		t.Errorf("the descheduler's member role has %v on Secrets, want get, create, delete", secrets)
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
