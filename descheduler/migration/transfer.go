package migration

import (
	"context"
	"fmt"
	"sort"

	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
)

// transfer waits until every checkpoint image is in the registry, records
// the images in status and then in the target's PodRestore: the agent's
// restore controller there points the target pods, gated since their
// creation during the push, at the images and releases them. Transfer
// follows FinalSync, so a target pod never runs before the final volume
// delta is in place either. A target pod admitted without the restore
// webhook fails the step first (checkTargetPods).
func (r *Reconciler) transfer(ctx context.Context, lm *lmv1alpha1.LiveMigration) (stepResult, error) {
	st := &lm.Status
	m := migrationOf(lm)
	if !enteredAt(st, lmv1alpha1.PhaseRebinding).IsZero() {
		if _, err := r.checkTargetPods(ctx, lm, false); err != nil {
			return stay(), err
		}
	}
	allPushed := true
	for i, pod := range podsOf(lm) {
		cs, err := r.Hooks.Checkpoint.Transfer(ctx, m, pod)
		if err != nil {
			return stay(), fmt.Errorf("transferring the checkpoint of pod %s: %w", pod.Name, err)
		}
		st.Pods[i].Message = cs.Message
		if !cs.Pushed {
			allPushed = false
			continue
		}
		if len(cs.Images) == 0 {
			return stay(), NewStepFailedError(lmv1alpha1.ReasonNoCheckpointImage, fmt.Sprintf("the checkpoint of pod %s was pushed without any image", pod.Name))
		}
		imgs := make([]lmv1alpha1.ContainerCheckpointImage, 0, len(cs.Images))
		for c, img := range cs.Images {
			imgs = append(imgs, lmv1alpha1.ContainerCheckpointImage{Container: c, Image: img})
		}
		sort.Slice(imgs, func(a, b int) bool { return imgs[a].Container < imgs[b].Container })
		st.Pods[i].CheckpointImages = imgs
	}
	if !allPushed {
		return stay(), nil
	}
	if enteredAt(st, lmv1alpha1.PhaseRebinding).IsZero() {
		// Reached Transfer without a rebinding (a migration started by a
		// controller that rebound after the push): rebind now; the
		// PodRestore is then written with its images.
		return advanceTo(lmv1alpha1.PhaseRebinding), nil
	}
	if err := r.Hooks.Restore.Prepare(ctx, m, checkpointsOf(lm)); err != nil {
		return stay(), fmt.Errorf("recording the checkpoint images in %s: %w", st.TargetCluster, err)
	}
	return advanceTo(lmv1alpha1.PhaseRestoring), nil
}
