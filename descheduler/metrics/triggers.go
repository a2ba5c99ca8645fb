package metrics

import "github.com/prometheus/client_golang/prometheus"

// Admission results of the policy annotation webhook.
const (
	AdmissionAllowed = "allowed"
	AdmissionDenied  = "denied"
	AdmissionError   = "error"
	// AdmissionHeld is a placement change the placement webhook held.
	AdmissionHeld = "held"
)

// PolicyKind bounds the kind label of the policy admission metric.
func PolicyKind(kind string) string {
	switch kind {
	case "Deployment", "StatefulSet", "PropagationPolicy", "ClusterPropagationPolicy":
		return kind
	}
	return "other"
}

// PolicyAdmissionRequests counts the requests the policy annotation webhook
// answered. The webhook configuration's matchConditions send it only objects
// carrying a livemigrate.io/ annotation, so this counts exactly those.
var PolicyAdmissionRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "livemigrate_policy_admission_requests_total",
	Help: "Admission requests answered by the policy annotation webhook, by kind and result (allowed, denied, error).",
}, []string{"kind", "result"})

// PlacementAdmissionRequests counts the ResourceBinding updates the
// placement webhook answered: those of opted-in bindings that take the
// workload off its cluster (its matchConditions send no other).
var PlacementAdmissionRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "livemigrate_placement_admission_requests_total",
	Help: "ResourceBinding updates answered by the placement webhook, by result (allowed, held, error).",
}, []string{"result"})

// Decision is what a trigger decided for one workload.
type Decision string

const (
	DecisionMigrationCreated Decision = "migration_created"
	DecisionFallbackEviction Decision = "fallback_eviction"
	DecisionBlocked          Decision = "blocked"
	DecisionNotHandled       Decision = "not_handled"
	DecisionInvalidPolicy    Decision = "invalid_policy"
	// DecisionDryRun: a rebalancing round in DryRun chose a move it did
	// not make.
	DecisionDryRun Decision = "dry_run"
)

var (
	// TriggerDecisions counts the triggers' decisions, by trigger
	// (maintenance, rebalance, placement) and outcome.
	TriggerDecisions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "livemigrate_trigger_decisions_total",
		Help: "Decisions of the descheduler's triggers, by trigger and outcome (migration_created, fallback_eviction, blocked, not_handled, invalid_policy, dry_run).",
	}, []string{"trigger", "outcome"})

	// DrainsInProgress is the number of clusters tainted for maintenance
	// whose drain has not finished.
	DrainsInProgress = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "livemigrate_drains_in_progress",
		Help: "Member clusters being drained for maintenance whose opted-in workloads have not all left.",
	})

	// DrainRemaining is, per draining cluster, the opted-in workloads still
	// on it (waiting, migrating, blocked or not handled). The series is
	// deleted when the drain ends, so the label is bounded by the clusters.
	DrainRemaining = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "livemigrate_drain_remaining_workloads",
		Help: "Opted-in workloads left on a cluster being drained for maintenance.",
	}, []string{"cluster"})
)

// InvalidPolicyObjects is, per kind, the objects in the Karmada plane whose
// livemigrate.io/ annotations are malformed (admitted while the webhook was
// down, or before it).
var InvalidPolicyObjects = prometheus.NewGaugeVec(prometheus.GaugeOpts{
	Name: "livemigrate_policy_invalid_objects",
	Help: "Objects with malformed livemigrate.io/ annotations (the workloads they cover are treated as not opted in), by kind.",
}, []string{"kind"})

// Results of a load rebalancing round.
const (
	// RoundIdle: no source or no receiver, nothing considered.
	RoundIdle = "idle"
	// RoundDecided: candidates were considered (moves chosen or not).
	RoundDecided = "decided"
	// RoundError: the round could not read what it decides from.
	RoundError = "error"
)

var (
	// RebalanceRounds counts load rebalancing rounds, by mode (DryRun,
	// Auto) and result.
	RebalanceRounds = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "livemigrate_rebalance_rounds_total",
		Help: "Load rebalancing rounds, by mode (DryRun, Auto) and result (idle, decided, error).",
	}, []string{"mode", "result"})

	// RebalanceDecisions counts, per round, the candidates by outcome (the
	// rebalance package's Outcome values: chosen, cooldown, no_target, ...).
	RebalanceDecisions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "livemigrate_rebalance_decisions_total",
		Help: "Candidates of load rebalancing rounds, by mode (DryRun, Auto) and outcome (chosen, migrating, cooldown, rebalance_disabled, invalid_policy, not_handled, no_target, receivers_full, over_downtime_budget, source_relieved, max_moves, concurrency_budget, no_benefit).",
	}, []string{"mode", "outcome"})

	// ClusterUtilization is the share of each member cluster's allocatable
	// in use (allocated + allocating) as the last round saw it, by cluster
	// and resource (cpu, memory, pods); a cluster's series are deleted when
	// it is gone.
	ClusterUtilization = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "livemigrate_cluster_utilization_ratio",
		Help: "Share of a member cluster's allocatable in use (allocated + allocating), by cluster and resource (cpu, memory, pods), as the last load rebalancing round saw it.",
	}, []string{"cluster", "resource"})
)

func triggerMetrics() []prometheus.Collector {
	return []prometheus.Collector{PolicyAdmissionRequests, TriggerDecisions, DrainsInProgress, DrainRemaining, InvalidPolicyObjects, PlacementAdmissionRequests,
		RebalanceRounds, RebalanceDecisions, ClusterUtilization}
}
