package migration

import (
	"context"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
)

// verifying waits until the target workload is Ready and measures the downtime.
func (r *Reconciler) verifying(ctx context.Context, lm *lmv1alpha1.LiveMigration, now time.Time) (stepResult, error) {
	st := &lm.Status
	ready, err := r.Hooks.Workload.Ready(ctx, st.TargetCluster, lm.Namespace, lm.Spec.WorkloadRef)
	if err != nil {
		return stay(), fmt.Errorf("checking the workload in %s: %w", st.TargetCluster, err)
	}
	if !ready {
		return stay(), nil
	}
	if st.TargetReadyAt == nil {
		st.TargetReadyAt = ptrMicro(now)
	}
	if st.FrozenAt != nil {
		st.Downtime = &metav1.Duration{Duration: st.TargetReadyAt.Sub(st.FrozenAt.Time).Round(time.Millisecond)}
	}
	return advanceTo(lmv1alpha1.PhaseCleanup), nil
}
