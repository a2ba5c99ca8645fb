package migration

import (
	"context"
	"fmt"
	"time"

	workv1alpha2 "github.com/karmada-io/karmada/pkg/apis/work/v1alpha2"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
)

// rollingBack undoes a migration, in an order that keeps a single live copy:
//
//  1. ask volume replication to stop;
//  2. point the binding back at the source and drop the eviction task;
//  3. remove the restore records and the target workload, and wait until
//     it is gone;
//  4. only then thaw the source pods;
//  5. enter Failed once replication stopped and cleaned up too.
//
// Every step is idempotent and decided from status alone, so a restarted
// controller repeats them safely.
func (r *Reconciler) rollingBack(ctx context.Context, lm *lmv1alpha1.LiveMigration, now time.Time) (stepResult, error) {
	st := &lm.Status
	m := migrationOf(lm)

	replicationStopped := true
	for _, vol := range volumesOf(lm) {
		hook, err := r.Hooks.Replication.For(vol.StorageClass)
		if err != nil {
			continue // nothing was started for a class without a backend
		}
		done, err := hook.Abort(ctx, m, vol)
		if err != nil {
			return stay(), fmt.Errorf("aborting replication of volume %s: %w", vol.ClaimName, err)
		}
		replicationStopped = replicationStopped && done
	}

	if st.SourceCluster != "" {
		rb, err := r.getBinding(ctx, lm)
		switch {
		case apierrors.IsNotFound(err):
		case err != nil:
			return stay(), err
		case ownTask(rb, lm) >= 0:
			replicas := sourceReplicas(rb, lm)
			if err := r.patchBinding(ctx, rb, func(b *workv1alpha2.ResourceBinding) { revert(b, lm, replicas) }); err != nil {
				return stay(), err
			}
			setCondition(st, lm.Generation, lmv1alpha1.ConditionRebound, metav1.ConditionFalse, "Reverted",
				fmt.Sprintf("ResourceBinding %s points at %s again", rb.Name, st.SourceCluster), now)
		}
	}

	// The target may hold the workload only once the binding was patched,
	// which happens in Rebinding: before that there is nothing to remove, and
	// a workload of the same name there is not ours.
	if st.TargetCluster != "" && !enteredAt(st, lmv1alpha1.PhaseRebinding).IsZero() {
		removed, err := r.Hooks.Restore.Remove(ctx, m)
		if err != nil {
			return stay(), fmt.Errorf("removing the restore records in %s: %w", st.TargetCluster, err)
		}
		gone, err := r.Hooks.Workload.Remove(ctx, st.TargetCluster, lm.Namespace, lm.Spec.WorkloadRef)
		if err != nil {
			return stay(), fmt.Errorf("removing the target workload in %s: %w", st.TargetCluster, err)
		}
		if !gone || !removed {
			return stay(), nil
		}
	}

	if !enteredAt(st, lmv1alpha1.PhaseCheckpointing).IsZero() {
		allThawed := true
		for i, pod := range podsOf(lm) {
			ok, err := r.Hooks.Checkpoint.Thaw(ctx, m, pod)
			if err != nil {
				return stay(), fmt.Errorf("thawing pod %s: %w", pod.Name, err)
			}
			if ok {
				st.Pods[i].Frozen = false
			}
			allThawed = allThawed && ok
		}
		if !allThawed {
			return stay(), nil
		}
		setCondition(st, lm.Generation, lmv1alpha1.ConditionSourceFrozen, metav1.ConditionFalse, "Thawed", "source pods run again", now)
	}
	// Failed only once replication stopped and its target copy was removed.
	if !replicationStopped {
		return stay(), nil
	}
	return advanceTo(lmv1alpha1.PhaseFailed), nil
}
