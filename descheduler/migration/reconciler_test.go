package migration

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	clusterv1alpha1 "github.com/karmada-io/karmada/pkg/apis/cluster/v1alpha1"
	workv1alpha2 "github.com/karmada-io/karmada/pkg/apis/work/v1alpha2"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2/ktesting"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
	"github.com/livemigrate/livemigrate/descheduler/placement"
	"github.com/livemigrate/livemigrate/test/builder"
)

// t0 is off the second by 50ms: a time truncated to the second by a round
// trip through the API falls off the test's 100ms clock grid.
var t0 = time.Date(2026, 1, 2, 3, 4, 5, 50*int(time.Millisecond), time.UTC)

type harness struct {
	t     *testing.T
	ctx   context.Context
	c     client.Client
	w     *world
	clock *clocktesting.FakeClock
	rec   *events.FakeRecorder
	r     *Reconciler
	key   types.NamespacedName
}

func newHarness(t *testing.T, lm *lmv1alpha1.LiveMigration, objs ...client.Object) *harness {
	t.Helper()
	_, ctx := ktesting.NewTestContext(t)
	if objs == nil {
		objs = defaultObjects()
	}
	c := fake.NewClientBuilder().WithScheme(builder.Scheme()).
		WithObjects(append(objs, lm)...).
		WithStatusSubresource(&lmv1alpha1.LiveMigration{}, &workv1alpha2.ResourceBinding{}).
		Build()
	h := &harness{t: t, ctx: ctx, c: c, w: newWorld(), clock: clocktesting.NewFakeClock(t0), rec: events.NewFakeRecorder(1000),
		key: types.NamespacedName{Namespace: lm.Namespace, Name: lm.Name}}
	h.r = h.newReconciler()
	return h
}

// newReconciler builds a fresh controller over the same API server and
// member clusters, as after a restart.
func (h *harness) newReconciler() *Reconciler {
	return &Reconciler{Client: h.c, Recorder: h.rec, Clock: h.clock, Hooks: h.w.hooks(), Config: Config{
		PollInterval:          5 * time.Second,
		DefaultDowntimeBudget: 2 * time.Second,
		DefaultBandwidth:      10 << 20,
		PreCopyThresholdBytes: 64 << 20,
		PreCopyMaxRounds:      5,
		DowntimeHistory:       DefaultDowntimeHistory,
	}}
}

func defaultObjects() []client.Object {
	return []client.Object{
		builder.Ready(builder.MakeCluster("a").Obj(), true),
		builder.Ready(builder.MakeCluster("b").Obj(), true),
		builder.Ready(builder.MakeCluster("down").Obj(), false),
		builder.MakeBinding("ns", "app").SingleCluster().ScheduledOn(1, "a").Obj(),
	}
}

func (h *harness) reconcile() (reconcile.Result, error) {
	h.t.Helper()
	return h.r.Reconcile(h.ctx, reconcile.Request{NamespacedName: h.key})
}

func (h *harness) lm() *lmv1alpha1.LiveMigration {
	h.t.Helper()
	lm := &lmv1alpha1.LiveMigration{}
	if err := h.c.Get(h.ctx, h.key, lm); err != nil {
		h.t.Fatalf("getting LiveMigration: %v", err)
	}
	return lm
}

func (h *harness) binding() *workv1alpha2.ResourceBinding {
	h.t.Helper()
	rb := &workv1alpha2.ResourceBinding{}
	if err := h.c.Get(h.ctx, types.NamespacedName{Namespace: "ns", Name: "app-deployment"}, rb); err != nil {
		h.t.Fatalf("getting binding: %v", err)
	}
	return rb
}

// run reconciles until the phase is reached (or a terminal phase), stepping
// the clock by step each time, and returns the phases seen, in order.
func (h *harness) run(until lmv1alpha1.LiveMigrationPhase, step time.Duration) []lmv1alpha1.LiveMigrationPhase {
	h.t.Helper()
	var seen []lmv1alpha1.LiveMigrationPhase
	for i := 0; i < 100; i++ {
		p := h.lm().Status.Phase
		if len(seen) == 0 || seen[len(seen)-1] != p {
			if p != "" {
				seen = append(seen, p)
			}
		}
		if p == until || p.IsTerminal() {
			return seen
		}
		if _, err := h.reconcile(); err != nil {
			h.t.Fatalf("reconcile in phase %s: %v", p, err)
		}
		h.clock.Step(step)
	}
	h.t.Fatalf("phase %s not reached; stuck in %s", until, h.lm().Status.Phase)
	return nil
}

func happyPath() []lmv1alpha1.LiveMigrationPhase {
	return Phases()
}

func TestHappyPathVisitsEveryPhase(t *testing.T) {
	h := newHarness(t, builder.MakeLiveMigration("ns", "mig", "app").Target("b").Obj())
	got := h.run(lmv1alpha1.PhaseSucceeded, 100*time.Millisecond)
	if diff := cmp.Diff(happyPath(), got); diff != "" {
		t.Fatalf("phases (-want +got):\n%s", diff)
	}
	lm := h.lm()
	st := lm.Status
	if st.SourceCluster != "a" || st.TargetCluster != "b" {
		t.Errorf("source/target = %s/%s, want a/b", st.SourceCluster, st.TargetCluster)
	}
	wantBytes := lmv1alpha1.TransferredBytes{Memory: 10 << 20, VolumePreCopy: 64 << 20, FinalDelta: 1 << 20}
	if diff := cmp.Diff(wantBytes, st.Bytes); diff != "" {
		t.Errorf("bytes (-want +got):\n%s", diff)
	}
	if st.Downtime == nil || st.FrozenAt == nil || st.TargetReadyAt == nil {
		t.Fatalf("downtime not measured: %+v", st)
	}
	if want := st.TargetReadyAt.Sub(st.FrozenAt.Time); st.Downtime.Duration != want || want <= 0 {
		t.Errorf("downtime = %s, want %s (> 0)", st.Downtime.Duration, want)
	}
	// The clock steps 100ms per reconcile from t0: sub-second precision
	// survives the round trip through the API.
	for name, at := range map[string]time.Time{"frozenAt": st.FrozenAt.Time, "targetReadyAt": st.TargetReadyAt.Time} {
		if d := at.Sub(t0); d%(100*time.Millisecond) != 0 {
			t.Errorf("%s is %s after the start, off the 100ms clock grid: precision lost", name, d)
		}
	}
	for _, p := range happyPath() {
		if enteredAt(&st, p).IsZero() {
			t.Errorf("no timestamp for phase %s", p)
		}
	}
	if got, want := st.Pods[0].CheckpointImages, []lmv1alpha1.ContainerCheckpointImage{{Container: "app", Image: "registry.local/ckpt/app-0:uid"}}; !cmp.Equal(want, got) {
		t.Errorf("checkpoint images = %v, want %v", got, want)
	}
	rb := h.binding()
	if diff := cmp.Diff([]workv1alpha2.TargetCluster{{Name: "b", Replicas: 1}}, rb.Spec.Clusters); diff != "" {
		t.Errorf("binding clusters (-want +got):\n%s", diff)
	}
	if len(rb.Spec.GracefulEvictionTasks) != 0 {
		t.Errorf("eviction task left after cleanup: %+v", rb.Spec.GracefulEvictionTasks)
	}
	if h.w.count("thaw:app-0") != 0 {
		t.Errorf("source thawed on success")
	}
	if h.w.count("release:app-0") == 0 {
		t.Errorf("checkpoint not released on success")
	}
	if !meta.IsStatusConditionTrue(st.Conditions, lmv1alpha1.ConditionDowntimeBudget) {
		t.Errorf("DowntimeBudgetMet not True: %+v", st.Conditions)
	}
	// Terminal: the finalizer goes away.
	if _, err := h.reconcile(); err != nil {
		t.Fatal(err)
	}
	if fz := h.lm().Finalizers; len(fz) != 0 {
		t.Errorf("finalizers left: %v", fz)
	}
	// One event on the LiveMigration and one on the workload per phase entered.
	if got, want := len(h.rec.Events), 2*len(happyPath()); got != want {
		t.Errorf("events = %d, want %d", got, want)
	}
}

