package placementtrigger

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	policyv1alpha1 "github.com/karmada-io/karmada/pkg/apis/policy/v1alpha1"
	workv1alpha2 "github.com/karmada-io/karmada/pkg/apis/work/v1alpha2"
	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
	"github.com/livemigrate/livemigrate/descheduler/policy"
	"github.com/livemigrate/livemigrate/test/builder"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func migration(name, source, target string, phase lmv1alpha1.LiveMigrationPhase) lmv1alpha1.LiveMigration {
	lm := builder.MakeLiveMigration("ns", name, "app").Clusters(source, target).Obj()
	lm.Status.Phase = phase
	return *lm
}

func TestHold(t *testing.T) {
	onA := builder.MakeBinding("ns", "app").SingleCluster().ScheduledOn(1, "a").Obj()
	onB := builder.MakeBinding("ns", "app").SingleCluster().ScheduledOn(1, "b").Obj()
	rebind := onB.DeepCopy()
	rebind.Spec.GracefulEvictionTasks = []workv1alpha2.GracefulEvictionTask{{FromCluster: "a", Producer: "livemigrate"}}
	onAB := builder.MakeBinding("ns", "app").SingleCluster().ScheduledOn(1, "a", "b").Obj()
	unscheduled := builder.MakeBinding("ns", "app").SingleCluster().Obj()
	for _, tc := range []struct {
		name       string
		old, cur   *workv1alpha2.ResourceBinding
		migrations []lmv1alpha1.LiveMigration
		hold       bool
	}{
		{name: "scheduler moves it", old: onA, cur: onB, hold: true},
		{name: "scheduler finds no cluster", old: onA, cur: unscheduled, hold: true},
		{name: "unchanged", old: onA, cur: onA},
		{name: "a cluster added", old: onA, cur: onAB},
		{name: "first scheduling", old: unscheduled, cur: onA},
		{name: "on two clusters", old: onAB, cur: onB},
		{name: "eviction task for the cluster it leaves", old: onA, cur: rebind},
		{name: "rollback of an active migration", old: onB, cur: onA, migrations: []lmv1alpha1.LiveMigration{migration("m", "a", "b", lmv1alpha1.PhaseRollingBack)}},
		{name: "finished migration does not count", old: onB, cur: onA, migrations: []lmv1alpha1.LiveMigration{migration("m", "a", "b", lmv1alpha1.PhaseFailed)}, hold: true},
		{name: "scheduler moves it during an active migration", old: onA, cur: onB, migrations: []lmv1alpha1.LiveMigration{migration("m", "a", "b", lmv1alpha1.PhasePreCopy)}, hold: true},
		{name: "migration between other clusters", old: onA, cur: onB, migrations: []lmv1alpha1.LiveMigration{migration("m", "a", "c", lmv1alpha1.PhasePreCopy)}, hold: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hold, why := Hold(tc.old, tc.cur, tc.migrations)
			if hold != tc.hold {
				t.Errorf("Hold = %v (%s), want %v", hold, why, tc.hold)
			}
		})
	}
}

func TestScheduledRoundTrip(t *testing.T) {
	rb := builder.MakeBinding("ns", "app").Obj()
	if _, ok, err := Scheduled(rb); ok || err != nil {
		t.Fatalf("no annotation: ok=%v err=%v", ok, err)
	}
	want := []workv1alpha2.TargetCluster{{Name: "b", Replicas: 2}}
	rb.Annotations = map[string]string{policy.AnnotationScheduledClusters: EncodeScheduled(want)}
	got, ok, err := Scheduled(rb)
	if !ok || err != nil {
		t.Fatalf("ok=%v err=%v", ok, err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	rb.Annotations[policy.AnnotationScheduledClusters] = "member2"
	if _, _, err := Scheduled(rb); err == nil || !strings.Contains(err.Error(), policy.AnnotationScheduledClusters) {
		t.Errorf("malformed value: err = %v, want one naming the annotation", err)
	}
	if EncodeScheduled(nil) != "[]" {
		t.Errorf("EncodeScheduled(nil) = %s, want []", EncodeScheduled(nil))
	}
}

// world builds a Karmada plane with clusters a, b (Ready, labelled
// zone=a / zone=b) and the Deployment ns/app under PropagationPolicy
// ns/pp, whose binding is on cluster a.
type world struct {
	strategy string // the PropagationPolicy's eviction strategy, "" for none
	binding  *builder.BindingWrapper
	extra    []client.Object
}

func newWorld(strategy string) *world {
	b := builder.MakeBinding("ns", "app").SingleCluster().ScheduledOn(1, "a")
	b.Annotations = map[string]string{policyv1alpha1.PropagationPolicyNameAnnotation: "pp", policyv1alpha1.PropagationPolicyNamespaceAnnotation: "ns"}
	return &world{strategy: strategy, binding: b}
}

func (w *world) held(clusters ...string) *world {
	var tc []workv1alpha2.TargetCluster
	for _, c := range clusters {
		tc = append(tc, workv1alpha2.TargetCluster{Name: c, Replicas: 1})
	}
	w.binding.Annotations[policy.AnnotationScheduledClusters] = EncodeScheduled(tc)
	return w
}

func (w *world) build(t *testing.T, cfg Config) (*Reconciler, client.Client, *events.FakeRecorder) {
	t.Helper()
	var kv []string
	if w.strategy != "" {
		kv = []string{policy.AnnotationEvictionStrategy, w.strategy}
	}
	objs := append([]client.Object{
		builder.Ready(builder.MakeCluster("a").Label("zone", "a").Obj(), true),
		builder.Ready(builder.MakeCluster("b").Label("zone", "b").Obj(), true),
		&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "app"}},
		builder.MakePolicy("ns", "pp", kv...),
		w.binding.Obj(),
	}, w.extra...)
	c := fake.NewClientBuilder().WithScheme(builder.Scheme()).WithObjects(objs...).WithStatusSubresource(&lmv1alpha1.LiveMigration{}).Build()
	rec := events.NewFakeRecorder(100)
	return &Reconciler{Client: c, Recorder: rec, Clock: clocktesting.NewFakeClock(t0), Policies: &policy.Resolver{Client: c}, Config: cfg}, c, rec
}

