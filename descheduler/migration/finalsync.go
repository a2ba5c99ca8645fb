package migration

import (
	"context"
	"fmt"

	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
)

// finalSync waits for the last volume delta, requested by checkpointing as
// soon as every source pod was frozen (so that disk and memory are captured
// at the same instant, and the final pass overlaps the checkpoint, its push
// and the rebinding). Requesting it again here is a no-op for the backend
// (idempotent, keyed by UID) and covers a controller restarted between the
// freeze and the request. A target pod admitted without the restore webhook
// fails the step first (checkTargetPods): it runs, fresh, on the volume the
// final sync writes.
func (r *Reconciler) finalSync(ctx context.Context, lm *lmv1alpha1.LiveMigration) (stepResult, error) {
	if _, err := r.checkTargetPods(ctx, lm, false); err != nil {
		return stay(), err
	}
	allSynced, err := r.requestFinalSync(ctx, lm)
	if err != nil {
		return stay(), err
	}
	if !allSynced {
		return stay(), nil
	}
	return advanceTo(lmv1alpha1.PhaseTransfer), nil
}

// requestFinalSync requests (if not requested yet) the final sync of every
// volume, records what the backends report and returns whether all of them
// finished. It must only be called once every source pod is frozen: nothing
// may be synced "final" while the source still writes.
func (r *Reconciler) requestFinalSync(ctx context.Context, lm *lmv1alpha1.LiveMigration) (bool, error) {
	st := &lm.Status
	m := migrationOf(lm)
	allSynced := true
	var total int64
	for i, vol := range volumesOf(lm) {
		hook, err := r.Hooks.Replication.For(vol.StorageClass)
		if err != nil {
			return false, err
		}
		rs, err := hook.FinalSync(ctx, m, vol)
		if err != nil {
			return false, fmt.Errorf("final sync of volume %s: %w", vol.ClaimName, err)
		}
		st.Volumes[i].FinalDeltaBytes = rs.FinalDeltaBytes
		st.Volumes[i].Synced = rs.Synced
		total += rs.FinalDeltaBytes
		allSynced = allSynced && rs.Synced
	}
	st.Bytes.FinalDelta = total
	return allSynced, nil
}
