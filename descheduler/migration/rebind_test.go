package migration

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	workv1alpha2 "github.com/karmada-io/karmada/pkg/apis/work/v1alpha2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
	"github.com/livemigrate/livemigrate/test/builder"
)

// TestPhaseOrderRebindsAtTheFreeze checks the order of the phases and that
// the target is prepared and the binding patched while the final sync and
// the push still run, and that the images reach the target only after both
// finished.
func TestPhaseOrderRebindsAtTheFreeze(t *testing.T) {
	want := []lmv1alpha1.LiveMigrationPhase{
		lmv1alpha1.PhasePending, lmv1alpha1.PhasePlanning, lmv1alpha1.PhasePreCopy, lmv1alpha1.PhaseCheckpointing,
		lmv1alpha1.PhaseRebinding, lmv1alpha1.PhaseFinalSync, lmv1alpha1.PhaseTransfer, lmv1alpha1.PhaseRestoring,
		lmv1alpha1.PhaseVerifying, lmv1alpha1.PhaseCleanup, lmv1alpha1.PhaseSucceeded,
	}
	if diff := cmp.Diff(want, Phases()); diff != "" {
		t.Fatalf("Phases() (-want +got):\n%s", diff)
	}

	h := newHarness(t, builder.MakeLiveMigration("ns", "mig", "app").Target("b").Obj())
	h.w.finalSynced, h.w.pushDone = false, false
	seen := h.run(lmv1alpha1.PhaseFinalSync, time.Millisecond)
	if diff := cmp.Diff(want[:6], seen); diff != "" {
		t.Errorf("phases up to FinalSync (-want +got):\n%s", diff)
	}
	// Rebound during the push, the PodRestore without images.
	if ownTask(h.binding(), h.lm()) < 0 || !onlyOn(h.binding(), "b") {
		t.Fatalf("binding not rebound before the push finished: %+v", h.binding().Spec)
	}
	if h.w.count("prepareRestore:b") == 0 {
		t.Fatalf("PodRestore not written before the push finished: %v", h.w.calls())
	}
	for i := 0; i < 3; i++ {
		h.reconcileLogged()
	}
	if p := h.lm().Status.Phase; p != lmv1alpha1.PhaseFinalSync {
		t.Fatalf("phase = %s while the final sync runs, want FinalSync", p)
	}
	// The final sync ends, the push does not yet: no images in the target.
	h.w.finalSynced = true
	h.run(lmv1alpha1.PhaseTransfer, time.Millisecond)
	for i := 0; i < 3; i++ {
		h.reconcileLogged()
	}
	if p := h.lm().Status.Phase; p != lmv1alpha1.PhaseTransfer {
		t.Fatalf("phase = %s while the push runs, want Transfer", p)
	}
	if n := h.w.count("restoreImages:b"); n != 0 {
		t.Fatalf("images recorded in the target %d times before the push finished", n)
	}
	// The push ends: the images are recorded in the target, then Restoring.
	h.w.pushDone = true
	calls := h.reconcileLogged()
	if diff := cmp.Diff([]loggedCall{{lmv1alpha1.PhaseTransfer, "restoreStatus:b"}, {lmv1alpha1.PhaseTransfer, "transfer:app-0"}, {lmv1alpha1.PhaseTransfer, "restoreImages:b"}}, calls, cmp.AllowUnexported(loggedCall{})); diff != "" {
		t.Errorf("calls of the last Transfer reconcile (-want +got):\n%s", diff)
	}
	if p := h.lm().Status.Phase; p != lmv1alpha1.PhaseRestoring {
		t.Fatalf("phase = %s after the push, want Restoring", p)
	}
	h.run(lmv1alpha1.PhaseSucceeded, time.Millisecond)
	if p := h.lm().Status.Phase; p != lmv1alpha1.PhaseSucceeded {
		t.Fatalf("phase = %s, want Succeeded", p)
	}
}

// restart replaces the controller and its API client by new ones holding
// only what the API server persisted.
func (h *harness) restart(opts ...func(*fake.ClientBuilder)) {
	h.t.Helper()
	persisted := h.lm()
	persisted.ResourceVersion = ""
	rb := h.binding()
	rb.ResourceVersion = ""
	objs := []client.Object{builder.Ready(builder.MakeCluster("a").Obj(), true), builder.Ready(builder.MakeCluster("b").Obj(), true), rb}
	b := fake.NewClientBuilder().WithScheme(builder.Scheme()).WithObjects(append(objs, persisted)...).
		WithStatusSubresource(&lmv1alpha1.LiveMigration{}, &workv1alpha2.ResourceBinding{})
	for _, o := range opts {
		o(b)
	}
	h.c = b.Build()
	h.r = h.newReconciler()
}

