package migration

import (
	"context"
	"fmt"
	"strings"

	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
)

// restoring waits until every checkpoint was consumed by a new target pod.
// A target pod admitted without its checkpoint fails the step at once: it
// would start fresh and never restore, and waiting for the phase timeout
// would only keep the source frozen longer.
func (r *Reconciler) restoring(ctx context.Context, lm *lmv1alpha1.LiveMigration) (stepResult, error) {
	st := &lm.Status
	rs, err := r.Hooks.Restore.Status(ctx, migrationOf(lm))
	if err != nil {
		return stay(), fmt.Errorf("reading the restore in %s: %w", st.TargetCluster, err)
	}
	if len(rs.Unmutated) > 0 {
		return stay(), NewStepFailedError("RestoreWebhookBypassed", fmt.Sprintf(
			"target pod(s) %s in %s were admitted without their checkpoint: the restore webhook did not mutate them "+
				"(is it running, and registered for pod creation in namespace %s?), so they would start fresh",
			strings.Join(rs.Unmutated, ", "), st.TargetCluster, lm.Namespace))
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
