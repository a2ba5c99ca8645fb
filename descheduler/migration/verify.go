package migration

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"

	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
)

// verifying waits until the target workload is Ready, then checks again,
// before Cleanup deletes the frozen source, that every target pod runs from
// its claimed checkpoint: a replacement pod admitted without its checkpoint
// (RestoreWebhookBypassed) or a restore claim that failed after Restoring
// (RestoreFailed) rolls the migration back; a checkpoint that no running
// target pod restored (its pod was replaced and the replacement waits, or
// its claim went away) keeps the migration here until the phase timeout. It
// measures the downtime.
func (r *Reconciler) verifying(ctx context.Context, lm *lmv1alpha1.LiveMigration, now time.Time) (stepResult, error) {
	st := &lm.Status
	ready, err := r.Hooks.Workload.Ready(ctx, st.TargetCluster, lm.Namespace, lm.Spec.WorkloadRef)
	if err != nil {
		return stay(), fmt.Errorf("checking the workload in %s: %w", st.TargetCluster, err)
	}
	if !ready {
		return stay(), nil
	}
	// The workload is Ready: read the restore after that, so that every
	// pod counted Ready is a pod checked here.
	rs, err := r.checkTargetPods(ctx, lm, true)
	if err != nil {
		return stay(), err
	}
	if missing := unrestored(lm, rs); len(missing) > 0 {
		for i := range st.Pods {
			st.Pods[i].Restored = rs.Restored[st.Pods[i].Name]
			if !st.Pods[i].Restored {
				st.Pods[i].Message = "the target workload is Ready but no target pod runs from this checkpoint"
			}
		}
		klog.FromContext(ctx).V(2).Info("Target Ready without every checkpoint restored", "checkpoints", strings.Join(missing, ","))
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

// unrestored names the checkpoints no running target pod restored from.
func unrestored(lm *lmv1alpha1.LiveMigration, rs RestoreState) []string {
	var missing []string
	for _, p := range lm.Status.Pods {
		if !rs.Restored[p.Name] {
			missing = append(missing, p.Name)
		}
	}
	sort.Strings(missing)
	return missing
}
