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

// rebinding runs as soon as every archive is taken, while the checkpoint
// images are pushed and the final volume sync runs: it records the
// checkpoints in the target cluster (PodRestore, without their images yet:
// the restore webhook gates the pods that claim them), then points the
// ResourceBinding at the target with a suppressed-deletion eviction task for
// the source, then waits until karmada-scheduler observed the new generation
// without undoing it (docs/livemigration.md, "Why karmada-scheduler does not
// undo the rebinding"). Karmada then propagates the workload during the
// push; its pods wait, gated, for the images Transfer records.
func (r *Reconciler) rebinding(ctx context.Context, lm *lmv1alpha1.LiveMigration, now time.Time) (stepResult, error) {
	st := &lm.Status
	m := migrationOf(lm)

	if err := r.Hooks.Restore.Prepare(ctx, m, checkpointsOf(lm)); err != nil {
		return stay(), fmt.Errorf("preparing the restore in %s: %w", st.TargetCluster, err)
	}

	rb, err := r.getBinding(ctx, lm)
	if apierrors.IsNotFound(err) {
		return stay(), NewStepFailedError(lmv1alpha1.ReasonBindingNotFound, fmt.Sprintf("ResourceBinding %s disappeared during the migration", st.BindingName))
	}
	if err != nil {
		return stay(), err
	}

	if ownTask(rb, lm) < 0 {
		// Not rebound yet: the binding must still be where Planning found it.
		if !onlyOn(rb, st.SourceCluster) {
			return stay(), NewStepFailedError(lmv1alpha1.ReasonBindingChanged, fmt.Sprintf(
				"ResourceBinding %s moved to %s during the migration (expected %s)", rb.Name, joinClusters(rb), st.SourceCluster))
		}
		replicas := sourceReplicas(rb, lm)
		if err := r.patchBinding(ctx, rb, func(b *workv1alpha2.ResourceBinding) { rebind(b, lm, replicas) }); err != nil {
			return stay(), err
		}
		setCondition(st, lm.Generation, lmv1alpha1.ConditionRebound, metav1.ConditionTrue, "Rebound",
			fmt.Sprintf("ResourceBinding %s points at %s; %s kept by a suppressed-deletion eviction task", rb.Name, st.TargetCluster, st.SourceCluster), now)
		return stay(), nil
	}

	if !onlyOn(rb, st.TargetCluster) {
		return stay(), NewStepFailedError(lmv1alpha1.ReasonRescheduled, fmt.Sprintf(
			"karmada-scheduler moved ResourceBinding %s to %s after the rebinding to %s", rb.Name, joinClusters(rb), st.TargetCluster))
	}
	if _, err := r.checkTargetPods(ctx, lm, false); err != nil {
		return stay(), err
	}
	if rb.Status.SchedulerObservedGeneration < rb.Generation {
		return stay(), nil
	}
	return advanceTo(lmv1alpha1.PhaseFinalSync), nil
}

// checkpointsOf lists the checkpoints of the source pods with the images
// recorded so far (none before Transfer).
func checkpointsOf(lm *lmv1alpha1.LiveMigration) []PodCheckpoint {
	st := &lm.Status
	checkpoints := make([]PodCheckpoint, 0, len(st.Pods))
	for i, pod := range podsOf(lm) {
		var imgs map[string]string
		if len(st.Pods[i].CheckpointImages) > 0 {
			imgs = map[string]string{}
			for _, ci := range st.Pods[i].CheckpointImages {
				imgs[ci.Container] = ci.Image
			}
		}
		checkpoints = append(checkpoints, PodCheckpoint{Pod: pod, Images: imgs})
	}
	return checkpoints
}