func TestRebindingPatchesBindingAndWaitsForScheduler(t *testing.T) {
	rb := builder.MakeBinding("ns", "app").SingleCluster().ScheduledOn(1, "a").Obj()
	rb.Generation = 4
	rb.Status.SchedulerObservedGeneration = 3
	objs := []client.Object{builder.Ready(builder.MakeCluster("a").Obj(), true), builder.Ready(builder.MakeCluster("b").Obj(), true), rb}
	h := newHarness(t, builder.MakeLiveMigration("ns", "mig", "app").Target("b").Obj(), objs...)
	h.run(lmv1alpha1.PhaseRebinding, time.Millisecond)

	for i := 0; i < 3; i++ { // re-reconciling does not add a second task
		if _, err := h.reconcile(); err != nil {
			t.Fatal(err)
		}
	}
	got := h.binding()
	want := []workv1alpha2.GracefulEvictionTask{{
		FromCluster: "a", Replicas: ptr.To[int32](1), Reason: EvictionReason, Producer: EvictionProducer,
		Message: "live migration ns/mig uid=uid-mig", SuppressDeletion: ptr.To(true),
	}}
	if diff := cmp.Diff(want, got.Spec.GracefulEvictionTasks); diff != "" {
		t.Errorf("eviction tasks (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]workv1alpha2.TargetCluster{{Name: "b", Replicas: 1}}, got.Spec.Clusters); diff != "" {
		t.Errorf("clusters (-want +got):\n%s", diff)
	}
	if p := h.lm().Status.Phase; p != lmv1alpha1.PhaseRebinding {
		t.Fatalf("phase = %s before the scheduler observed the rebinding, want Rebinding", p)
	}
	got.Status.SchedulerObservedGeneration = 4
	if err := h.c.Status().Update(h.ctx, got); err != nil {
		t.Fatal(err)
	}
	if _, err := h.reconcile(); err != nil {
		t.Fatal(err)
	}
	if p := h.lm().Status.Phase; p != lmv1alpha1.PhaseFinalSync {
		t.Errorf("phase = %s, want FinalSync", p)
	}
}

func TestRescheduleAfterRebindingRollsBack(t *testing.T) {
	h := newHarness(t, builder.MakeLiveMigration("ns", "mig", "app").Target("b").Obj())
	h.run(lmv1alpha1.PhaseRebinding, time.Millisecond)
	if _, err := h.reconcile(); err != nil { // patches the binding
		t.Fatal(err)
	}
	rb := h.binding()
	rb.Spec.Clusters = []workv1alpha2.TargetCluster{{Name: "c", Replicas: 1}} // karmada-scheduler moved it
	if err := h.c.Update(h.ctx, rb); err != nil {
		t.Fatal(err)
	}
	h.run(lmv1alpha1.PhaseFailed, time.Millisecond)
	f := h.lm().Status.Failure
	if f == nil || f.Phase != lmv1alpha1.PhaseRebinding || f.Reason != "Rescheduled" {
		t.Fatalf("failure = %+v, want Rebinding/Rescheduled", f)
	}
	if got := h.binding().Spec.Clusters; !cmp.Equal([]workv1alpha2.TargetCluster{{Name: "a", Replicas: 1}}, got) {
		t.Errorf("binding not reverted to the source: %v", got)
	}
}

func TestIdempotentReReconcile(t *testing.T) {
	// Reconciling every phase twice ends in the same state as once.
	once := newHarness(t, builder.MakeLiveMigration("ns", "mig", "app").Target("b").Obj())
	once.run(lmv1alpha1.PhaseSucceeded, 0)

	twice := newHarness(t, builder.MakeLiveMigration("ns", "mig", "app").Target("b").Obj())
	for i := 0; i < 100 && !twice.lm().Status.Phase.IsTerminal(); i++ {
		for j := 0; j < 2; j++ {
			if _, err := twice.reconcile(); err != nil {
				t.Fatal(err)
			}
		}
	}
	ignore := cmp.Options{cmp.FilterPath(func(p cmp.Path) bool {
		s := p.String()
		return s == "ObjectMeta.ResourceVersion" || s == "ObjectMeta.ManagedFields"
	}, cmp.Ignore())}
	if diff := cmp.Diff(once.lm(), twice.lm(), ignore); diff != "" {
		t.Errorf("LiveMigration after single vs double reconciles (-once +twice):\n%s", diff)
	}
	if diff := cmp.Diff(once.binding().Spec, twice.binding().Spec); diff != "" {
		t.Errorf("binding after single vs double reconciles (-once +twice):\n%s", diff)
	}
	if n := twice.w.count("thaw:app-0"); n != 0 {
		t.Errorf("thawed %d times on success", n)
	}
}

func TestResumeAfterRestartFromStatusAlone(t *testing.T) {
	for _, at := range []lmv1alpha1.LiveMigrationPhase{
		lmv1alpha1.PhasePreCopy, lmv1alpha1.PhaseCheckpointing, lmv1alpha1.PhaseRebinding,
		lmv1alpha1.PhaseFinalSync, lmv1alpha1.PhaseTransfer, lmv1alpha1.PhaseRestoring, lmv1alpha1.PhaseVerifying,
	} {
		t.Run(string(at), func(t *testing.T) {
			h := newHarness(t, builder.MakeLiveMigration("ns", "mig", "app").Target("b").Obj())
			h.run(at, time.Millisecond)
			before := len(h.w.calls())

			// Restart: a new controller with nothing in memory, over a new
			// API client holding only what the API server persisted.
			persisted := h.lm()
			persisted.ResourceVersion = ""
			rb := h.binding()
			rb.ResourceVersion = ""
			objs := []client.Object{builder.Ready(builder.MakeCluster("a").Obj(), true), builder.Ready(builder.MakeCluster("b").Obj(), true), rb}
			h.c = fake.NewClientBuilder().WithScheme(builder.Scheme()).WithObjects(append(objs, persisted)...).
				WithStatusSubresource(&lmv1alpha1.LiveMigration{}, &workv1alpha2.ResourceBinding{}).Build()
			h.r = h.newReconciler()

			h.run(lmv1alpha1.PhaseSucceeded, time.Millisecond)
			if p := h.lm().Status.Phase; p != lmv1alpha1.PhaseSucceeded {
				t.Fatalf("phase = %s after restart, want Succeeded", p)
			}
			after := h.w.calls()[before:]
			for _, c := range after {
				if c == "inspect:a" {
					t.Errorf("planning redone after restart: %v", after)
				}
				if c == "freeze:app-0" && at != lmv1alpha1.PhaseCheckpointing && at != lmv1alpha1.PhasePreCopy {
					t.Errorf("froze again after restart in %s: %v", at, after)
				}
			}
			if n := len(h.binding().Spec.GracefulEvictionTasks); n != 0 {
				t.Errorf("%d eviction tasks left", n)
			}
		})
	}
}

func TestRollbackRemovesTargetBeforeThaw(t *testing.T) {
	h := newHarness(t, builder.MakeLiveMigration("ns", "mig", "app").Target("b").Obj())
	h.w.ready = false // the target never becomes Ready
	h.w.removeCallsBeforeGone = 2
	h.run(lmv1alpha1.PhaseVerifying, time.Millisecond)
	h.w.fail["ready"] = NewStepFailedError("CrashLoop", "target pod crash-loops")

	if _, err := h.reconcile(); err != nil { // Verifying fails → RollingBack
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ { // the target is not gone yet: no thaw
		if _, err := h.reconcile(); err != nil {
			t.Fatal(err)
		}
		if h.w.count("thaw:app-0") != 0 {
			t.Fatalf("source thawed while the target workload still exists: %v", h.w.calls())
		}
		if p := h.lm().Status.Phase; p != lmv1alpha1.PhaseRollingBack {
			t.Fatalf("phase = %s, want RollingBack", p)
		}
	}
	h.run(lmv1alpha1.PhaseFailed, time.Millisecond)

	var order []string
	for _, c := range h.w.calls() {
		switch c {
		case "abortReplication:data-app-0", "removeRestore:b", "removeWorkload:b", "thaw:app-0":
			if len(order) == 0 || order[len(order)-1] != c {
				order = append(order, c)
			}
		}
	}
	// Abort and remove repeat until the target is gone; the thaw comes last, once.
	want := []string{"abortReplication:data-app-0", "removeRestore:b", "removeWorkload:b",
		"abortReplication:data-app-0", "removeRestore:b", "removeWorkload:b",
		"abortReplication:data-app-0", "removeRestore:b", "removeWorkload:b", "thaw:app-0"}
	if diff := cmp.Diff(want, order); diff != "" {
		t.Errorf("rollback order (-want +got):\n%s", diff)
	}
	st := h.lm().Status
	wantFailure := &lmv1alpha1.MigrationFailure{Phase: lmv1alpha1.PhaseVerifying, Reason: "CrashLoop", Message: "checking the workload in b: target pod crash-loops"}
	if diff := cmp.Diff(wantFailure, st.Failure, cmp.FilterPath(func(p cmp.Path) bool { return p.String() == "Time" }, cmp.Ignore())); diff != "" {
		t.Errorf("failure (-want +got):\n%s", diff)
	}
	rb := h.binding()
	if diff := cmp.Diff([]workv1alpha2.TargetCluster{{Name: "a", Replicas: 1}}, rb.Spec.Clusters); diff != "" {
		t.Errorf("binding not reverted (-want +got):\n%s", diff)
	}
	if len(rb.Spec.GracefulEvictionTasks) != 0 {
		t.Errorf("eviction task left: %+v", rb.Spec.GracefulEvictionTasks)
	}
	if st.Pods[0].Frozen {
		t.Errorf("pod still marked frozen")
	}
	if c := meta.FindStatusCondition(st.Conditions, lmv1alpha1.ConditionSourceFrozen); c == nil || c.Status != metav1.ConditionFalse {
		t.Errorf("SourceFrozen condition = %+v, want False", c)
	}
}

func TestDowntimeBudgetRefusal(t *testing.T) {
	h := newHarness(t, builder.MakeLiveMigration("ns", "mig", "app").Target("b").Budget(time.Second).Obj())
	h.w.pendingBytes = 200 << 20 // 200Mi + 8Mi checkpoint at 100Mi/s ≈ 2.08s > 1s
	h.run(lmv1alpha1.PhaseFailed, time.Millisecond)

	st := h.lm().Status
	if st.Failure == nil || st.Failure.Phase != lmv1alpha1.PhasePreCopy || st.Failure.Reason != "BudgetExceeded" {
		t.Fatalf("failure = %+v, want PreCopy/BudgetExceeded", st.Failure)
	}
	c := meta.FindStatusCondition(st.Conditions, lmv1alpha1.ConditionDowntimeBudget)
	if c == nil || c.Status != metav1.ConditionFalse || c.Reason != "BudgetExceeded" {
		t.Fatalf("DowntimeBudgetMet = %+v, want False/BudgetExceeded", c)
	}
	if st.EstimatedDowntime == nil || st.EstimatedDowntime.Duration != 2080*time.Millisecond {
		t.Errorf("estimated downtime = %v, want 2.08s", st.EstimatedDowntime)
	}
	if n := h.w.count("freeze:app-0"); n != 0 {
		t.Errorf("froze the workload %d times despite the budget", n)
	}
	if n := h.w.count("thaw:app-0"); n != 0 {
		t.Errorf("thawed a workload that was never frozen")
	}
	if n := h.w.count("removeWorkload:b"); n != 0 {
		t.Errorf("removed a target workload that was never created")
	}
}

func TestBandwidthLimitCapsEstimate(t *testing.T) {
	// Measured 100Mi/s, but the limit is 1Mi/s: 9Mi takes 9s > 2s default budget.
	h := newHarness(t, builder.MakeLiveMigration("ns", "mig", "app").Target("b").Bandwidth("1Mi").Obj())
	h.run(lmv1alpha1.PhaseFailed, time.Millisecond)
	if f := h.lm().Status.Failure; f == nil || f.Reason != "BudgetExceeded" {
		t.Fatalf("failure = %+v, want BudgetExceeded", f)
	}
}

func TestSmallPreCopyRateIsNotTheBandwidth(t *testing.T) {
	// 40 KiB/s measured over a 100 KiB volume is the passes' overhead: the
	// estimate uses the default bandwidth (100Mi/s), 8Mi checkpoint ≈ 80ms.
	h := newHarness(t, builder.MakeLiveMigration("ns", "mig", "app").Target("b").Obj())
	h.w.bytesPerSecond, h.w.preCopyBytes = 40<<10, 100<<10
	h.run(lmv1alpha1.PhaseSucceeded, time.Millisecond)
	st := h.lm().Status
	if st.MeasuredBandwidth == nil || st.MeasuredBandwidth.Value() != 40<<10 {
		t.Errorf("measured bandwidth = %v, want the 40Ki measured, reported", st.MeasuredBandwidth)
	}
	if st.EstimatedDowntime == nil || st.EstimatedDowntime.Duration > time.Second {
		t.Errorf("estimated downtime = %v, want the default bandwidth's", st.EstimatedDowntime)
	}
}

func TestPhaseTimeouts(t *testing.T) {
	cases := []struct {
		phase lmv1alpha1.LiveMigrationPhase
		stall func(w *world)
		thaw  bool
	}{
		{lmv1alpha1.PhasePreCopy, func(w *world) { w.preCopyDone = false }, false},
		{lmv1alpha1.PhaseCheckpointing, func(w *world) { w.checkpointDone = false }, true},
		{lmv1alpha1.PhaseFinalSync, func(w *world) { w.finalSynced = false }, true},
		{lmv1alpha1.PhaseTransfer, func(w *world) { w.pushDone = false }, true},
		{lmv1alpha1.PhaseRestoring, func(w *world) { w.restored = false }, true},
		{lmv1alpha1.PhaseVerifying, func(w *world) { w.ready = false }, true},
	}
	for _, tc := range cases {
		t.Run(string(tc.phase), func(t *testing.T) {
			h := newHarness(t, builder.MakeLiveMigration("ns", "mig", "app").Target("b").Timeout(tc.phase, time.Minute).Obj())
			tc.stall(h.w)
			h.run(tc.phase, 0)
			res, err := h.reconcile()
			if err != nil {
				t.Fatal(err)
			}
			if p := h.lm().Status.Phase; p != tc.phase {
				t.Fatalf("phase = %s before the timeout, want %s", p, tc.phase)
			}
			if res.RequeueAfter <= 0 || res.RequeueAfter > time.Minute {
				t.Errorf("requeueAfter = %s, want within the timeout", res.RequeueAfter)
			}
			h.clock.Step(time.Minute)
			h.run(lmv1alpha1.PhaseFailed, time.Millisecond)
			st := h.lm().Status
			if st.Failure == nil || st.Failure.Phase != tc.phase || st.Failure.Reason != "Timeout" {
				t.Fatalf("failure = %+v, want %s/Timeout", st.Failure, tc.phase)
			}
			if got := h.w.count("thaw:app-0") > 0; got != tc.thaw {
				t.Errorf("thawed = %v, want %v", got, tc.thaw)
			}
		})
	}
}

func TestAbort(t *testing.T) {
	h := newHarness(t, builder.MakeLiveMigration("ns", "mig", "app").Target("b").Obj())
	h.w.restored = false
	h.run(lmv1alpha1.PhaseRestoring, time.Millisecond)
	h.abort()
	h.run(lmv1alpha1.PhaseFailed, time.Millisecond)
	st := h.lm().Status
	if st.Failure == nil || st.Failure.Reason != "Aborted" || st.Failure.Phase != lmv1alpha1.PhaseRestoring {
		t.Fatalf("failure = %+v, want Restoring/Aborted", st.Failure)
	}
	if h.w.count("thaw:app-0") != 1 || h.w.count("removeWorkload:b") == 0 {
		t.Errorf("abort did not remove the target and thaw the source: %v", h.w.calls())
	}
}

func TestAbortIgnoredInCleanup(t *testing.T) {
	h := newHarness(t, builder.MakeLiveMigration("ns", "mig", "app").Target("b").Obj())
	h.run(lmv1alpha1.PhaseCleanup, time.Millisecond)
	h.abort()
	h.run(lmv1alpha1.PhaseSucceeded, time.Millisecond)
	if p := h.lm().Status.Phase; p != lmv1alpha1.PhaseSucceeded {
		t.Fatalf("phase = %s, want Succeeded (the target already runs)", p)
	}
	if h.w.count("thaw:app-0") != 0 {
		t.Errorf("thawed the source after the target ran")
	}
}

func TestDeletionAbortsAndReleasesFinalizer(t *testing.T) {
	h := newHarness(t, builder.MakeLiveMigration("ns", "mig", "app").Target("b").Obj())
	h.w.checkpointDone = false
	h.run(lmv1alpha1.PhaseCheckpointing, time.Millisecond)
	if _, err := h.reconcile(); err != nil {
		t.Fatal(err)
	}
	if err := h.c.Delete(h.ctx, h.lm()); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		if _, err := h.reconcile(); err != nil {
			t.Fatal(err)
		}
	}
	err := h.c.Get(h.ctx, h.key, &lmv1alpha1.LiveMigration{})
	if err == nil {
		t.Fatalf("LiveMigration still exists after rollback: %+v", h.lm().Status)
	}
	if h.w.count("thaw:app-0") != 1 {
		t.Errorf("source not thawed once after deletion: %v", h.w.calls())
	}
}

func TestPlanningFailures(t *testing.T) {
	cases := map[string]struct {
		lm     *lmv1alpha1.LiveMigration
		objs   []client.Object
		reason string
	}{
		"no binding": {
			lm:     builder.MakeLiveMigration("ns", "mig", "other").Target("b").Obj(),
			reason: "BindingNotFound",
		},
		"two clusters": {
			lm: builder.MakeLiveMigration("ns", "mig", "app").Target("b").Obj(),
			objs: []client.Object{builder.Ready(builder.MakeCluster("b").Obj(), true),
				builder.MakeBinding("ns", "app").Divided().ScheduledOn(1, "a", "c").Obj()},
			reason: "NotOnOneCluster",
		},
		"target is source": {
			lm:     builder.MakeLiveMigration("ns", "mig", "app").Target("a").Obj(),
			reason: "TargetIsSource",
		},
		"target not ready": {
			lm:     builder.MakeLiveMigration("ns", "mig", "app").Target("down").Obj(),
			reason: "TargetNotReady",
		},
		"target unknown": {
			lm:     builder.MakeLiveMigration("ns", "mig", "app").Target("nowhere").Obj(),
			reason: "TargetNotFound",
		},
		"no picker": {
			lm:     builder.MakeLiveMigration("ns", "mig", "app").Obj(),
			reason: "NoTarget",
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t, tc.lm, tc.objs...)
			h.run(lmv1alpha1.PhaseFailed, time.Millisecond)
			f := h.lm().Status.Failure
			if f == nil || f.Phase != lmv1alpha1.PhasePlanning || f.Reason != tc.reason {
				t.Fatalf("failure = %+v, want Planning/%s", f, tc.reason)
			}
			if f.Message == "" {
				t.Errorf("failure without a message")
			}
		})
	}
}

