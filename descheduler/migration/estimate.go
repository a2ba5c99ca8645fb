package migration

import (
	"sort"
	"time"

	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
)

// DefaultDowntimeHistory is --downtime-history's default.
const DefaultDowntimeHistory = 10

// overheadPhases are the phases of the downtime that do not wait on the
// link between the clusters: the dump (Checkpointing), the restore and its
// readiness (Restoring) and the check of the target (Verifying). The push
// and the final volume sync, which do, run beside Rebinding, FinalSync and
// Transfer.
var overheadPhases = []lmv1alpha1.LiveMigrationPhase{
	lmv1alpha1.PhaseCheckpointing, lmv1alpha1.PhaseRestoring, lmv1alpha1.PhaseVerifying,
}

// MinOverheadSampleBytes is the smallest checkpoint a migration must have
// moved for its dump and restore time to tell how that time grows with the
// checkpoint's size: below it the fixed costs (API round trips, scheduling,
// process start, several pods restored side by side) dominate, and
// extrapolating them to a large memory would refuse migrations for no
// reason.
const MinOverheadSampleBytes = 128 << 20

// LearnedOverhead estimates the part of a migration's downtime into target
// that is not the transfer of its checkpointBytes and final delta: the
// dump, the local pull and restore, readiness. It looks at the latest n
// successful migrations into the same target cluster in history (by
// completion time) and each one's time in overheadPhases, and models that
// time as a fixed part plus a part proportional to the checkpoint bytes,
// on the safe side of what was seen:
//
//   - fixed: the least time any of them spent (a bound on the fixed part
//     from above);
//   - per byte: the median (the upper one of an even count) of
//     (time − fixed) ÷ checkpoint bytes among those that moved at least
//     MinOverheadSampleBytes, so that one slow migration (a controller
//     restart in Restoring, a busy node) does not set it.
//
// It returns fixed + per byte × checkpointBytes and how many migrations it
// learned from; with none (or n ≤ 0) it returns 0, 0. A single migration
// gives its own time and no growth.
func LearnedOverhead(history []lmv1alpha1.LiveMigration, target string, checkpointBytes int64, n int) (time.Duration, int) {
	if n <= 0 || target == "" {
		return 0, 0
	}
	var past []*lmv1alpha1.LiveMigration
	for i := range history {
		h := &history[i]
		st := &h.Status
		if st.Phase != lmv1alpha1.PhaseSucceeded || st.TargetCluster != target || st.Bytes.Memory <= 0 || st.CompletionTime == nil {
			continue
		}
		past = append(past, h)
	}
	if len(past) == 0 {
		return 0, 0
	}
	sort.Slice(past, func(i, j int) bool {
		return past[j].Status.CompletionTime.Before(past[i].Status.CompletionTime)
	})
	if len(past) > n {
		past = past[:n]
	}
	spent := make([]time.Duration, len(past))
	fixed := time.Duration(-1)
	for i, h := range past {
		for _, p := range overheadPhases {
			spent[i] += phaseDuration(&h.Status, p)
		}
		if fixed < 0 || spent[i] < fixed {
			fixed = spent[i]
		}
	}
	var rates []float64 // seconds per byte
	for i, h := range past {
		if m := h.Status.Bytes.Memory; m >= MinOverheadSampleBytes {
			rates = append(rates, (spent[i]-fixed).Seconds()/float64(m))
		}
	}
	var perByte float64
	if len(rates) > 0 {
		sort.Float64s(rates)
		perByte = rates[len(rates)/2]
	}
	return fixed + time.Duration(perByte*float64(checkpointBytes)*float64(time.Second)), len(past)
}

// phaseDuration is how long the migration stayed in phase p: from entering
// it to entering the next phase, 0 if it never left it.
func phaseDuration(st *lmv1alpha1.LiveMigrationStatus, p lmv1alpha1.LiveMigrationPhase) time.Duration {
	ts := st.PhaseTransitions
	for i := 0; i+1 < len(ts); i++ {
		if ts[i].Phase == p {
			return ts[i+1].EnteredAt.Sub(ts[i].EnteredAt.Time)
		}
	}
	return 0
}
