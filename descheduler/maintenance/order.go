package maintenance

import (
	"sort"
	"time"

	workv1alpha2 "github.com/karmada-io/karmada/pkg/apis/work/v1alpha2"

	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
	"github.com/livemigrate/livemigrate/descheduler/policy"
	"github.com/livemigrate/livemigrate/descheduler/trigger"
)

// Candidate is an opted-in workload of a draining cluster that can start a
// live migration.
type Candidate struct {
	Binding  *workv1alpha2.ResourceBinding
	Policy   *policy.Policy
	Target   string
	Estimate time.Duration
}

func (c *Candidate) key() string { return c.Binding.Namespace + "/" + c.Binding.Name }

// Order sorts candidates in drain order: higher livemigrate.io/drain-priority
// first, then the smallest estimated downtime, then by namespace/name.
func Order(cands []*Candidate) {
	sort.SliceStable(cands, func(i, j int) bool {
		a, b := cands[i], cands[j]
		if a.Policy.DrainPriority != b.Policy.DrainPriority {
			return a.Policy.DrainPriority > b.Policy.DrainPriority
		}
		if a.Estimate != b.Estimate {
			return a.Estimate < b.Estimate
		}
		return a.key() < b.key()
	})
}

// EstimateDowntime is a first-order estimate of a workload's downtime used
// only to order a drain: its memory (the binding's per-replica memory
// request, else fallback per replica) times its replicas, at bandwidth
// bytes per second. The LiveMigration estimates again, from measurements,
// before it freezes.
func EstimateDowntime(rb *workv1alpha2.ResourceBinding, fallback, bandwidth int64) time.Duration {
	if bandwidth <= 0 {
		bandwidth = 100 << 20
	}
	return time.Duration(float64(trigger.CheckpointBytes(rb, fallback)) / float64(bandwidth) * float64(time.Second))
}

// involves reports whether an active migration counts against cluster's
// budget: as source or target, or created by the cluster's drain (a
// Pending one has no source recorded yet).
func involves(lm *lmv1alpha1.LiveMigration, cluster string) bool {
	st := lm.Status
	return st.SourceCluster == cluster || st.TargetCluster == cluster || lm.Spec.TargetCluster == cluster ||
		lm.Labels[policy.LabelDrainCluster] == cluster
}

// FreeSlots is how many migrations out of source the drain may start now
// without exceeding --max-active-migrations (maxActive) and
// --max-active-migrations-per-cluster (perCluster), counting every
// migration not yet Succeeded or Failed, Pending ones included; 0 means
// unlimited for either limit, and -1 is returned when both are.
func FreeSlots(migrations []lmv1alpha1.LiveMigration, source string, maxActive, perCluster int) int {
	active, onSource := 0, 0
	for i := range migrations {
		lm := &migrations[i]
		if lm.Status.Phase.IsTerminal() || !lm.DeletionTimestamp.IsZero() {
			continue
		}
		active++
		if involves(lm, source) {
			onSource++
		}
	}
	free := -1
	if maxActive > 0 {
		free = max(maxActive-active, 0)
	}
	if perCluster > 0 {
		n := max(perCluster-onSource, 0)
		if free < 0 || n < free {
			free = n
		}
	}
	return free
}

// Outcome is what a drain does with an opted-in workload that cannot start a
// live migration (no feasible target, or its live migration rolled back).
type Outcome string

const (
	// OutcomeEvict hands it to Karmada's graceful eviction (LiveMigrateIfPossible).
	OutcomeEvict Outcome = "Evict"
	// OutcomeBlock leaves it where it is and reports it (LiveMigrate).
	OutcomeBlock Outcome = "Block"
)

// Fallback decides for a workload that cannot move live.
func Fallback(p *policy.Policy) Outcome {
	if p.MayFallBack() {
		return OutcomeEvict
	}
	return OutcomeBlock
}