// TestRestartInEachStateAfterTheFreeze restarts the controller in every
// state the rebinding at the freeze adds (the binding patched but not yet
// observed by karmada-scheduler; the final sync, then the push, running
// with the target workload gated) and checks that it resumes from status
// alone: no second freeze, no second eviction task, the images recorded in
// the target only after the push, and success.
func TestRestartInEachStateAfterTheFreeze(t *testing.T) {
	cases := []struct {
		name  string
		phase lmv1alpha1.LiveMigrationPhase
		// setup runs before the migration starts; release after the restart.
		setup, release func(h *harness)
	}{
		{
			name: "rebound, not observed", phase: lmv1alpha1.PhaseRebinding,
			setup: func(h *harness) {
				h.w.pushDone = false
				h.w.finalSynced = false
			},
			release: func(h *harness) { h.w.pushDone, h.w.finalSynced = true, true },
		},
		{
			name: "final sync running", phase: lmv1alpha1.PhaseFinalSync,
			setup:   func(h *harness) { h.w.pushDone, h.w.finalSynced = false, false },
			release: func(h *harness) { h.w.pushDone, h.w.finalSynced = true, true },
		},
		{
			name: "push running", phase: lmv1alpha1.PhaseTransfer,
			setup:   func(h *harness) { h.w.pushDone = false },
			release: func(h *harness) { h.w.pushDone = true },
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rb := builder.MakeBinding("ns", "app").SingleCluster().ScheduledOn(1, "a").Obj()
			if tc.phase == lmv1alpha1.PhaseRebinding {
				// karmada-scheduler lags behind: it has not observed the
				// rebinding's generation yet.
				rb.Generation, rb.Status.SchedulerObservedGeneration = 4, 3
			}
			h := newHarness(t, builder.MakeLiveMigration("ns", "mig", "app").Target("b").Obj(),
				builder.Ready(builder.MakeCluster("a").Obj(), true), builder.Ready(builder.MakeCluster("b").Obj(), true), rb)
			tc.setup(h)
			h.run(tc.phase, time.Millisecond)
			for i := 0; i < 2; i++ { // a few reconciles in the phase (Rebinding: the patch)
				h.reconcileLogged()
			}
			if p := h.lm().Status.Phase; p != tc.phase {
				t.Fatalf("phase = %s, want %s before the restart", p, tc.phase)
			}
			if tc.phase == lmv1alpha1.PhaseRebinding && ownTask(h.binding(), h.lm()) < 0 {
				t.Fatalf("binding not patched before the restart")
			}
			before := len(h.w.calls())
			h.restart()
			if tc.phase == lmv1alpha1.PhaseRebinding {
				// karmada-scheduler catches up only now.
				h.reconcileLogged()
				if p := h.lm().Status.Phase; p != lmv1alpha1.PhaseRebinding {
					t.Fatalf("phase = %s before the scheduler observed the rebinding, want Rebinding", p)
				}
				if n := len(h.binding().Spec.GracefulEvictionTasks); n != 1 {
					t.Fatalf("%d eviction tasks after the restart, want 1", n)
				}
				rb := h.binding()
				rb.Status.SchedulerObservedGeneration = rb.Generation
				if err := h.c.Status().Update(h.ctx, rb); err != nil {
					t.Fatal(err)
				}
			}
			h.reconcileLogged()
			if n := h.w.count("restoreImages:b"); n != 0 {
				t.Fatalf("images recorded in the target before the push finished (%d calls)", n)
			}
			tc.release(h)
			h.run(lmv1alpha1.PhaseSucceeded, time.Millisecond)
			if p := h.lm().Status.Phase; p != lmv1alpha1.PhaseSucceeded {
				t.Fatalf("phase = %s after the restart, want Succeeded", p)
			}
			for _, c := range h.w.calls()[before:] {
				if c == "freeze:app-0" || c == "inspect:a" {
					t.Errorf("%s again after the restart in %s", c, tc.phase)
				}
			}
			if n := h.w.count("restoreImages:b"); n == 0 {
				t.Errorf("images never recorded in the target")
			}
			if n := len(h.binding().Spec.GracefulEvictionTasks); n != 0 {
				t.Errorf("%d eviction tasks left", n)
			}
		})
	}
}