type pickerFunc func(ctx context.Context, rb *workv1alpha2.ResourceBinding, source string) (*placement.Plan, error)

func (f pickerFunc) Plan(ctx context.Context, rb *workv1alpha2.ResourceBinding, source string) (*placement.Plan, error) {
	return f(ctx, rb, source)
}

type compatFunc func(ctx context.Context, m Migration, pods []Pod) error

func (f compatFunc) Check(ctx context.Context, m Migration, pods []Pod) error { return f(ctx, m, pods) }

func TestPlanningRefusesIncompatibleTarget(t *testing.T) {
	h := newHarness(t, builder.MakeLiveMigration("ns", "mig", "app").Target("b").Obj())
	var checked []Pod
	h.r.Hooks.Compatibility = compatFunc(func(_ context.Context, m Migration, pods []Pod) error {
		checked = pods
		return NewStepFailedError("Incompatible", "pod app-0 runs on linux/amd64; b has arm64")
	})
	h.run(lmv1alpha1.PhaseFailed, time.Millisecond)
	if f := h.lm().Status.Failure; f == nil || f.Phase != lmv1alpha1.PhasePlanning || f.Reason != "Incompatible" {
		t.Fatalf("failure = %+v, want Planning/Incompatible", f)
	}
	if len(checked) != 1 || checked[0].Name != "app-0" {
		t.Errorf("checked pods = %+v", checked)
	}
	if h.w.count("precopy:data-app-0") != 0 {
		t.Errorf("pre-copy started for an incompatible target")
	}
}

