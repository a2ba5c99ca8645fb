package migration

import (
	"context"
	"fmt"

	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
)

// restoring waits until every checkpoint was consumed by a new target pod.
func (r *Reconciler) restoring(ctx context.Context, lm *lmv1alpha1.LiveMigration) (stepResult, error) {
	st := &lm.Status
	rs, err := r.Hooks.Restore.Status(ctx, migrationOf(lm))
	if err != nil {
		return stay(), fmt.Errorf("reading the restore in %s: %w", st.TargetCluster, err)
	}
	all := true
	for i := range st.Pods {
		st.Pods[i].Restored = rs.Restored[st.Pods[i].Name]
		all = all && st.Pods[i].Restored
	}
	if !all {
		return stay(), nil
	}
	return advanceTo(lmv1alpha1.PhaseVerifying), nil
}