// TestRestartBetweenRecordingImagesAndStatus loses the status update of the
// reconcile that recorded the images in the target (the controller dies
// after writing the PodRestore): the restarted controller records them
// again (a no-op for the backend) and goes on.
func TestRestartBetweenRecordingImagesAndStatus(t *testing.T) {
	h := newHarness(t, builder.MakeLiveMigration("ns", "mig", "app").Target("b").Obj())
	h.w.pushDone = false
	h.run(lmv1alpha1.PhaseTransfer, time.Millisecond)
	h.w.pushDone = true
	h.restart(func(b *fake.ClientBuilder) {
		b.WithInterceptorFuncs(interceptor.Funcs{SubResourceUpdate: func(ctx context.Context, c client.Client, sub string, obj client.Object, opts ...client.SubResourceUpdateOption) error {
			if lm, ok := obj.(*lmv1alpha1.LiveMigration); ok && lm.Status.Phase == lmv1alpha1.PhaseRestoring {
				return errors.New("connection lost")
			}
			return c.SubResource(sub).Update(ctx, obj, opts...)
		}})
	})
	if _, err := h.reconcile(); err == nil {
		t.Fatalf("status update did not fail")
	}
	if n := h.w.count("restoreImages:b"); n != 1 {
		t.Fatalf("images recorded %d times, want once before the lost status update", n)
	}
	if p := h.lm().Status.Phase; p != lmv1alpha1.PhaseTransfer {
		t.Fatalf("phase = %s, want Transfer (the update was lost)", p)
	}
	h.restart()
	h.run(lmv1alpha1.PhaseSucceeded, time.Millisecond)
	if p := h.lm().Status.Phase; p != lmv1alpha1.PhaseSucceeded {
		t.Fatalf("phase = %s, want Succeeded", p)
	}
	if n := h.w.count("restoreImages:b"); n != 2 {
		t.Errorf("images recorded %d times, want twice (again after the restart)", n)
	}
}

// TestRollbackWithAGatedTarget fails the push after the rebinding: the
// target workload exists, its pods gated. The rollback removes it, waits
// until it is gone, and only then thaws the source; the images are never
// recorded in the target.
func TestRollbackWithAGatedTarget(t *testing.T) {
	h := newHarness(t, builder.MakeLiveMigration("ns", "mig", "app").Target("b").Obj())
	h.w.pushDone = false
	h.w.removeCallsBeforeGone = 2
	h.run(lmv1alpha1.PhaseTransfer, time.Millisecond)
	h.w.targetPresent = true // Karmada propagated the workload; its pods are gated
	h.w.fail["transfer"] = NewStepFailedError("PushFailed", "the registry refused the checkpoint image")
	if _, err := h.reconcile(); err != nil {
		t.Fatal(err)
	}
	if p := h.lm().Status.Phase; p != lmv1alpha1.PhaseRollingBack {
		t.Fatalf("phase = %s, want RollingBack", p)
	}
	for i := 0; i < 2; i++ { // the target is not gone yet: no thaw
		if _, err := h.reconcile(); err != nil {
			t.Fatal(err)
		}
		if h.w.count("thaw:app-0") != 0 {
			t.Fatalf("source thawed while the gated target workload still exists: %v", h.w.calls())
		}
	}
	h.run(lmv1alpha1.PhaseFailed, time.Millisecond)
	if h.w.targetPresent {
		t.Errorf("target workload left behind")
	}
	if n := h.w.count("thaw:app-0"); n != 1 {
		t.Errorf("thawed %d times, want once", n)
	}
	if n := h.w.count("restoreImages:b"); n != 0 {
		t.Errorf("images recorded in the target %d times by a failed push", n)
	}
	var order []string
	for _, c := range h.w.calls() {
		switch c {
		case "removeRestore:b", "removeWorkload:b", "thaw:app-0":
			order = append(order, c)
		}
	}
	wantOrder := []string{"removeRestore:b", "removeWorkload:b", "removeRestore:b", "removeWorkload:b",
		"removeRestore:b", "removeWorkload:b", "thaw:app-0"}
	if diff := cmp.Diff(wantOrder, order); diff != "" {
		t.Errorf("rollback order (-want +got):\n%s", diff)
	}
	st := h.lm().Status
	if st.Failure == nil || st.Failure.Phase != lmv1alpha1.PhaseTransfer || st.Failure.Reason != "PushFailed" {
		t.Errorf("failure = %+v, want Transfer/PushFailed", st.Failure)
	}
	if diff := cmp.Diff([]workv1alpha2.TargetCluster{{Name: "a", Replicas: 1}}, h.binding().Spec.Clusters); diff != "" {
		t.Errorf("binding not reverted (-want +got):\n%s", diff)
	}
}