func TestPlanningPicksTargetWhenNoneGiven(t *testing.T) {
	h := newHarness(t, builder.MakeLiveMigration("ns", "mig", "app").Obj())
	var gotSource string
	h.r.Hooks.Picker = pickerFunc(func(_ context.Context, _ *workv1alpha2.ResourceBinding, source string) (*placement.Plan, error) {
		gotSource = source
		return &placement.Plan{Target: "b"}, nil
	})
	h.run(lmv1alpha1.PhasePreCopy, time.Millisecond)
	if gotSource != "a" {
		t.Errorf("picker called with source %q, want a", gotSource)
	}
	if tgt := h.lm().Status.TargetCluster; tgt != "b" {
		t.Errorf("target = %q, want b", tgt)
	}
}

func TestTransientErrorsRetryWithoutRollback(t *testing.T) {
	h := newHarness(t, builder.MakeLiveMigration("ns", "mig", "app").Target("b").Obj())
	h.run(lmv1alpha1.PhaseFinalSync, time.Millisecond)
	h.w.fail["finalsync"] = errors.New("connection refused")
	res, err := h.reconcile()
	if err != nil {
		t.Fatalf("transient error returned to the controller (exponential backoff): %v", err)
	}
	if res.RequeueAfter <= 0 || res.RequeueAfter > h.r.Config.PollInterval {
		t.Errorf("requeueAfter = %s, want within the poll interval %s", res.RequeueAfter, h.r.Config.PollInterval)
	}
	if p := h.lm().Status.Phase; p != lmv1alpha1.PhaseFinalSync {
		t.Fatalf("phase = %s after a transient error, want FinalSync", p)
	}
	delete(h.w.fail, "finalsync")
	h.run(lmv1alpha1.PhaseSucceeded, time.Millisecond)
}

