package rebalance

import (
	"context"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
	"github.com/livemigrate/livemigrate/descheduler/metrics"
	"github.com/livemigrate/livemigrate/descheduler/policy"
	"github.com/livemigrate/livemigrate/test/builder"
)

// clientFor serves the federation's objects and the templates carrying
// their policies.
func (f *fed) clientFor(t *testing.T) client.Client {
	t.Helper()
	var objs []client.Object
	for i := range f.objs.Clusters {
		objs = append(objs, &f.objs.Clusters[i])
	}
	for i := range f.objs.Bindings {
		rb := &f.objs.Bindings[i]
		objs = append(objs, rb, &appsv1.StatefulSet{
			ObjectMeta: metav1.ObjectMeta{Namespace: rb.Namespace, Name: rb.Spec.Resource.Name, Annotations: f.policies[rb.Spec.Resource.Name]},
			Spec: appsv1.StatefulSetSpec{Replicas: ptr.To[int32](1), VolumeClaimTemplates: []corev1.PersistentVolumeClaim{{
				Spec: corev1.PersistentVolumeClaimSpec{Resources: corev1.VolumeResourceRequirements{
					Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("2Gi")}}}}}},
		})
	}
	for i := range f.objs.Migrations {
		objs = append(objs, &f.objs.Migrations[i])
	}
	return fake.NewClientBuilder().WithScheme(builder.Scheme()).WithObjects(objs...).WithStatusSubresource(&lmv1alpha1.LiveMigration{}).Build()
}

func newTestReconciler(t *testing.T, f *fed, dryRun bool) (*Reconciler, client.Client, *events.FakeRecorder) {
	t.Helper()
	c := f.clientFor(t)
	rec := events.NewFakeRecorder(100)
	cfg := testConfig()
	r := &Reconciler{
		Planner: &Planner{Reader: c, Plugins: f.env(t).Plugins, Config: cfg, DefaultBudget: DefaultSettle,
			DefaultCheckpointEstimate: 256 << 20, DowntimeHistory: 10},
		Client: c, Recorder: rec, Clock: clocktesting.NewFakeClock(t0), Interval: 1, DryRun: dryRun,
	}
	return r, c, rec
}

func drainEvents(rec *events.FakeRecorder) []string {
	var out []string
	for {
		select {
		case e := <-rec.Events:
			out = append(out, e)
		default:
			return out
		}
	}
}

func rebalanceFed() *fed {
	return newFed().cluster("member1", 90, 30).cluster("member2", 20, 20).cluster("member3", 30, 30).
		optedIn("db", "member1", 15, 1, policy.AnnotationDowntimeBudget, "30s").
		optedIn("keep", "member1", 15, 1, policy.AnnotationRebalance, "false").
		workload("load", "member1", 60, 20)
}

func TestRoundInAutoCreatesALabelledLiveMigration(t *testing.T) {
	r, c, rec := newTestReconciler(t, rebalanceFed(), false)
	before := value(t, metrics.TriggerDecisions.WithLabelValues("rebalance", "migration_created"))
	plan, err := r.Round(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var lms lmv1alpha1.LiveMigrationList
	if err := c.List(context.Background(), &lms); err != nil {
		t.Fatal(err)
	}
	if len(lms.Items) != 1 {
		t.Fatalf("%d LiveMigrations, want 1: %v", len(lms.Items), outcomes(plan))
	}
	lm := lms.Items[0]
	if lm.Spec.WorkloadRef.Name != "db" || lm.Spec.WorkloadRef.Kind != "StatefulSet" || lm.Spec.TargetCluster != "member2" {
		t.Errorf("LiveMigration %s of %s/%s to %s, want db to member2", lm.Name, lm.Spec.WorkloadRef.Kind, lm.Spec.WorkloadRef.Name, lm.Spec.TargetCluster)
	}
	if got := lm.Labels[policy.LabelTrigger]; got != "rebalance" {
		t.Errorf("trigger label %q", got)
	}
	if !strings.HasPrefix(lm.GenerateName, "db-rebalance-") {
		t.Errorf("generateName %q", lm.GenerateName)
	}
	if lm.Spec.DowntimeBudget == nil || lm.Spec.DowntimeBudget.Duration.String() != "30s" {
		t.Errorf("downtime budget %v, want the policy's 30s", lm.Spec.DowntimeBudget)
	}
	reason := lm.Annotations[policy.AnnotationReason]
	for _, want := range []string{"load rebalancing: member1 is above the high band (80.0%)", "cpu 90.0%", "expected cpu 75.0%",
		"member2: cpu 20.0%", "expected cpu 35.0%", "3Gi to send"} {
		if !strings.Contains(reason, want) {
			t.Errorf("reason %q does not say %q", reason, want)
		}
	}
	if got := value(t, metrics.TriggerDecisions.WithLabelValues("rebalance", "migration_created")) - before; got != 1 {
		t.Errorf("migration_created counted %v times", got)
	}
	if got := value(t, metrics.ClusterUtilization.WithLabelValues("member1", "cpu")); got != 0.9 {
		t.Errorf("member1 cpu utilization gauge %v", got)
	}
	evs := drainEvents(rec)
	if len(evs) != 1 || !strings.Contains(evs[0], "RebalanceMigration") {
		t.Errorf("events %q", evs)
	}

	// The next round sees the migration it created: nothing moves twice.
	plan, err = r.Round(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Chosen()) != 0 {
		t.Errorf("second round chose %v", outcomes(plan))
	}
	// The running migration counts as done: member1 is at 75 %.
	if !strings.Contains(plan.Idle, "no cluster is above the high band") {
		t.Errorf("second round: idle %q, decisions %v", plan.Idle, outcomes(plan))
	}
}

func TestRoundInDryRunMovesNothingAndReportsThePlan(t *testing.T) {
	r, c, rec := newTestReconciler(t, rebalanceFed(), true)
	before := value(t, metrics.RebalanceDecisions.WithLabelValues("DryRun", "chosen"))
	plan, err := r.Round(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	wantOutcomes(t, plan, map[string]string{"db": "chosen→member2", "keep": string(OutcomeRebalanceOff)})
	var lms lmv1alpha1.LiveMigrationList
	if err := c.List(context.Background(), &lms); err != nil {
		t.Fatal(err)
	}
	if len(lms.Items) != 0 {
		t.Errorf("DryRun created %d LiveMigrations", len(lms.Items))
	}
	evs := drainEvents(rec)
	if len(evs) != 1 || !strings.Contains(evs[0], "RebalancePlanned") || !strings.Contains(evs[0], "would live-migrate to member2") {
		t.Errorf("events %q", evs)
	}
	if got := value(t, metrics.RebalanceDecisions.WithLabelValues("DryRun", "chosen")) - before; got != 1 {
		t.Errorf("chosen counted %v times", got)
	}
	// The same plan again: DryRun changed nothing.
	again, err := r.Round(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	wantOutcomes(t, again, map[string]string{"db": "chosen→member2", "keep": string(OutcomeRebalanceOff)})
}

// value reads a counter or gauge.
func value(t *testing.T, m prometheus.Metric) float64 {
	t.Helper()
	var out dto.Metric
	if err := m.Write(&out); err != nil {
		t.Fatal(err)
	}
	if out.Counter != nil {
		return out.Counter.GetValue()
	}
	return out.Gauge.GetValue()
}
