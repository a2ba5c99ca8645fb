package migration

import (
	"context"
	"fmt"
	"strings"
	"time"

	workv1alpha2 "github.com/karmada-io/karmada/pkg/apis/work/v1alpha2"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"

	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
)

// cleanup finishes a migration whose target runs: it drops the eviction task
// (Karmada then deletes the frozen source workload), deletes the checkpoint
// archives and images, ends replication, applies the source claim policy
// (sourceclaims.go), removes the restore records and waits for the source
// workload to be gone.
// It never rolls back; errors are retried.
func (r *Reconciler) cleanup(ctx context.Context, lm *lmv1alpha1.LiveMigration, now time.Time) (stepResult, error) {
	st := &lm.Status
	m := migrationOf(lm)

	rb, err := r.getBinding(ctx, lm)
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		return stay(), err
	case ownTask(rb, lm) >= 0:
		if err := r.patchBinding(ctx, rb, func(b *workv1alpha2.ResourceBinding) { dropTask(b, lm) }); err != nil {
			return stay(), err
		}
	}
	setCondition(st, lm.Generation, lmv1alpha1.ConditionSourceFrozen, metav1.ConditionFalse, "SourceDeleted", "the source workload is deleted by Karmada", now)

	done := true
	for i, pod := range podsOf(lm) {
		ok, err := r.Hooks.Checkpoint.Release(ctx, m, pod)
		if err != nil {
			return stay(), fmt.Errorf("releasing the checkpoint of pod %s: %w", pod.Name, err)
		}
		st.Pods[i].Frozen = st.Pods[i].Frozen && !ok
		done = done && ok
	}
	for _, vol := range volumesOf(lm) {
		hook, err := r.Hooks.Replication.For(vol.StorageClass)
		if err != nil {
			return stay(), err
		}
		ok, err := hook.Complete(ctx, m, vol)
		if err != nil {
			return stay(), fmt.Errorf("completing replication of volume %s: %w", vol.ClaimName, err)
		}
		done = done && ok
	}
	settled, err := r.settleSourceClaims(ctx, lm)
	if err != nil {
		return stay(), err
	}
	done = done && settled
	ok, err := r.Hooks.Restore.Remove(ctx, m)
	if err != nil {
		return stay(), fmt.Errorf("removing the restore records: %w", err)
	}
	if !done || !ok {
		return stay(), nil
	}
	// Succeeded only once the frozen source is gone. Karmada deletes it
	// when its Work in the source's execution namespace goes (the eviction
	// task dropped above); until then Karmada may still apply it, so the
	// workload is not touched. Then Remove confirms (or finishes) the
	// deletion: no workload, pod or ReplicaSet of it left in the source.
	if st.SourceCluster != "" {
		works, err := r.clusterWorks(ctx, lm, st.SourceCluster)
		if err != nil {
			return stay(), err
		}
		if len(works) > 0 {
			klog.FromContext(ctx).V(2).Info("Waiting for Karmada to remove the source's Work", "cluster", st.SourceCluster, "works", strings.Join(works, ","))
			return stay(), nil
		}
		gone, err := r.Hooks.Workload.Remove(ctx, st.SourceCluster, lm.Namespace, lm.Spec.WorkloadRef)
		if err != nil {
			return stay(), fmt.Errorf("removing the source workload in %s: %w", st.SourceCluster, err)
		}
		if !gone {
			return stay(), nil
		}
	}
	return advanceTo(lmv1alpha1.PhaseSucceeded), nil
}