func TestClusterBuilderReady(t *testing.T) {
	c := builder.Ready(builder.MakeCluster("x").Obj(), true)
	if !meta.IsStatusConditionTrue(c.Status.Conditions, clusterv1alpha1.ClusterConditionReady) {
		t.Fatal("Ready builder did not mark the cluster Ready")
	}
}

func TestConcurrencyBudget(t *testing.T) {
	cases := map[string]struct {
		global, perCluster int
		secondTarget       string
		wantScope          string
	}{
		"per cluster, same source":  {perCluster: 1, secondTarget: "c", wantScope: "cluster a"},
		"global":                    {global: 1, secondTarget: "c", wantScope: "are active"},
		"unlimited admits both":     {secondTarget: "c"},
		"per cluster 2 admits both": {perCluster: 2, secondTarget: "b"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			first := builder.MakeLiveMigration("ns", "first", "app").Target("b").Obj()
			second := builder.MakeLiveMigration("ns", "second", "other").Target(tc.secondTarget).Obj()
			objs := append(defaultObjects(), second, builder.Ready(builder.MakeCluster("c").Obj(), true),
				builder.MakeBinding("ns", "other").SingleCluster().ScheduledOn(1, "a").Obj())
			h := newHarness(t, first, objs...)
			h.r.Config.MaxActive, h.r.Config.MaxActivePerCluster = tc.global, tc.perCluster
			h.w.preCopyDone = false // the first one stays in PreCopy
			h.run(lmv1alpha1.PhasePreCopy, time.Millisecond)

			other := &harness{t: t, ctx: h.ctx, c: h.c, w: h.w, clock: h.clock, rec: h.rec, r: h.r,
				key: types.NamespacedName{Namespace: "ns", Name: "second"}}
			for i := 0; i < 3; i++ {
				if _, err := other.reconcile(); err != nil {
					t.Fatal(err)
				}
			}
			lm := other.lm()
			c := meta.FindStatusCondition(lm.Status.Conditions, lmv1alpha1.ConditionAdmitted)
			if tc.wantScope == "" {
				if lm.Status.Phase == lmv1alpha1.PhasePending || c == nil || c.Status != metav1.ConditionTrue {
					t.Fatalf("second not admitted: phase %s, condition %+v", lm.Status.Phase, c)
				}
				return
			}
			if lm.Status.Phase != lmv1alpha1.PhasePending || c == nil || c.Status != metav1.ConditionFalse || c.Reason != "ConcurrencyLimit" {
				t.Fatalf("second admitted over the budget: phase %s, condition %+v", lm.Status.Phase, c)
			}
			if !strings.Contains(c.Message, tc.wantScope) {
				t.Errorf("message %q lacks %q", c.Message, tc.wantScope)
			}
			// Once the first one finishes, the second goes on.
			h.w.preCopyDone = true
			h.run(lmv1alpha1.PhaseSucceeded, time.Millisecond)
			other.run(lmv1alpha1.PhasePlanning, time.Millisecond)
		})
	}
}

