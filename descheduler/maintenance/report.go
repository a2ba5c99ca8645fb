package maintenance

import (
	"encoding/json"
	"fmt"

	clusterv1alpha1 "github.com/karmada-io/karmada/pkg/apis/cluster/v1alpha1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ReportAnnotation holds a draining cluster's Report, as JSON.
const ReportAnnotation = "livemigrate.io/drain-report"

// State is where one workload of a draining cluster stands.
type State string

const (
	// StateWaiting: opted in, waiting for the concurrency budget.
	StateWaiting State = "Waiting"
	// StateMigrating: its LiveMigration is in progress.
	StateMigrating State = "Migrating"
	// StateMoved: a LiveMigration of this drain moved it (kept in the report
	// until the drain ends).
	StateMoved State = "Moved"
	// StateEvicting: LiveMigrateIfPossible and it could not move live: handed
	// to Karmada's graceful eviction.
	StateEvicting State = "EvictedByKarmada"
	// StateBlocked: LiveMigrate and it cannot move live; it stays, and the
	// drain cannot finish.
	StateBlocked State = "Blocked"
	// StateNotHandled: opted in, but placed on several clusters, which a
	// LiveMigration cannot move; it stays and the drain cannot finish.
	StateNotHandled State = "NotHandled"
	// StateInvalidPolicy: its livemigrate.io/ annotations are malformed: not
	// opted in, left to Karmada.
	StateInvalidPolicy State = "InvalidPolicy"
)

// Pending reports whether the state keeps the drain from finishing.
func (s State) Pending() bool {
	switch s {
	case StateWaiting, StateMigrating, StateBlocked, StateNotHandled:
		return true
	}
	return false
}

// Stuck reports whether the workload cannot leave without someone acting.
func (s State) Stuck() bool { return s == StateBlocked || s == StateNotHandled }

// WorkloadReport is one workload of a draining cluster.
type WorkloadReport struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	State     State  `json:"state"`
	// Reason says why (blocked, evicted, not handled), or the target.
	Reason string `json:"reason,omitempty"`
	// LiveMigration that moves or moved it.
	LiveMigration string `json:"liveMigration,omitempty"`
	Priority      int32  `json:"priority,omitempty"`
	// Warning is a risk to the live move (e.g. Karmada's taint eviction
	// racing it).
	Warning string `json:"warning,omitempty"`
}

// Report is the state of a cluster's drain.
type Report struct {
	// Taint being drained for (key[=value]:effect).
	Taint string `json:"taint"`
	// Since is when the drain was first seen.
	Since metav1.Time `json:"since"`
	// Workloads are the opted-in workloads bound to the cluster when the
	// drain started or since, and those with a malformed policy.
	Workloads []WorkloadReport `json:"workloads"`
	// Remaining counts the workloads whose state keeps the drain from
	// finishing (Waiting, Migrating, Blocked, NotHandled).
	Remaining int `json:"remaining"`
	// Done is true once no opted-in workload is left on the cluster.
	Done bool `json:"done"`
}

// ReadReport returns the cluster's drain report, nil when there is none.
func ReadReport(c *clusterv1alpha1.Cluster) (*Report, error) {
	raw, ok := c.Annotations[ReportAnnotation]
	if !ok || raw == "" {
		return nil, nil
	}
	r := &Report{}
	if err := json.Unmarshal([]byte(raw), r); err != nil {
		return nil, fmt.Errorf("annotation %s of cluster %s: %w", ReportAnnotation, c.Name, err)
	}
	return r, nil
}
