package migration

import (
	"context"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
)

// checkpointing freezes every source pod first (all together, so that the
// pods of one workload stop at the same instant), then requests the final
// volume sync and checkpoints the pods, so that the final pass runs while
// the checkpoints are dumped and pushed (FinalSync then only waits for it).
// Once every archive is taken it hands over to Rebinding, which runs while
// the push does. The pods stay frozen afterwards until the target runs or
// the rollback thawed them after removing the target.
func (r *Reconciler) checkpointing(ctx context.Context, lm *lmv1alpha1.LiveMigration, now time.Time) (stepResult, error) {
	st := &lm.Status
	m := migrationOf(lm)
	pods := podsOf(lm)

	if st.FrozenAt == nil {
		// Nothing is frozen by this migration before it holds the workload.
		if err := r.acquireLock(ctx, lm); err != nil {
			return stay(), err
		}
	}

	allFrozen := true
	frozenAt := now
	for i, pod := range pods {
		cs, err := r.Hooks.Checkpoint.Freeze(ctx, m, pod)
		if err != nil {
			return stay(), fmt.Errorf("freezing pod %s: %w", pod.Name, err)
		}
		st.Pods[i].Frozen = cs.Frozen
		st.Pods[i].Message = cs.Message
		allFrozen = allFrozen && cs.Frozen
		if !cs.FrozenAt.IsZero() && cs.FrozenAt.Before(frozenAt) {
			frozenAt = cs.FrozenAt
		}
	}
	if !allFrozen {
		return stay(), nil
	}
	if st.FrozenAt == nil {
		// The downtime starts when the first pod stopped: the earliest
		// freeze the backend reports (by its clock; a time ahead of ours
		// is ignored), else now, when every pod is seen frozen.
		st.FrozenAt = ptrMicro(frozenAt)
		setCondition(st, lm.Generation, lmv1alpha1.ConditionSourceFrozen, metav1.ConditionTrue, "Frozen", "source pods are frozen", now)
	}

	// Every source pod is frozen: the final sync may start. Its outcome is
	// awaited in FinalSync; a failure it reports rolls back from here.
	if _, err := r.requestFinalSync(ctx, lm); err != nil {
		return stay(), err
	}

	allDone := true
	var total int64
	for i, pod := range pods {
		cs, err := r.Hooks.Checkpoint.Checkpoint(ctx, m, pod)
		if err != nil {
			return stay(), fmt.Errorf("checkpointing pod %s: %w", pod.Name, err)
		}
		st.Pods[i].CheckpointBytes = cs.Bytes
		st.Pods[i].Message = cs.Message
		total += cs.Bytes
		allDone = allDone && cs.Checkpointed
	}
	st.Bytes.Memory = total
	if !allDone {
		return stay(), nil
	}
	return advanceTo(lmv1alpha1.PhaseRebinding), nil
}