func TestRollbackResumesAfterRestart(t *testing.T) {
	h := newHarness(t, builder.MakeLiveMigration("ns", "mig", "app").Target("b").Obj())
	h.w.restored = false
	h.w.removeCallsBeforeGone = 3
	h.run(lmv1alpha1.PhaseRestoring, time.Millisecond)
	h.w.fail["restoreStatus"] = NewStepFailedError("RestoreFailed", "image pull failed")
	for i := 0; i < 2; i++ { // fail, then one rollback pass with the target still there
		if _, err := h.reconcile(); err != nil {
			t.Fatal(err)
		}
	}
	if p := h.lm().Status.Phase; p != lmv1alpha1.PhaseRollingBack {
		t.Fatalf("phase = %s, want RollingBack", p)
	}

	// Restart from what the API server holds.
	persisted := h.lm()
	persisted.ResourceVersion = ""
	rb := h.binding()
	rb.ResourceVersion = ""
	objs := []client.Object{builder.Ready(builder.MakeCluster("a").Obj(), true), builder.Ready(builder.MakeCluster("b").Obj(), true), rb}
	h.c = fake.NewClientBuilder().WithScheme(builder.Scheme()).WithObjects(append(objs, persisted)...).
		WithStatusSubresource(&lmv1alpha1.LiveMigration{}, &workv1alpha2.ResourceBinding{}).Build()
	h.r = h.newReconciler()
	if _, err := h.reconcile(); err != nil {
		t.Fatal(err)
	}
	if h.w.count("thaw:app-0") != 0 {
		t.Fatalf("thawed after the restart while the target still exists: %v", h.w.calls())
	}
	h.run(lmv1alpha1.PhaseFailed, time.Millisecond)
	if n := h.w.count("thaw:app-0"); n != 1 {
		t.Errorf("thawed %d times, want once", n)
	}
	st := h.lm().Status
	if st.Failure == nil || st.Failure.Phase != lmv1alpha1.PhaseRestoring || st.Failure.Reason != "RestoreFailed" {
		t.Errorf("failure after restart = %+v, want Restoring/RestoreFailed kept", st.Failure)
	}
	if diff := cmp.Diff([]workv1alpha2.TargetCluster{{Name: "a", Replicas: 1}}, h.binding().Spec.Clusters); diff != "" {
		t.Errorf("binding (-want +got):\n%s", diff)
	}
}

func TestRollbackWaitsForReplicationToStop(t *testing.T) {
	h := newHarness(t, builder.MakeLiveMigration("ns", "mig", "app").Target("b").Obj())
	h.w.abortCallsBeforeDone = 3
	h.w.preCopyDone = false
	h.run(lmv1alpha1.PhasePreCopy, time.Millisecond)
	h.abort()
	h.run(lmv1alpha1.PhaseRollingBack, time.Millisecond)
	for i := 0; i < 3; i++ {
		if _, err := h.reconcile(); err != nil {
			t.Fatal(err)
		}
		if p := h.lm().Status.Phase; p != lmv1alpha1.PhaseRollingBack {
			t.Fatalf("phase = %s while replication is still stopping, want RollingBack", p)
		}
	}
	h.run(lmv1alpha1.PhaseFailed, time.Millisecond)
	if n := h.w.count("abortReplication:data-app-0"); n != 4 {
		t.Errorf("replication abort asked %d times, want until done (4)", n)
	}
	if c := meta.FindStatusCondition(h.lm().Status.Conditions, lmv1alpha1.ConditionReplicationStopped); c == nil || c.Status != metav1.ConditionTrue {
		t.Errorf("condition %s = %+v, want True", lmv1alpha1.ConditionReplicationStopped, c)
	}
	if n := h.w.count("forceAbortReplication:data-app-0"); n != 0 {
		t.Errorf("forced abort %d times although the agents confirmed", n)
	}
}

