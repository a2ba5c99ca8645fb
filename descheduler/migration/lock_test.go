package migration

import (
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
	"github.com/livemigrate/livemigrate/test/builder"
)

// second adds another LiveMigration to the harness's API server and returns
// a function reconciling it once and returning it.
func (h *harness) second(lm *lmv1alpha1.LiveMigration) func() *lmv1alpha1.LiveMigration {
	h.t.Helper()
	if err := h.c.Create(h.ctx, lm); err != nil {
		h.t.Fatal(err)
	}
	key := client.ObjectKeyFromObject(lm)
	return func() *lmv1alpha1.LiveMigration {
		h.t.Helper()
		if _, err := h.r.Reconcile(h.ctx, reconcile.Request{NamespacedName: key}); err != nil {
			h.t.Fatalf("reconcile %s: %v", key, err)
		}
		got := &lmv1alpha1.LiveMigration{}
		if err := h.c.Get(h.ctx, key, got); err != nil {
			h.t.Fatal(err)
		}
		return got
	}
}

// Two LiveMigrations of one workload that both passed the webhook: only the
// one holding the workload's Lease goes on; the other fails before it
// freezes anything, and the lock is released when the holder ends.
func TestSecondMigrationOfAWorkloadFailsBeforeFreezing(t *testing.T) {
	h := newHarness(t, builder.MakeLiveMigration("ns", "mig", "app").Target("b").Obj())
	h.w.preCopyDone = false
	h.run(lmv1alpha1.PhasePreCopy, time.Millisecond)

	other := builder.MakeLiveMigration("ns", "mig2", "app").Target("b").Obj()
	other.UID = "uid-mig2"
	step := h.second(other)
	var got *lmv1alpha1.LiveMigration
	for i := 0; i < 10; i++ {
		got = step()
		h.clock.Step(time.Millisecond)
		if got.Status.Phase.IsTerminal() {
			break
		}
	}
	if got.Status.Phase != lmv1alpha1.PhaseFailed {
		t.Fatalf("second migration phase = %s, want Failed", got.Status.Phase)
	}
	if f := got.Status.Failure; f == nil || f.Reason != ReasonMigrationInProgress || f.Phase != lmv1alpha1.PhasePlanning ||
		!strings.Contains(f.Message, "LiveMigration mig is already migrating") {
		t.Fatalf("failure = %+v, want Planning/%s naming mig", got.Status.Failure, ReasonMigrationInProgress)
	}
	if !enteredAt(&got.Status, lmv1alpha1.PhaseCheckpointing).IsZero() {
		t.Fatalf("the second migration reached Checkpointing")
	}
	if n := h.w.count("freeze:app-0"); n != 0 {
		t.Fatalf("%d freezes while only the first migration is in PreCopy", n)
	}

	// The first goes on and, once it ended, releases the lock.
	h.w.preCopyDone = true
	h.run(lmv1alpha1.PhaseSucceeded, time.Millisecond)
	if _, err := h.reconcile(); err != nil {
		t.Fatal(err)
	}
	lease := &coordinationv1.Lease{}
	err := h.c.Get(h.ctx, types.NamespacedName{Namespace: "ns", Name: LockName(h.lm().Spec.WorkloadRef)}, lease)
	if !apierrors.IsNotFound(err) {
		t.Fatalf("workload lock after the holder ended: %+v, %v; want it deleted", lease, err)
	}
}

// A lock whose holder ended without releasing it (deleted, or a controller
// that stopped in between) is taken over.
func TestWorkloadLockOfAnEndedMigrationIsTakenOver(t *testing.T) {
	ended := builder.MakeLiveMigration("ns", "old", "app").Target("b").Phase(lmv1alpha1.PhaseFailed, t0).Obj()
	ended.UID = "uid-old"
	h := newHarness(t, builder.MakeLiveMigration("ns", "mig", "app").Target("b").Obj(), append(defaultObjects(), ended)...)
	old := h.newReconciler()
	if err := old.acquireLock(h.ctx, &lmv1alpha1.LiveMigration{ObjectMeta: ended.ObjectMeta, Spec: ended.Spec}); err != nil {
		t.Fatal(err)
	}
	got := h.run(lmv1alpha1.PhaseSucceeded, time.Millisecond)
	if got[len(got)-1] != lmv1alpha1.PhaseSucceeded {
		t.Fatalf("phases %v, want Succeeded", got)
	}
}
