package migration

import (
	"context"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
)

// MinBandwidthSampleBytes is how much a volume's pre-copy must have sent
// before its measured rate is taken as the bandwidth to the target; below
// it the configured default bandwidth applies.
const MinBandwidthSampleBytes = 8 << 20

// preCopy replicates every volume while the workload runs, then decides
// whether the workload may be frozen within the downtime budget.
func (r *Reconciler) preCopy(ctx context.Context, lm *lmv1alpha1.LiveMigration, now time.Time) (stepResult, error) {
	st := &lm.Status
	m := migrationOf(lm)
	opts := r.preCopyOptions(lm)
	allDone := true
	var pending, precopied, measured, bandwidth int64
	for i, vol := range volumesOf(lm) {
		hook, err := r.Hooks.Replication.For(vol.StorageClass)
		if err != nil {
			return stay(), err
		}
		rs, err := hook.PreCopy(ctx, m, vol, opts)
		if err != nil {
			return stay(), fmt.Errorf("pre-copy of volume %s: %w", vol.ClaimName, err)
		}
		vs := &st.Volumes[i]
		vs.Rounds, vs.LastDeltaBytes, vs.PreCopyBytes = rs.Rounds, rs.LastDeltaBytes, rs.PreCopyBytes
		allDone = allDone && rs.PreCopyDone
		pending += rs.PendingBytes
		precopied += rs.PreCopyBytes
		if rs.BytesPerSecond > 0 && (measured == 0 || rs.BytesPerSecond < measured) {
			measured = rs.BytesPerSecond
		}
		// A rate measured over a few bytes is the passes' fixed cost
		// (handshakes, file lists, round trips), not the link's bandwidth:
		// it is reported but does not drive the estimate.
		if rs.BytesPerSecond > 0 && rs.PreCopyBytes >= MinBandwidthSampleBytes && (bandwidth == 0 || rs.BytesPerSecond < bandwidth) {
			bandwidth = rs.BytesPerSecond
		}
	}
	st.Bytes.VolumePreCopy = precopied
	if measured > 0 {
		st.MeasuredBandwidth = resource.NewQuantity(measured, resource.BinarySI)
	}
	if !allDone {
		return stay(), nil
	}

	var checkpointBytes int64
	for _, pod := range podsOf(lm) {
		n, err := r.Hooks.Checkpoint.EstimateSize(ctx, m, pod)
		if err != nil {
			return stay(), fmt.Errorf("estimating checkpoint size of pod %s: %w", pod.Name, err)
		}
		checkpointBytes += n
	}
	if err := r.checkBudget(ctx, lm, pending, checkpointBytes, bandwidth, now); err != nil {
		return stay(), err
	}
	return advanceTo(lmv1alpha1.PhaseCheckpointing), nil
}

func (r *Reconciler) preCopyOptions(lm *lmv1alpha1.LiveMigration) PreCopyOptions {
	o := PreCopyOptions{ConvergenceThresholdBytes: r.Config.PreCopyThresholdBytes, MaxRounds: r.Config.PreCopyMaxRounds}
	if pc := lm.Spec.PreCopy; pc != nil {
		if pc.ConvergenceThreshold != nil {
			o.ConvergenceThresholdBytes = pc.ConvergenceThreshold.Value()
		}
		if pc.MaxRounds != nil {
			o.MaxRounds = *pc.MaxRounds
		}
	}
	return o
}

// EstimateDowntime is the time to send the final volume delta and the
// checkpoints at the given bandwidth (bytes/s).
func EstimateDowntime(finalDeltaBytes, checkpointBytes, bandwidth int64) time.Duration {
	if bandwidth <= 0 {
		return 0
	}
	return time.Duration(float64(finalDeltaBytes+checkpointBytes) / float64(bandwidth) * float64(time.Second))
}

// checkBudget is the one place the downtime budget is enforced: it records
// the estimate and the DowntimeBudgetMet condition and returns a
// BudgetExceededError when the workload must not be frozen.
//
// The estimate is the transfer of the final delta and the checkpoints at
// the bandwidth, plus the dump, pull and restore time learned from the
// latest successful migrations into the same target (LearnedOverhead):
// without that history it is the transfer alone, which leaves those costs
// out.
func (r *Reconciler) checkBudget(ctx context.Context, lm *lmv1alpha1.LiveMigration, pending, checkpointBytes, measured int64, now time.Time) error {
	st := &lm.Status
	bw := measured
	if bw <= 0 {
		bw = r.Config.DefaultBandwidth
	}
	if q := lm.Spec.BandwidthLimit; q != nil && q.Value() > 0 && (bw <= 0 || q.Value() < bw) {
		bw = q.Value()
	}
	budget := r.Config.DefaultDowntimeBudget
	if lm.Spec.DowntimeBudget != nil {
		budget = lm.Spec.DowntimeBudget.Duration
	}
	transfer := EstimateDowntime(pending, checkpointBytes, bw)
	overhead, learned, err := r.learnedOverhead(ctx, lm, checkpointBytes)
	if err != nil {
		return err
	}
	est := transfer + overhead
	st.EstimatedDowntime = &metav1.Duration{Duration: est}
	how := fmt.Sprintf("final delta %d bytes + checkpoints %d bytes at %d bytes/s: %s", pending, checkpointBytes, bw, transfer.Round(time.Millisecond))
	if learned > 0 {
		how += fmt.Sprintf("; dump, pull and restore %s, learned from the %d latest migrations into %s", overhead.Round(time.Millisecond), learned, st.TargetCluster)
	} else {
		how += "; dump, pull and restore not included: no earlier migration into " + st.TargetCluster + " to learn them from"
	}
	if budget > 0 && (bw <= 0 || est > budget) {
		err := NewBudgetExceededError(est, budget)
		if bw <= 0 {
			err = NewStepFailedError(lmv1alpha1.ReasonBudgetExceeded, "no bandwidth was measured and no default is configured, so the downtime cannot be estimated; set spec.bandwidthLimit")
		}
		setCondition(st, lm.Generation, lmv1alpha1.ConditionDowntimeBudget, metav1.ConditionFalse, "BudgetExceeded",
			fmt.Sprintf("not freezing: %v (%s)", err, how), now)
		return err
	}
	setCondition(st, lm.Generation, lmv1alpha1.ConditionDowntimeBudget, metav1.ConditionTrue, "WithinBudget",
		fmt.Sprintf("estimated downtime %s within budget %s (%s)", est.Round(time.Millisecond), budget, how), now)
	return nil
}

// learnedOverhead is LearnedOverhead over the LiveMigrations the controller
// sees, with Config.DowntimeHistory.
func (r *Reconciler) learnedOverhead(ctx context.Context, lm *lmv1alpha1.LiveMigration, checkpointBytes int64) (time.Duration, int, error) {
	if r.Config.DowntimeHistory <= 0 {
		return 0, 0, nil
	}
	var all lmv1alpha1.LiveMigrationList
	if err := r.Client.List(ctx, &all); err != nil {
		return 0, 0, fmt.Errorf("listing earlier LiveMigrations for the downtime estimate: %w", err)
	}
	d, learned := LearnedOverhead(all.Items, lm.Status.TargetCluster, checkpointBytes, r.Config.DowntimeHistory)
	return d, learned, nil
}
