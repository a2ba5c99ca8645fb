package migration

import (
	"context"
	"fmt"

	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
)

// finalSync sends the last volume delta while the source is frozen, so that
// disk and memory are captured at the same instant.
func (r *Reconciler) finalSync(ctx context.Context, lm *lmv1alpha1.LiveMigration) (stepResult, error) {
	st := &lm.Status
	m := migrationOf(lm)
	allSynced := true
	var total int64
	for i, vol := range volumesOf(lm) {
		hook, err := r.Hooks.Replication.For(vol.StorageClass)
		if err != nil {
			return stay(), err
		}
		rs, err := hook.FinalSync(ctx, m, vol)
		if err != nil {
			return stay(), fmt.Errorf("final sync of volume %s: %w", vol.ClaimName, err)
		}
		st.Volumes[i].FinalDeltaBytes = rs.FinalDeltaBytes
		st.Volumes[i].Synced = rs.Synced
		total += rs.FinalDeltaBytes
		allSynced = allSynced && rs.Synced
	}
	st.Bytes.FinalDelta = total
	if !allSynced {
		return stay(), nil
	}
	return advanceTo(lmv1alpha1.PhaseTransfer), nil
}