// TestUpgradeFromTransferBeforeRebinding resumes a migration that reached
// Transfer without a rebinding (the order of a controller that rebound
// after the push): it rebinds, with the images, then goes on.
func TestUpgradeFromTransferBeforeRebinding(t *testing.T) {
	h := newHarness(t, builder.MakeLiveMigration("ns", "mig", "app").Target("b").Obj())
	h.run(lmv1alpha1.PhaseCheckpointing, time.Millisecond)
	h.reconcileLogged() // archives taken: Rebinding
	lm := h.lm()
	// Rewrite the status as the older controller left it: FinalSync and
	// Transfer entered, Rebinding not.
	var kept []lmv1alpha1.PhaseTransition
	for _, pt := range lm.Status.PhaseTransitions {
		if pt.Phase != lmv1alpha1.PhaseRebinding {
			kept = append(kept, pt)
		}
	}
	lm.Status.PhaseTransitions = kept
	setPhase(&lm.Status, lmv1alpha1.PhaseFinalSync, h.clock.Now())
	setPhase(&lm.Status, lmv1alpha1.PhaseTransfer, h.clock.Now())
	if err := h.c.Status().Update(h.ctx, lm); err != nil {
		t.Fatal(err)
	}
	before := len(h.w.calls())
	seen := h.run(lmv1alpha1.PhaseSucceeded, time.Millisecond)
	wantSeen := []lmv1alpha1.LiveMigrationPhase{lmv1alpha1.PhaseTransfer, lmv1alpha1.PhaseRebinding, lmv1alpha1.PhaseFinalSync,
		lmv1alpha1.PhaseTransfer, lmv1alpha1.PhaseRestoring, lmv1alpha1.PhaseVerifying, lmv1alpha1.PhaseCleanup, lmv1alpha1.PhaseSucceeded}
	if diff := cmp.Diff(wantSeen, seen); diff != "" {
		t.Errorf("phases (-want +got):\n%s", diff)
	}
	for _, c := range h.w.calls()[before:] {
		if c == "prepareRestore:b" {
			t.Errorf("PodRestore written without images although they were pushed")
		}
	}
}

