package kubectl

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	clusterv1alpha1 "github.com/karmada-io/karmada/pkg/apis/cluster/v1alpha1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/livemigrate/livemigrate/descheduler/maintenance"
	"github.com/livemigrate/livemigrate/descheduler/policy"
	"github.com/livemigrate/livemigrate/test/builder"
)

func taintsOf(t *testing.T, c client.Client, name string) []corev1.Taint {
	t.Helper()
	cl := &clusterv1alpha1.Cluster{}
	if err := c.Get(context.Background(), client.ObjectKey{Name: name}, cl); err != nil {
		t.Fatal(err)
	}
	return cl.Spec.Taints
}

func TestDrainAndUncordon(t *testing.T) {
	other := corev1.Taint{Key: "example.com/other", Effect: corev1.TaintEffectNoSchedule}
	c := fake.NewClientBuilder().WithScheme(Scheme()).WithObjects(builder.MakeCluster("m1").Taint(other.Key, "", other.Effect).Obj()).Build()
	out := &bytes.Buffer{}
	o := newTestOptions(c, out)
	if err := run(t, o, "drain", "m1"); err != nil {
		t.Fatal(err)
	}
	got := taintsOf(t, c, "m1")
	if len(got) != 2 || got[1].Key != maintenance.DefaultTaintKey || got[1].Effect != corev1.TaintEffectNoSchedule || got[1].TimeAdded == nil {
		t.Fatalf("taints %+v, want the other one and livemigrate.io/maintenance:NoSchedule with its time", got)
	}
	if !strings.Contains(out.String(), "cluster/m1 tainted livemigrate.io/maintenance:NoSchedule") {
		t.Errorf("output %q", out.String())
	}
	if err := run(t, o, "drain", "m1"); err != nil {
		t.Fatal(err)
	}
	if n := len(taintsOf(t, c, "m1")); n != 2 {
		t.Errorf("a second drain added a taint: %d taints", n)
	}
	if err := run(t, o, "drain", "m1", "--key", "example.com/patching"); err != nil {
		t.Fatal(err)
	}
	if n := len(taintsOf(t, c, "m1")); n != 3 {
		t.Errorf("drain --key added no taint: %d taints", n)
	}
	out.Reset()
	if err := run(t, o, "uncordon", "m1"); err != nil {
		t.Fatal(err)
	}
	got = taintsOf(t, c, "m1")
	if len(got) != 2 || got[0] != other || got[1].Key != "example.com/patching" {
		t.Errorf("taints after uncordon %+v, want the maintenance taint gone and the others kept", got)
	}
	if !strings.Contains(out.String(), "cluster/m1 uncordoned") {
		t.Errorf("output %q", out.String())
	}
	out.Reset()
	if err := run(t, o, "uncordon", "m1"); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "has no livemigrate.io/maintenance taint") {
		t.Errorf("output %q", out.String())
	}
	if err := run(t, o, "drain", "m1", "--effect", "PreferNoSchedule"); err == nil || !strings.Contains(err.Error(), "use NoSchedule (the default) or NoExecute") {
		t.Errorf("drain --effect PreferNoSchedule: %v", err)
	}
	if err := run(t, o, "drain", "m2x", "--effect", "NoExecute"); err == nil || !strings.Contains(err.Error(), "reading cluster m2x") {
		t.Errorf("drain of an unknown cluster with NoExecute: %v", err)
	}
	if err := run(t, o, "drain", "nope"); err == nil || !strings.Contains(err.Error(), "reading cluster nope (list them with: kubectl get clusters)") {
		t.Errorf("drain of an unknown cluster: %v", err)
	}
}

// reportingClient answers Gets of the cluster with the report the
// descheduler would write once it saw the taint.
func reportingClient(t *testing.T, reports func(since metav1.Time, n int) *maintenance.Report, objs ...client.Object) client.Client {
	t.Helper()
	base := fake.NewClientBuilder().WithScheme(Scheme()).WithObjects(objs...).Build()
	n := 0
	return interceptor.NewClient(base, interceptor.Funcs{
		Get: func(ctx context.Context, cl client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
			if err := cl.Get(ctx, key, obj, opts...); err != nil {
				return err
			}
			c, ok := obj.(*clusterv1alpha1.Cluster)
			if !ok {
				return nil
			}
			for _, tt := range c.Spec.Taints {
				if tt.Key == maintenance.DefaultTaintKey && tt.TimeAdded != nil {
					n++
					rep := reports(*tt.TimeAdded, n)
					if rep == nil {
						return nil
					}
					b, _ := json.Marshal(rep)
					c.Annotations = map[string]string{maintenance.ReportAnnotation: string(b)}
				}
			}
			return nil
		},
	})
}