// TestRollbackStopsWaitingForUnresponsiveAgents: agents that never confirm
// the abort (a dead target node) hold the rollback in RollingBack for
// AbortWait only; then the replication objects are removed without the
// confirmation and the migration fails, saying so.
func TestRollbackStopsWaitingForUnresponsiveAgents(t *testing.T) {
	h := newHarness(t, builder.MakeLiveMigration("ns", "mig", "app").Target("b").Obj())
	h.r.Config.AbortWait = time.Minute
	h.w.abortCallsBeforeDone = 1 << 30
	h.w.preCopyDone = false
	h.run(lmv1alpha1.PhasePreCopy, time.Millisecond)
	h.abort()
	h.run(lmv1alpha1.PhaseRollingBack, time.Millisecond)
	for i := 0; i < 5; i++ {
		res, err := h.reconcile()
		if err != nil {
			t.Fatal(err)
		}
		if p := h.lm().Status.Phase; p != lmv1alpha1.PhaseRollingBack {
			t.Fatalf("phase = %s %s into the rollback, want RollingBack until AbortWait", p, time.Duration(i)*10*time.Second)
		}
		if res.RequeueAfter <= 0 || res.RequeueAfter > h.r.Config.PollInterval {
			t.Errorf("RequeueAfter = %s, want a re-check within the poll interval", res.RequeueAfter)
		}
		h.clock.Step(10 * time.Second)
	}
	if n := h.w.count("forceAbortReplication:data-app-0"); n != 0 {
		t.Fatalf("forced abort %d times before AbortWait", n)
	}
	h.clock.Step(20 * time.Second)
	h.run(lmv1alpha1.PhaseFailed, time.Millisecond)
	if n := h.w.count("forceAbortReplication:data-app-0"); n != 1 {
		t.Errorf("forced abort %d times, want once", n)
	}
	st := h.lm().Status
	c := meta.FindStatusCondition(st.Conditions, lmv1alpha1.ConditionReplicationStopped)
	if c == nil || c.Status != metav1.ConditionFalse || c.Reason != "AgentsUnresponsive" || !strings.Contains(c.Message, "did not confirm within 1m0s") {
		t.Errorf("condition %s = %+v, want False/AgentsUnresponsive saying how long it waited", lmv1alpha1.ConditionReplicationStopped, c)
	}
	if st.Failure == nil || st.Failure.Reason != "Aborted" {
		t.Errorf("failure = %+v, want the original cause (Aborted) kept", st.Failure)
	}
	found := false
	for len(h.rec.Events) > 0 {
		if e := <-h.rec.Events; strings.Contains(e, "ReplicationAbortUnconfirmed") {
			found = true
		}
	}
	if !found {
		t.Error("no ReplicationAbortUnconfirmed warning event")
	}
}

// abort sets spec.abort, as kubectl livemigrate abort does.
func (h *harness) abort() {
	h.t.Helper()
	lm := h.lm()
	lm.Spec.Abort = true
	if err := h.c.Update(h.ctx, lm); err != nil {
		h.t.Fatal(err)
	}
}

// loggedCall is a hook call and the phase it was made in.
type loggedCall struct {
	phase lmv1alpha1.LiveMigrationPhase
	call  string
}

// reconcileLogged reconciles once and returns the hook calls it made, each
// with the phase it was made in.
func (h *harness) reconcileLogged() []loggedCall {
	h.t.Helper()
	p := h.lm().Status.Phase
	before := len(h.w.calls())
	if _, err := h.reconcile(); err != nil {
		h.t.Fatalf("reconcile in phase %s: %v", p, err)
	}
	var out []loggedCall
	for _, c := range h.w.calls()[before:] {
		out = append(out, loggedCall{p, c})
	}
	return out
}

func TestFinalSyncRequestedAtFreezeOverlapsCheckpoint(t *testing.T) {
	h := newHarness(t, builder.MakeLiveMigration("ns", "mig", "app").Target("b").Obj())
	h.w.freezeDone, h.w.checkpointDone, h.w.finalSynced = false, false, false
	h.run(lmv1alpha1.PhaseCheckpointing, time.Millisecond)

	// Not frozen yet: no final sync, no checkpoint.
	for i := 0; i < 2; i++ {
		for _, c := range h.reconcileLogged() {
			if strings.HasPrefix(c.call, "finalsync:") || strings.HasPrefix(c.call, "checkpoint:") {
				t.Fatalf("%s called before the source was frozen", c.call)
			}
		}
	}
	// Frozen: the final sync is requested in Checkpointing, before the
	// checkpoint is asked for, and both proceed while Checkpointing waits
	// for the archives.
	h.w.freezeDone = true
	var got []string
	for _, c := range h.reconcileLogged() {
		if c.phase != lmv1alpha1.PhaseCheckpointing {
			t.Fatalf("call %s in phase %s, want Checkpointing", c.call, c.phase)
		}
		got = append(got, c.call)
	}
	if diff := cmp.Diff([]string{"freeze:app-0", "finalsync:data-app-0", "checkpoint:app-0"}, got); diff != "" {
		t.Errorf("calls once frozen (-want +got):\n%s", diff)
	}
	if p := h.lm().Status.Phase; p != lmv1alpha1.PhaseCheckpointing {
		t.Fatalf("phase = %s while the archives are not taken, want Checkpointing", p)
	}

	// Checkpoint done, final sync not: FinalSync waits for it.
	h.w.checkpointDone = true
	h.run(lmv1alpha1.PhaseFinalSync, time.Millisecond)
	for i := 0; i < 2; i++ {
		h.reconcileLogged()
		if p := h.lm().Status.Phase; p != lmv1alpha1.PhaseFinalSync {
			t.Fatalf("phase = %s while the final sync runs, want FinalSync", p)
		}
	}
	h.w.finalSynced = true
	h.run(lmv1alpha1.PhaseSucceeded, time.Millisecond)
	if h.w.finalSyncUnfrozen != 0 {
		t.Errorf("final sync requested %d times while the source was not frozen", h.w.finalSyncUnfrozen)
	}
	if got := h.lm().Status.Bytes.FinalDelta; got != 1<<20 {
		t.Errorf("final delta = %d, want %d", got, 1<<20)
	}
}

func TestFinalSyncDoneDuringCheckpointingPassesFinalSyncAtOnce(t *testing.T) {
	h := newHarness(t, builder.MakeLiveMigration("ns", "mig", "app").Target("b").Obj())
	h.run(lmv1alpha1.PhaseFinalSync, time.Millisecond)
	// One reconcile in FinalSync moves on: the sync finished meanwhile.
	h.reconcileLogged()
	if p := h.lm().Status.Phase; p != lmv1alpha1.PhaseTransfer {
		t.Fatalf("phase = %s, want Transfer right after one FinalSync reconcile", p)
	}
	st := h.lm().Status
	if !st.Volumes[0].Synced || st.Volumes[0].FinalDeltaBytes != 1<<20 {
		t.Errorf("volume status = %+v, want synced with 1Mi", st.Volumes[0])
	}
}

