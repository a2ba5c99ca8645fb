package migration

import (
	"context"
	"fmt"
	"sort"

	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
)

// transfer waits until every checkpoint image is in the registry and records
// the images in status, where the restore step reads them.
func (r *Reconciler) transfer(ctx context.Context, lm *lmv1alpha1.LiveMigration) (stepResult, error) {
	st := &lm.Status
	m := migrationOf(lm)
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
			return stay(), NewStepFailedError("NoCheckpointImage", fmt.Sprintf("the checkpoint of pod %s was pushed without any image", pod.Name))
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
	return advanceTo(lmv1alpha1.PhaseRebinding), nil
}