func drainWorld() []client.Object {
	return []client.Object{
		builder.MakeCluster("m1").Obj(),
		builder.MakeBinding("ns", "db").Resource("apps/v1", "StatefulSet").ScheduledOn(1, "m1").Obj(),
		builder.MakeBinding("ns", "web").ScheduledOn(2, "m1").Obj(),
		builder.MakeBinding("ns", "plain").ScheduledOn(1, "m1").Obj(),
		builder.MakeBinding("ns", "other").ScheduledOn(1, "m2").Obj(),
	}
}

func TestDrainWaitSucceeds(t *testing.T) {
	c := reportingClient(t, func(since metav1.Time, n int) *maintenance.Report {
		switch {
		case n == 1:
			return nil // the descheduler has not reported yet
		case n < 4:
			return &maintenance.Report{Taint: "livemigrate.io/maintenance:NoSchedule", Since: since, Remaining: 2, Workloads: []maintenance.WorkloadReport{
				{Kind: "StatefulSet", Namespace: "ns", Name: "db", State: maintenance.StateMigrating, LiveMigration: "db-drain-x", Reason: "PreCopy to m2"},
				{Kind: "Deployment", Namespace: "ns", Name: "web", State: maintenance.StateWaiting, Reason: "waiting for the concurrency budget"}}}
		}
		return &maintenance.Report{Taint: "livemigrate.io/maintenance:NoSchedule", Since: since, Done: true, Workloads: []maintenance.WorkloadReport{
			{Kind: "StatefulSet", Namespace: "ns", Name: "db", State: maintenance.StateMoved, LiveMigration: "db-drain-x", Reason: "to m2, downtime 1.2s"},
			{Kind: "Deployment", Namespace: "ns", Name: "web", State: maintenance.StateMoved, LiveMigration: "web-drain-y", Reason: "to m3, downtime 900ms"}}}
	}, drainWorld()...)
	out := &bytes.Buffer{}
	if err := run(t, newTestOptions(c, out), "drain", "m1", "--wait", "--timeout", "10s"); err != nil {
		t.Fatalf("drain --wait: %v\n%s", err, out)
	}
	s := out.String()
	for _, want := range []string{
		"deployment/ns/plain", "not opted in", "left to Karmada",
		"statefulset/ns/db", "migrating", "livemigration db-drain-x PreCopy to m2",
		"waiting for budget",
		"moved", "livemigration web-drain-y to m3, downtime 900ms",
		"cluster/m1 drained: no opted-in workload is left",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("output lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, "deployment/ns/other") {
		t.Errorf("a workload of another cluster is listed:\n%s", s)
	}
}

func TestDrainWaitBlocked(t *testing.T) {
	c := reportingClient(t, func(since metav1.Time, _ int) *maintenance.Report {
		return &maintenance.Report{Taint: "livemigrate.io/maintenance:NoSchedule", Since: since, Remaining: 1, Workloads: []maintenance.WorkloadReport{
			{Kind: "StatefulSet", Namespace: "ns", Name: "db", State: maintenance.StateBlocked, Reason: "no feasible target: m2: is not Ready"},
			{Kind: "Deployment", Namespace: "ns", Name: "web", State: maintenance.StateEvicting, Reason: "no feasible target"}}}
	}, drainWorld()...)
	out := &bytes.Buffer{}
	err := run(t, newTestOptions(c, out), "drain", "m1", "--wait", "--timeout", "10s")
	if err == nil || !strings.Contains(err.Error(), "drain of m1 blocked: statefulset/ns/db (blocked: no feasible target: m2: is not Ready)") {
		t.Fatalf("err = %v, want the blocking workload named\n%s", err, out)
	}
	if !strings.Contains(out.String(), "evicted by Karmada") {
		t.Errorf("output lacks the evicted workload:\n%s", out)
	}
}

func TestDrainWaitTimeout(t *testing.T) {
	c := reportingClient(t, func(since metav1.Time, _ int) *maintenance.Report {
		return &maintenance.Report{Taint: "livemigrate.io/maintenance:NoSchedule", Since: since, Remaining: 1, Workloads: []maintenance.WorkloadReport{
			{Kind: "StatefulSet", Namespace: "ns", Name: "db", State: maintenance.StateMigrating, LiveMigration: "db-drain-x", Reason: "PreCopy"}}}
	}, drainWorld()...)
	out := &bytes.Buffer{}
	err := run(t, newTestOptions(c, out), "drain", "m1", "--wait", "--timeout", "50ms")
	if err == nil || !strings.Contains(err.Error(), "drain of m1 not finished") || !strings.Contains(err.Error(), "statefulset/ns/db (migrating") {
		t.Fatalf("err = %v, want a timeout naming what is left", err)
	}
}

func TestStatusShowsDrains(t *testing.T) {
	cl := builder.MakeCluster("m1").Obj()
	b, _ := json.Marshal(&maintenance.Report{Taint: "livemigrate.io/maintenance:NoSchedule", Remaining: 2, Workloads: []maintenance.WorkloadReport{
		{Kind: "StatefulSet", Namespace: "ns", Name: "db", State: maintenance.StateBlocked}}})
	cl.Annotations = map[string]string{maintenance.ReportAnnotation: string(b)}
	c := fake.NewClientBuilder().WithScheme(Scheme()).WithObjects(cl, builder.MakeCluster("m2").Obj()).Build()
	out := &bytes.Buffer{}
	if err := run(t, newTestOptions(c, out), "status"); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "DRAINING") || !strings.Contains(out.String(), "m1 ") || !strings.Contains(out.String(), "statefulset/ns/db") {
		t.Errorf("status output lacks the drain:\n%s", out)
	}
	if strings.Contains(out.String(), "m2") {
		t.Errorf("status lists a cluster that is not draining:\n%s", out)
	}
}