func TestRestartInCheckpointingWithFinalSyncRequested(t *testing.T) {
	h := newHarness(t, builder.MakeLiveMigration("ns", "mig", "app").Target("b").Obj())
	h.w.checkpointDone, h.w.finalSynced = false, false
	h.run(lmv1alpha1.PhaseCheckpointing, time.Millisecond)
	h.reconcileLogged() // frozen, final sync requested, archives pending
	if n := h.w.count("finalsync:data-app-0"); n != 1 {
		t.Fatalf("final sync requested %d times, want 1 before the restart", n)
	}
	frozenAt := h.lm().Status.FrozenAt

	// Restart from what the API server persisted.
	persisted := h.lm()
	persisted.ResourceVersion = ""
	rb := h.binding()
	rb.ResourceVersion = ""
	objs := []client.Object{builder.Ready(builder.MakeCluster("a").Obj(), true), builder.Ready(builder.MakeCluster("b").Obj(), true), rb}
	h.c = fake.NewClientBuilder().WithScheme(builder.Scheme()).WithObjects(append(objs, persisted)...).
		WithStatusSubresource(&lmv1alpha1.LiveMigration{}, &workv1alpha2.ResourceBinding{}).Build()
	h.r = h.newReconciler()

	// The resumed controller asks again (a no-op for the idempotent
	// backend) and keeps waiting in Checkpointing.
	h.reconcileLogged()
	if p := h.lm().Status.Phase; p != lmv1alpha1.PhaseCheckpointing {
		t.Fatalf("phase = %s after the restart, want Checkpointing", p)
	}
	h.w.checkpointDone = true
	h.run(lmv1alpha1.PhaseFinalSync, time.Millisecond)
	h.w.finalSynced = true
	h.run(lmv1alpha1.PhaseSucceeded, time.Millisecond)
	st := h.lm().Status
	if st.Phase != lmv1alpha1.PhaseSucceeded {
		t.Fatalf("phase = %s, want Succeeded", st.Phase)
	}
	if !st.FrozenAt.Equal(frozenAt) {
		t.Errorf("frozenAt moved across the restart: %v → %v (downtime must count from the first freeze)", frozenAt, st.FrozenAt)
	}
	if h.w.finalSyncUnfrozen != 0 {
		t.Errorf("final sync requested %d times while the source was not frozen", h.w.finalSyncUnfrozen)
	}
	if st.Bytes.FinalDelta != 1<<20 || !st.Volumes[0].Synced {
		t.Errorf("final sync not recorded: bytes %+v, volume %+v", st.Bytes, st.Volumes[0])
	}
}

func TestFinalSyncFailureDuringCheckpointingRollsBack(t *testing.T) {
	h := newHarness(t, builder.MakeLiveMigration("ns", "mig", "app").Target("b").Obj())
	h.w.checkpointDone = false
	h.run(lmv1alpha1.PhaseCheckpointing, time.Millisecond)
	h.w.fail["finalsync"] = NewStepFailedError("ReplicationFailed", "receiver gone")
	h.run(lmv1alpha1.PhaseFailed, time.Millisecond)
	st := h.lm().Status
	if st.Failure == nil || st.Failure.Phase != lmv1alpha1.PhaseCheckpointing || st.Failure.Reason != "ReplicationFailed" {
		t.Fatalf("failure = %+v, want Checkpointing/ReplicationFailed", st.Failure)
	}
	if h.w.count("thaw:app-0") == 0 {
		t.Errorf("source not thawed after the rollback")
	}
	if h.w.count("abortReplication:data-app-0") == 0 {
		t.Errorf("replication not aborted")
	}
}

func TestRestoringFailsAtOnceWhenTheWebhookDidNotMutate(t *testing.T) {
	h := newHarness(t, builder.MakeLiveMigration("ns", "mig", "app").Target("b").Obj())
	h.w.restored = false
	h.run(lmv1alpha1.PhaseRestoring, time.Millisecond)
	h.reconcileLogged()
	if p := h.lm().Status.Phase; p != lmv1alpha1.PhaseRestoring {
		t.Fatalf("phase = %s while the target pod is being created, want Restoring", p)
	}
	// The target pod was admitted unchanged: fail on the next reconcile,
	// not at the 10-minute timeout.
	h.w.unmutated = []string{"app-0"}
	h.reconcileLogged()
	st := h.lm().Status
	if st.Phase != lmv1alpha1.PhaseRollingBack {
		t.Fatalf("phase = %s, want RollingBack right after the unmutated pod was seen", st.Phase)
	}
	if st.Failure == nil || st.Failure.Phase != lmv1alpha1.PhaseRestoring || st.Failure.Reason != "RestoreWebhookBypassed" ||
		!strings.Contains(st.Failure.Message, "app-0") || !strings.Contains(st.Failure.Message, "restore webhook did not mutate") {
		t.Fatalf("failure = %+v, want Restoring/RestoreWebhookBypassed naming app-0 and the webhook", st.Failure)
	}
	h.run(lmv1alpha1.PhaseFailed, time.Millisecond)
	if h.w.count("removeWorkload:b") == 0 || h.w.count("thaw:app-0") == 0 {
		t.Errorf("rollback did not remove the target and thaw the source: %v", h.w.calls())
	}
}

// TestConcurrencyBudgetCountsMigrationsInPlanning: a migration admitted
// (in Planning) whose status does not name its clusters yet — Planning
// writes them when it ends — holds its slots all the same, also for a
// reconciler that did not admit it itself (another replica, or this one
// before a restart): its source is its binding's cluster, its target
// spec.targetCluster.
func TestConcurrencyBudgetCountsMigrationsInPlanning(t *testing.T) {
	for name, tc := range map[string]struct {
		secondTarget string
		wantScope    string
	}{
		"same source": {secondTarget: "c", wantScope: "cluster a"},
		// The first one's target is known from its spec only.
		"the first one's target": {secondTarget: "b", wantScope: "cluster b"},
	} {
		t.Run(name, func(t *testing.T) {
			first := builder.MakeLiveMigration("ns", "first", "app").Target("b").Obj()
			first.Status.Phase = lmv1alpha1.PhasePlanning
			second := builder.MakeLiveMigration("ns", "second", "other").Target(tc.secondTarget).Obj()
			source := "a"
			if tc.secondTarget == "b" {
				source = "c"
			}
			objs := append(defaultObjects(), first, builder.Ready(builder.MakeCluster("c").Obj(), true),
				builder.MakeBinding("ns", "other").SingleCluster().ScheduledOn(1, source).Obj())
			h := newHarness(t, second, objs...)
			h.r.Config.MaxActivePerCluster = 1
			for i := 0; i < 3; i++ {
				if _, err := h.reconcile(); err != nil {
					t.Fatal(err)
				}
			}
			lm := h.lm()
			c := meta.FindStatusCondition(lm.Status.Conditions, lmv1alpha1.ConditionAdmitted)
			if lm.Status.Phase != lmv1alpha1.PhasePending || c == nil || c.Reason != "ConcurrencyLimit" || !strings.Contains(c.Message, tc.wantScope) {
				t.Fatalf("second admitted beside a migration in Planning: phase %s, condition %+v; want Pending, ConcurrencyLimit on %s", lm.Status.Phase, c, tc.wantScope)
			}
		})
	}
}
