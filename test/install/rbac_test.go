package install

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/livemigrate/livemigrate/descheduler/kubectl"
	"github.com/livemigrate/livemigrate/descheduler/member"
	"github.com/livemigrate/livemigrate/test/chart"
	"github.com/livemigrate/livemigrate/test/lab"
)

const (
	// doctorUser is bound by the karmada release's doctor.subjects (TestMain).
	doctorUser = "livemigrate-operator"
	// pushModeUser stands for the identity of Karmada's push-mode
	// credentials, bound to the member release's roles through
	// deschedulerMemberIdentity.
	pushModeUser = "livemigrate-push-mode"
)

// TestDoctorWithTheChartsRBAC runs the doctor as a user who has nothing but
// what the chart binds: in the karmada-apiserver doctor.subjects, in members
// the roles the member release binds to deschedulerMemberIdentity (its
// reads there go through the push-mode credentials). Every check must come
// out as it does for an administrator, without a forbidden read, but the
// descheduler webhook's dry-run LiveMigration, which needs create rights
// the chart's read-only doctor role does not give.
func TestDoctorWithTheChartsRBAC(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	root, err := lab.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	// The member release's bindings, rendered for pushModeUser, beside
	// the lab's (renamed so that the lab's stay).
	objs, err := chart.Render(ctx, root, lab.AgentNamespace, "installMode=member",
		"deschedulerMemberIdentity.kind=User", "deschedulerMemberIdentity.name="+pushModeUser)
	if err != nil {
		t.Fatal(err)
	}
	var bindings []*unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == "ClusterRoleBinding" || o.GetKind() == "RoleBinding" {
			subjects, _, _ := unstructured.NestedSlice(o.Object, "subjects")
			if len(subjects) == 1 && subjects[0].(map[string]any)["name"] == pushModeUser {
				o.SetName(o.GetName() + "-" + pushModeUser)
				bindings = append(bindings, o)
			}
		}
	}
	if len(bindings) == 0 {
		t.Fatal("the member release binds nothing to deschedulerMemberIdentity")
	}
	for _, m := range testLab.Members {
		if err := serverSideApply(ctx, m.Config, bindings); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for _, m := range testLab.Members {
			for _, b := range bindings {
				gvr := schema.GroupVersionResource{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: strings.ToLower(b.GetKind()) + "s"}
				if err := m.Dynamic.Resource(gvr).Namespace(b.GetNamespace()).Delete(ctx, b.GetName(), metav1.DeleteOptions{}); err != nil {
					t.Errorf("deleting %s %s in %s: %v", b.GetKind(), b.GetName(), m.Name, err)
				}
			}
		}
	})

	run := func(karmadaUser, memberUser string) []kubectl.Check {
		t.Helper()
		impersonate := func(cfg *rest.Config, user string) *rest.Config {
			cfg = rest.CopyConfig(cfg)
			if user != "" {
				cfg.Impersonate = rest.ImpersonationConfig{UserName: user}
			}
			return cfg
		}
		kc, err := client.New(impersonate(testLab.Karmada.Config, karmadaUser), client.Options{Scheme: kubectl.DoctorScheme()})
		if err != nil {
			t.Fatal(err)
		}
		d := &kubectl.Doctor{
			Karmada: kc,
			Members: &member.Clients{Reader: kc, Scheme: kubectl.DoctorScheme(), NewClient: func(cfg *rest.Config, o client.Options) (client.Client, error) {
				return client.New(impersonate(cfg, memberUser), o)
			}},
			Now: time.Now, AgentNamespace: lab.AgentNamespace, KarmadaNamespace: "karmada-system", LatencyMaxAge: 5 * time.Minute,
		}
		return d.Run(ctx)
	}
	key := func(c kubectl.Check) string { return c.Scope + "/" + c.Name }
	// compare lists how the run with the chart's RBAC differs from the
	// administrator's.
	compare := func(admin, narrow map[string]kubectl.Check) []string {
		var problems []string
		if len(narrow) != len(admin) {
			problems = append(problems, fmt.Sprintf("%d checks with the chart's RBAC, %d as administrator", len(narrow), len(admin)))
		}
		for k, a := range admin {
			n, ok := narrow[k]
			switch {
			case a.Status == kubectl.StatusFail:
				problems = append(problems, fmt.Sprintf("%s fails as administrator: %s", k, a.Detail))
			case !ok:
				problems = append(problems, k+": not checked with the chart's RBAC")
			case k == "karmada/descheduler webhook":
				if n.Status != kubectl.StatusWarn || !strings.Contains(n.Fix, "rights to create LiveMigrations") {
					problems = append(problems, fmt.Sprintf("%s with the chart's read-only doctor role: %s %s (fix %q), want a WARN asking for create rights", k, n.Status, n.Detail, n.Fix))
				}
			case strings.Contains(strings.ToLower(n.Detail), "forbidden"):
				problems = append(problems, fmt.Sprintf("%s: a forbidden read with the chart's RBAC: %s", k, n.Detail))
			case n.Status != a.Status:
				problems = append(problems, fmt.Sprintf("%s: %s with the chart's RBAC (%s), %s as administrator (%s)", k, n.Status, n.Detail, a.Status, a.Detail))
			}
		}
		return problems
	}
	// Agents and probers renew their reports while the two runs happen:
	// a difference must last to count.
	var problems []string
	var last string
	err = pollUntil(ctx, func() bool {
		admin, narrow := map[string]kubectl.Check{}, map[string]kubectl.Check{}
		for _, c := range run("", "") {
			admin[key(c)] = c
		}
		for _, c := range run(doctorUser, pushModeUser) {
			narrow[key(c)] = c
		}
		last = report(admin, narrow)
		problems = compare(admin, narrow)
		return len(problems) == 0
	})
	if err != nil {
		t.Fatalf("the doctor with the chart's RBAC (%s in Karmada, %s in members) never matched the administrator's: %v\n%s\n%s", doctorUser, pushModeUser, err, strings.Join(problems, "\n"), last)
	}
	t.Logf("administrator and %s/%s:\n%s", doctorUser, pushModeUser, last)
}

func report(admin, narrow map[string]kubectl.Check) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(admin)) {
		a, n := admin[k], narrow[k]
		fmt.Fprintf(&b, "%-60s admin %-4s | chart RBAC %-4s %s\n", k, a.Status, n.Status, n.Detail)
	}
	return b.String()
}

func pollUntil(ctx context.Context, f func() bool) error {
	for {
		if f() {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}