var key = types.NamespacedName{Namespace: "ns", Name: "app-deployment"}

func reconcileOnce(t *testing.T, r *Reconciler) reconcile.Result {
	t.Helper()
	res, err := r.Reconcile(context.Background(), reconcile.Request{NamespacedName: key})
	if err != nil {
		t.Fatalf("Reconcile: %v", err)
	}
	return res
}

func getBinding(t *testing.T, c client.Client) *workv1alpha2.ResourceBinding {
	t.Helper()
	rb := &workv1alpha2.ResourceBinding{}
	if err := c.Get(context.Background(), key, rb); err != nil {
		t.Fatal(err)
	}
	return rb
}

func listMigrations(t *testing.T, c client.Client) []lmv1alpha1.LiveMigration {
	t.Helper()
	var l lmv1alpha1.LiveMigrationList
	if err := c.List(context.Background(), &l); err != nil {
		t.Fatal(err)
	}
	return l.Items
}

func drain(rec *events.FakeRecorder) []string {
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

func TestLabelFollowsThePolicy(t *testing.T) {
	for _, tc := range []struct {
		strategy string
		want     bool
	}{{"LiveMigrate", true}, {"LiveMigrateIfPossible", true}, {"None", false}, {"", false}, {"Live", false}} {
		t.Run(tc.strategy, func(t *testing.T) {
			w := newWorld(tc.strategy)
			if !tc.want {
				// A stale label is removed.
				w.binding.Labels = map[string]string{policy.LabelOptedIn: "true"}
			}
			r, c, _ := w.build(t, Config{})
			reconcileOnce(t, r)
			_, got := getBinding(t, c).Labels[policy.LabelOptedIn]
			if got != tc.want {
				t.Errorf("label present = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestHeldResultStartsAPlacementMigration(t *testing.T) {
	r, c, rec := newWorld("LiveMigrate").held("b").build(t, Config{})
	reconcileOnce(t, r)
	lms := listMigrations(t, c)
	if len(lms) != 1 {
		t.Fatalf("want one LiveMigration, got %d", len(lms))
	}
	lm := lms[0]
	if lm.Spec.TargetCluster != "b" || lm.Spec.WorkloadRef.Kind != "Deployment" || lm.Spec.WorkloadRef.Name != "app" {
		t.Errorf("spec = %+v, want Deployment app to b", lm.Spec)
	}
	if got := policy.TriggerOf(lm.Labels); got != policy.TriggerPlacement {
		t.Errorf("trigger = %q, want placement", got)
	}
	reason := lm.Annotations[policy.AnnotationReason]
	for _, want := range []string{"PropagationPolicy ns/pp", "on b instead of a", "LiveMigrate"} {
		if !strings.Contains(reason, want) {
			t.Errorf("reason %q lacks %q", reason, want)
		}
	}
	if ev := strings.Join(drain(rec), "\n"); !strings.Contains(ev, "PlacementMigration") || !strings.Contains(ev, lm.Name) {
		t.Errorf("events = %q, want PlacementMigration naming %s", ev, lm.Name)
	}
	// The cache may not show it yet: a second reconcile creates no other.
	reconcileOnce(t, r)
	if n := len(listMigrations(t, c)); n != 1 {
		t.Errorf("after a second reconcile: %d LiveMigrations, want 1", n)
	}
}

func TestActiveMigrationIsWaitedFor(t *testing.T) {
	w := newWorld("LiveMigrate").held("b")
	lm := migration("manual", "a", "b", lmv1alpha1.PhasePreCopy)
	w.extra = append(w.extra, &lm)
	r, c, _ := w.build(t, Config{})
	reconcileOnce(t, r)
	if n := len(listMigrations(t, c)); n != 1 {
		t.Errorf("%d LiveMigrations, want only the active one", n)
	}
}

func TestMovedDropsTheHeldResult(t *testing.T) {
	w := newWorld("LiveMigrate").held("b")
	w.binding.ScheduledOn(1, "b")
	r, c, _ := w.build(t, Config{})
	reconcileOnce(t, r)
	if _, ok := getBinding(t, c).Annotations[policy.AnnotationScheduledClusters]; ok {
		t.Error("the held result is still there after the move")
	}
	if n := len(listMigrations(t, c)); n != 0 {
		t.Errorf("%d LiveMigrations, want none", n)
	}
}

func TestNotOptedInIsLeftAlone(t *testing.T) {
	w := newWorld("")
	w.binding.ClusterLabelIn("zone", "b") // its cluster no longer matches
	r, c, _ := w.build(t, Config{})
	reconcileOnce(t, r)
	rb := getBinding(t, c)
	if rb.Spec.RescheduleTriggeredAt != nil || len(rb.Labels) != 0 {
		t.Errorf("binding changed: rescheduleTriggeredAt=%v labels=%v", rb.Spec.RescheduleTriggeredAt, rb.Labels)
	}
}

func TestNoLongerOptedInAppliesTheHeldResult(t *testing.T) {
	r, c, _ := newWorld("None").held("b").build(t, Config{})
	reconcileOnce(t, r)
	rb := getBinding(t, c)
	if got := Names(rb.Spec.Clusters); got != "b" {
		t.Errorf("clusters = %s, want b", got)
	}
	if _, ok := rb.Annotations[policy.AnnotationScheduledClusters]; ok {
		t.Error("the held result is still there")
	}
}

func TestClusterOutOfAffinityIsRescheduled(t *testing.T) {
	w := newWorld("LiveMigrate")
	w.binding.ClusterLabelIn("zone", "b")
	r, c, rec := w.build(t, Config{})
	reconcileOnce(t, r)
	rb := getBinding(t, c)
	if rb.Spec.RescheduleTriggeredAt == nil || !rb.Spec.RescheduleTriggeredAt.Time.Equal(t0) {
		t.Fatalf("rescheduleTriggeredAt = %v, want %v", rb.Spec.RescheduleTriggeredAt, t0)
	}
	if ev := strings.Join(drain(rec), "\n"); !strings.Contains(ev, "PlacementChanged") || !strings.Contains(ev, "cluster a no longer matches") {
		t.Errorf("events = %q", ev)
	}
	// Pending: not asked again.
	rb.Spec.RescheduleTriggeredAt = nil
	r.Clock.(*clocktesting.FakeClock).Step(time.Minute)
	reconcileOnce(t, r)
	if got := getBinding(t, c).Spec.RescheduleTriggeredAt; !got.Time.Equal(t0) {
		t.Errorf("asked again while pending: %v", got)
	}
}

func TestAffinityStillMatchesMovesNothing(t *testing.T) {
	w := newWorld("LiveMigrate")
	w.binding.ClusterLabelIn("zone", "a", "b")
	r, c, _ := w.build(t, Config{})
	reconcileOnce(t, r)
	if got := getBinding(t, c).Spec.RescheduleTriggeredAt; got != nil {
		t.Errorf("rescheduleTriggeredAt = %v, want none", got)
	}
}

func TestSchedulerErrorOfAPendingPlacementIsRetried(t *testing.T) {
	w := newWorld("LiveMigrate")
	w.binding.Annotations["policy.karmada.io/applied-placement"] = `{"clusterAffinity":{"clusterNames":["a"]}}`
	w.binding.Status.Conditions = []metav1.Condition{{Type: workv1alpha2.Scheduled, Status: metav1.ConditionFalse,
		Reason: workv1alpha2.BindingReasonSchedulerError, Message: `failed calling webhook "placement.livemigrate.io": connection refused`}}
	r, c, _ := w.build(t, Config{})
	res := reconcileOnce(t, r)
	if got := getBinding(t, c).Spec.RescheduleTriggeredAt; got == nil {
		t.Fatal("rescheduleTriggeredAt not set")
	}
	if res.RequeueAfter == 0 {
		t.Error("want a requeue while the result is not written")
	}
}

func failedPlacementMigration(target string) *lmv1alpha1.LiveMigration {
	lm := builder.MakeLiveMigration("ns", "app-placement-x", "app").Clusters("a", target).Obj()
	lm.Labels = map[string]string{policy.LabelTrigger: string(policy.TriggerPlacement)}
	lm.Spec.TargetCluster = target
	lm.Status.Phase = lmv1alpha1.PhaseFailed
	lm.Status.CompletionTime = &metav1.Time{Time: t0.Add(-time.Minute)}
	lm.Status.Failure = &lmv1alpha1.MigrationFailure{Reason: "BudgetExceeded", Message: "too slow"}
	return lm
}

func TestFailedMigrationLiveMigrateStaysAndRetries(t *testing.T) {
	w := newWorld("LiveMigrate").held("b")
	w.extra = append(w.extra, failedPlacementMigration("b"))
	r, c, rec := w.build(t, Config{RetryAfter: 5 * time.Minute})
	res := reconcileOnce(t, r)
	if n := len(listMigrations(t, c)); n != 1 {
		t.Errorf("%d LiveMigrations, want no new one before the retry interval", n)
	}
	if res.RequeueAfter != 4*time.Minute {
		t.Errorf("requeue after %v, want 4m", res.RequeueAfter)
	}
	if ev := strings.Join(drain(rec), "\n"); !strings.Contains(ev, "PlacementBlocked") || !strings.Contains(ev, "BudgetExceeded") {
		t.Errorf("events = %q", ev)
	}
	if got := Names(getBinding(t, c).Spec.Clusters); got != "a" {
		t.Errorf("clusters = %s, want a", got)
	}
	r.Clock.(*clocktesting.FakeClock).Step(5 * time.Minute)
	reconcileOnce(t, r)
	if n := len(listMigrations(t, c)); n != 2 {
		t.Errorf("%d LiveMigrations after the retry interval, want 2", n)
	}
}

func TestFailedMigrationIfPossibleFallsBackToKarmada(t *testing.T) {
	w := newWorld("LiveMigrateIfPossible").held("b")
	w.extra = append(w.extra, failedPlacementMigration("b"))
	r, c, _ := w.build(t, Config{})
	reconcileOnce(t, r)
	rb := getBinding(t, c)
	if got := Names(rb.Spec.Clusters); got != "b" {
		t.Errorf("clusters = %s, want b", got)
	}
	if len(rb.Spec.GracefulEvictionTasks) != 1 || rb.Spec.GracefulEvictionTasks[0].FromCluster != "a" || rb.Spec.GracefulEvictionTasks[0].Producer != EvictionProducer {
		t.Errorf("eviction tasks = %+v, want one from a by %s", rb.Spec.GracefulEvictionTasks, EvictionProducer)
	}
	if _, ok := rb.Annotations[policy.AnnotationScheduledClusters]; ok {
		t.Error("the held result is still there")
	}
}

func TestBudgetIsRespected(t *testing.T) {
	w := newWorld("LiveMigrate").held("b")
	other := builder.MakeLiveMigration("ns", "other", "db").Clusters("a", "c").Obj()
	other.Status.Phase = lmv1alpha1.PhasePreCopy
	w.extra = append(w.extra, other)
	r, c, rec := w.build(t, Config{MaxActivePerCluster: 1})
	res := reconcileOnce(t, r)
	if n := len(listMigrations(t, c)); n != 1 {
		t.Errorf("%d LiveMigrations, want none created over the budget", n)
	}
	if res.RequeueAfter == 0 {
		t.Error("want a requeue")
	}
	if ev := strings.Join(drain(rec), "\n"); !strings.Contains(ev, "PlacementWaiting") {
		t.Errorf("events = %q", ev)
	}
}

func TestNoClusterForTheNewPlacementBlocks(t *testing.T) {
	r, c, rec := newWorld("LiveMigrate").held().build(t, Config{})
	reconcileOnce(t, r)
	if n := len(listMigrations(t, c)); n != 0 {
		t.Errorf("%d LiveMigrations, want none", n)
	}
	if ev := strings.Join(drain(rec), "\n"); !strings.Contains(ev, "PlacementBlocked") || !strings.Contains(ev, "stays on a") {
		t.Errorf("events = %q", ev)
	}
	reconcileOnce(t, r)
	if ev := drain(rec); len(ev) != 0 {
		t.Errorf("the same state reported again: %q", ev)
	}
}

func TestMovedByHandOutOfAffinityStays(t *testing.T) {
	w := newWorld("LiveMigrate")
	w.binding.ClusterLabelIn("zone", "b") // cluster a does not match
	manual := builder.MakeLiveMigration("ns", "by-hand", "app").Clusters("b", "a").Obj()
	manual.Status.Phase = lmv1alpha1.PhaseSucceeded
	w.extra = append(w.extra, manual)
	r, c, _ := w.build(t, Config{})
	reconcileOnce(t, r)
	if got := getBinding(t, c).Spec.RescheduleTriggeredAt; got != nil {
		t.Errorf("rescheduleTriggeredAt = %v: a workload moved there by hand is moved back", got)
	}
}