// TestTargetPodsCheckedFromTheRebinding checks that a target pod admitted
// without the restore webhook fails the migration at once in every phase
// the target workload exists in (it would run fresh on the volume the final
// sync writes), and that a pod annotated but not gated only fails it in
// Restoring, where its images must be the checkpoint's.
func TestTargetPodsCheckedFromTheRebinding(t *testing.T) {
	cases := []struct {
		name      string
		phase     lmv1alpha1.LiveMigrationPhase
		unmutated bool
		wantFail  bool
	}{
		{"unmutated in Rebinding", lmv1alpha1.PhaseRebinding, true, true},
		{"unmutated in FinalSync", lmv1alpha1.PhaseFinalSync, true, true},
		{"unmutated in Transfer", lmv1alpha1.PhaseTransfer, true, true},
		{"unmutated in Restoring", lmv1alpha1.PhaseRestoring, true, true},
		{"ungated in FinalSync", lmv1alpha1.PhaseFinalSync, false, false},
		{"ungated in Transfer", lmv1alpha1.PhaseTransfer, false, false},
		{"ungated in Restoring", lmv1alpha1.PhaseRestoring, false, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rb := builder.MakeBinding("ns", "app").SingleCluster().ScheduledOn(1, "a").Obj()
			if tc.phase == lmv1alpha1.PhaseRebinding {
				rb.Generation, rb.Status.SchedulerObservedGeneration = 4, 3
			}
			h := newHarness(t, builder.MakeLiveMigration("ns", "mig", "app").Target("b").Obj(),
				builder.Ready(builder.MakeCluster("a").Obj(), true), builder.Ready(builder.MakeCluster("b").Obj(), true), rb)
			h.w.finalSynced, h.w.pushDone, h.w.restored = false, false, false
			switch tc.phase {
			case lmv1alpha1.PhaseTransfer:
				h.w.finalSynced = true
			case lmv1alpha1.PhaseRestoring:
				h.w.finalSynced, h.w.pushDone = true, true
			}
			h.run(tc.phase, time.Millisecond)
			h.reconcileLogged() // Rebinding: the patch
			if p := h.lm().Status.Phase; p != tc.phase {
				t.Fatalf("phase = %s, want %s", p, tc.phase)
			}
			if tc.unmutated {
				h.w.unmutated = []string{"app-0"}
			} else {
				h.w.ungated = []string{"app-0"}
			}
			h.reconcileLogged()
			st := h.lm().Status
			if !tc.wantFail {
				if st.Phase != tc.phase {
					t.Fatalf("phase = %s, want %s kept (a gated pod's images come later)", st.Phase, tc.phase)
				}
				return
			}
			if st.Phase != lmv1alpha1.PhaseRollingBack {
				t.Fatalf("phase = %s, want RollingBack right after the pod was seen", st.Phase)
			}
			if st.Failure == nil || st.Failure.Phase != tc.phase || st.Failure.Reason != "RestoreWebhookBypassed" || !strings.Contains(st.Failure.Message, "app-0") {
				t.Fatalf("failure = %+v, want %s/RestoreWebhookBypassed naming app-0", st.Failure, tc.phase)
			}
			h.run(lmv1alpha1.PhaseFailed, time.Millisecond)
			if h.w.count("removeWorkload:b") == 0 || h.w.count("thaw:app-0") != 1 {
				t.Errorf("rollback did not remove the target and thaw the source once: %v", h.w.calls())
			}
		})
	}
}

// TestDowntimeStartsAtTheEarliestFreeze checks that status.frozenAt is the
// earliest freeze the checkpoint backend reports for the pods (sub-second,
// by its clock), that a time ahead of the controller's is ignored, and that
// without any the controller's own time is taken.
func TestDowntimeStartsAtTheEarliestFreeze(t *testing.T) {
	cases := []struct {
		name   string
		offset []time.Duration // per pod, from the reconcile that sees them frozen; 0: none reported
		want   time.Duration
	}{
		{"earliest of the pods", []time.Duration{-300*time.Millisecond - 1234*time.Microsecond, -100 * time.Millisecond}, -300*time.Millisecond - 1234*time.Microsecond},
		{"a clock ahead is ignored", []time.Duration{time.Second, -50 * time.Millisecond}, -50 * time.Millisecond},
		{"none reported: the controller's time", []time.Duration{0, 0}, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, builder.MakeLiveMigration("ns", "mig", "app").Target("b").Obj())
			h.w.pods = []Pod{{Name: "app-0", Node: "node-a", Containers: []string{"app"}}, {Name: "app-1", Node: "node-a", Containers: []string{"app"}}}
			h.w.freezeDone = false
			h.run(lmv1alpha1.PhaseCheckpointing, time.Millisecond)
			h.reconcileLogged()
			if st := h.lm().Status; st.FrozenAt != nil {
				t.Fatalf("frozenAt = %v before every pod was frozen", st.FrozenAt)
			}
			now := h.clock.Now()
			h.w.frozenAt = map[string]time.Time{}
			for i, off := range tc.offset {
				if off != 0 {
					h.w.frozenAt[h.w.pods[i].Name] = now.Add(off)
				}
			}
			h.w.freezeDone = true
			h.reconcileLogged()
			st := h.lm().Status
			if st.FrozenAt == nil || !st.FrozenAt.Time.Equal(now.Add(tc.want)) {
				t.Fatalf("frozenAt = %v, want %v", st.FrozenAt, now.Add(tc.want))
			}
			h.run(lmv1alpha1.PhaseSucceeded, time.Millisecond)
			st = h.lm().Status
			if st.Downtime == nil || st.Downtime.Duration != st.TargetReadyAt.Sub(now.Add(tc.want)).Round(time.Millisecond) {
				t.Errorf("downtime = %v, want from %v to %v", st.Downtime, now.Add(tc.want), st.TargetReadyAt)
			}
		})
	}
}
