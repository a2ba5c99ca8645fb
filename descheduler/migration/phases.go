package migration

import (
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
)

// order is the happy path of the state machine. Rebinding follows
// Checkpointing, so that Karmada propagates the workload to the target (its
// pods held by the restore webhook's scheduling gate) while the final volume
// sync and the checkpoint push run.
var order = []lmv1alpha1.LiveMigrationPhase{
	lmv1alpha1.PhasePending,
	lmv1alpha1.PhasePlanning,
	lmv1alpha1.PhasePreCopy,
	lmv1alpha1.PhaseCheckpointing,
	lmv1alpha1.PhaseRebinding,
	lmv1alpha1.PhaseFinalSync,
	lmv1alpha1.PhaseTransfer,
	lmv1alpha1.PhaseRestoring,
	lmv1alpha1.PhaseVerifying,
	lmv1alpha1.PhaseCleanup,
	lmv1alpha1.PhaseSucceeded,
}

// Phases returns the happy path, in order.
func Phases() []lmv1alpha1.LiveMigrationPhase {
	return append([]lmv1alpha1.LiveMigrationPhase(nil), order...)
}

// pastNoReturn reports whether the target already runs and the source is
// being deleted: from Cleanup on a migration is finished forward, never
// rolled back.
func pastNoReturn(p lmv1alpha1.LiveMigrationPhase) bool {
	return p == lmv1alpha1.PhaseCleanup || p == lmv1alpha1.PhaseSucceeded
}

// DefaultTimeouts are the phase timeouts used when neither the LiveMigration
// nor the controller's flags set one. Pending has none: a migration waits
// there for the concurrency budget as long as it takes (abort still works).
var DefaultTimeouts = map[lmv1alpha1.LiveMigrationPhase]time.Duration{
	lmv1alpha1.PhasePlanning:      2 * time.Minute,
	lmv1alpha1.PhasePreCopy:       30 * time.Minute,
	lmv1alpha1.PhaseCheckpointing: 5 * time.Minute,
	lmv1alpha1.PhaseFinalSync:     5 * time.Minute,
	lmv1alpha1.PhaseTransfer:      10 * time.Minute,
	lmv1alpha1.PhaseRebinding:     2 * time.Minute,
	lmv1alpha1.PhaseRestoring:     10 * time.Minute,
	lmv1alpha1.PhaseVerifying:     5 * time.Minute,
}

// DefaultAbortWait is Config.AbortWait's default.
const DefaultAbortWait = 2 * time.Minute

// timeoutFor returns the timeout of the phase, 0 for none (Cleanup and
// RollingBack retry until done: they only undo or finish).
func (r *Reconciler) timeoutFor(lm *lmv1alpha1.LiveMigration, p lmv1alpha1.LiveMigrationPhase) time.Duration {
	if t := lm.Spec.Timeouts; t != nil {
		var d *metav1.Duration
		switch p {
		case lmv1alpha1.PhasePlanning:
			d = t.Planning
		case lmv1alpha1.PhasePreCopy:
			d = t.PreCopy
		case lmv1alpha1.PhaseCheckpointing:
			d = t.Checkpointing
		case lmv1alpha1.PhaseFinalSync:
			d = t.FinalSync
		case lmv1alpha1.PhaseTransfer:
			d = t.Transfer
		case lmv1alpha1.PhaseRebinding:
			d = t.Rebinding
		case lmv1alpha1.PhaseRestoring:
			d = t.Restoring
		case lmv1alpha1.PhaseVerifying:
			d = t.Verifying
		}
		if d != nil && d.Duration > 0 {
			return d.Duration
		}
	}
	if d, ok := r.Config.Timeouts[p]; ok {
		return d
	}
	return DefaultTimeouts[p]
}

// enteredAt returns when the phase was entered, zero if never.
func enteredAt(st *lmv1alpha1.LiveMigrationStatus, p lmv1alpha1.LiveMigrationPhase) time.Time {
	for _, t := range st.PhaseTransitions {
		if t.Phase == p {
			return t.EnteredAt.Time
		}
	}
	return time.Time{}
}

// setPhase records entering phase p now. It is a no-op when already there.
func setPhase(st *lmv1alpha1.LiveMigrationStatus, p lmv1alpha1.LiveMigrationPhase, now time.Time) bool {
	if st.Phase == p {
		return false
	}
	st.Phase = p
	ts := metav1.NewMicroTime(now)
	for i := range st.PhaseTransitions {
		if st.PhaseTransitions[i].Phase == p {
			st.PhaseTransitions[i].EnteredAt = ts
			return true
		}
	}
	st.PhaseTransitions = append(st.PhaseTransitions, lmv1alpha1.PhaseTransition{Phase: p, EnteredAt: ts})
	return true
}

func setCondition(st *lmv1alpha1.LiveMigrationStatus, generation int64, typ string, status metav1.ConditionStatus, reason, msg string, now time.Time) {
	meta.SetStatusCondition(&st.Conditions, metav1.Condition{
		Type: typ, Status: status, Reason: reason, Message: msg,
		ObservedGeneration: generation, LastTransitionTime: metav1.NewTime(now),
	})
}