func TestPolicyCommand(t *testing.T) {
	rb := builder.MakeBinding("default", "db").Resource("apps/v1", "StatefulSet").ScheduledOn(1, "m1").Obj()
	rb.Name = "db-statefulset"
	rb.Annotations = map[string]string{"propagationpolicy.karmada.io/name": "pp", "propagationpolicy.karmada.io/namespace": "default"}
	sts := &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "db", Annotations: map[string]string{policy.AnnotationDowntimeBudget: "2s"}}}
	pp := builder.MakePolicy("default", "pp", policy.AnnotationEvictionStrategy, "LiveMigrate", policy.AnnotationDrainPriority, "7")
	c := fake.NewClientBuilder().WithScheme(Scheme()).WithObjects(rb, sts, pp).Build()
	out := &bytes.Buffer{}
	if err := run(t, newTestOptions(c, out), "policy", "sts/db"); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"StatefulSet default/db: opted in",
		"livemigrate.io/eviction-strategy     LiveMigrate              PropagationPolicy default/pp",
		"livemigrate.io/downtime-budget       2s                       StatefulSet default/db",
		"livemigrate.io/rebalance             true                     default",
		"livemigrate.io/drain-priority        7                        PropagationPolicy default/pp",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestMoveLabelsTheTrigger(t *testing.T) {
	lm, err := (&moveFlags{}).build("deploy/web")
	if err != nil {
		t.Fatal(err)
	}
	if lm.Labels[policy.LabelTrigger] != "manual" {
		t.Errorf("labels %v, want livemigrate.io/trigger=manual", lm.Labels)
	}
}

func TestDrainNoExecute(t *testing.T) {
	c := fake.NewClientBuilder().WithScheme(Scheme()).WithObjects(builder.MakeCluster("m1").Obj()).Build()
	out := &bytes.Buffer{}
	if err := run(t, newTestOptions(c, out), "drain", "m1", "--effect", "NoExecute"); err != nil {
		t.Fatal(err)
	}
	if got := taintsOf(t, c, "m1"); len(got) != 1 || got[0].Effect != corev1.TaintEffectNoExecute || got[0].Key != maintenance.DefaultTaintKey {
		t.Errorf("taints %+v, want livemigrate.io/maintenance:NoExecute", got)
	}
}
