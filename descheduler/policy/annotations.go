package policy

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation/field"

	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
)

// Prefix is the prefix of every policy annotation. The admission webhook is
// sent exactly the objects that carry an annotation with it.
const Prefix = "livemigrate.io/"

// Policy annotations, on a resource template (Deployment, StatefulSet), a
// PropagationPolicy or a ClusterPropagationPolicy.
const (
	// AnnotationEvictionStrategy opts a workload in: LiveMigrate,
	// LiveMigrateIfPossible or None. Absent means livemigrate never moves it.
	AnnotationEvictionStrategy = Prefix + "eviction-strategy"
	// AnnotationDowntimeBudget is the downtime budget of the LiveMigrations
	// every trigger creates for the workload (a Go duration, e.g. 2s).
	AnnotationDowntimeBudget = Prefix + "downtime-budget"
	// AnnotationRebalance lets ("true", the default once opted in) or keeps
	// ("false") the load rebalancing trigger from moving the workload.
	AnnotationRebalance = Prefix + "rebalance"
	// AnnotationDrainPriority orders a drain: higher drains first (int32,
	// default 0).
	AnnotationDrainPriority = Prefix + "drain-priority"
	// AnnotationMemoryTransfer is the spec.memoryTransfer of the
	// LiveMigrations every trigger creates for the workload: StopAndCopy
	// (the default) or PostCopy.
	AnnotationMemoryTransfer = Prefix + "memory-transfer"
)

// Keys lists the policy annotations, in documentation order.
var Keys = []string{AnnotationEvictionStrategy, AnnotationDowntimeBudget, AnnotationRebalance, AnnotationDrainPriority, AnnotationMemoryTransfer}

var memoryTransfers = []string{string(lmv1alpha1.MemoryTransferStopAndCopy), string(lmv1alpha1.MemoryTransferPostCopy)}

// Strategy is the value of livemigrate.io/eviction-strategy.
type Strategy string

const (
	// StrategyLiveMigrate moves the workload live or not at all: a workload
	// that cannot move live stays, and a drain reports it as blocking.
	StrategyLiveMigrate Strategy = "LiveMigrate"
	// StrategyLiveMigrateIfPossible falls back to Karmada's graceful
	// eviction (evict and re-create) when no live migration can start or the
	// live migration rolled back.
	StrategyLiveMigrateIfPossible Strategy = "LiveMigrateIfPossible"
	// StrategyNone opts out explicitly (e.g. one template under a policy
	// that opts in every workload it propagates).
	StrategyNone Strategy = "None"
)

var strategies = []string{string(StrategyLiveMigrate), string(StrategyLiveMigrateIfPossible), string(StrategyNone)}

// Labels and annotations the triggers put on the LiveMigrations they create.
const (
	// LabelTrigger says which trigger created a LiveMigration.
	LabelTrigger = Prefix + "trigger"
	// LabelDrainCluster names the cluster whose drain created a LiveMigration.
	LabelDrainCluster = Prefix + "drain-cluster"
	// AnnotationReason says why the trigger moved the workload.
	AnnotationReason = Prefix + "reason"
)

// What the placement trigger keeps on the ResourceBindings of opted-in
// workloads (never on templates or policies).
const (
	// LabelOptedIn ("true") marks the ResourceBinding of an opted-in
	// workload: the placement webhook's matchConditions send it exactly the
	// updates of such bindings that change spec.clusters.
	LabelOptedIn = Prefix + "opted-in"
	// AnnotationScheduledClusters holds, as JSON ([{"name":…,"replicas":…}]),
	// the scheduling result karmada-scheduler wrote for an opted-in running
	// workload that would have moved it: the placement webhook keeps
	// spec.clusters and puts the result here, and the placement trigger
	// moves the workload there by live migration.
	AnnotationScheduledClusters = Prefix + "scheduled-clusters"
)

// Trigger is the value of the livemigrate.io/trigger label.
type Trigger string

const (
	TriggerMaintenance Trigger = "maintenance"
	TriggerRebalance   Trigger = "rebalance"
	TriggerManual      Trigger = "manual"
	// TriggerPlacement is a change of the workload's placement (its
	// policy, its cluster's labels, a WorkloadRebalancer) that Karmada's
	// scheduling would have made by re-creating it.
	TriggerPlacement Trigger = "placement"
)

// TriggerOf returns the trigger of a LiveMigration from its labels; one
// created without the label was created by hand.
func TriggerOf(labels map[string]string) Trigger {
	switch t := Trigger(labels[LabelTrigger]); t {
	case TriggerMaintenance, TriggerRebalance, TriggerPlacement:
		return t
	}
	return TriggerManual
}

// annotationPath is the field path of one annotation, as the API server
// names it in validation errors.
func annotationPath(key string) *field.Path {
	return field.NewPath("metadata", "annotations").Key(key)
}

// Validate returns one error per malformed policy annotation, each naming
// the annotation, the value and what to write instead. Annotations without
// the prefix are ignored.
func Validate(annotations map[string]string) field.ErrorList {
	var errs field.ErrorList
	keys := make([]string, 0, len(annotations))
	for k := range annotations {
		if strings.HasPrefix(k, Prefix) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := validateOne(k, annotations[k]); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

func validateOne(key, value string) *field.Error {
	p := annotationPath(key)
	switch key {
	case AnnotationEvictionStrategy:
		if _, err := parseStrategy(value); err != nil {
			return field.NotSupported(p, value, strategies)
		}
	case AnnotationDowntimeBudget:
		if _, err := parseBudget(value); err != nil {
			return field.Invalid(p, value, err.Error())
		}
	case AnnotationRebalance:
		if _, err := parseBool(value); err != nil {
			return field.NotSupported(p, value, []string{"true", "false"})
		}
	case AnnotationDrainPriority:
		if _, err := parsePriority(value); err != nil {
			return field.Invalid(p, value, err.Error())
		}
	case AnnotationMemoryTransfer:
		if _, err := parseMemoryTransfer(value); err != nil {
			return field.NotSupported(p, value, memoryTransfers)
		}
	default:
		return field.NotSupported(field.NewPath("metadata", "annotations"), key, Keys)
	}
	return nil
}

func parseStrategy(v string) (Strategy, error) {
	switch s := Strategy(v); s {
	case StrategyLiveMigrate, StrategyLiveMigrateIfPossible, StrategyNone:
		return s, nil
	}
	return "", fmt.Errorf("use one of %s", strings.Join(strategies, ", "))
}

func parseBudget(v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("must be a positive duration, e.g. 2s or 500ms")
	}
	return d, nil
}

// parseBool accepts exactly "true" and "false", as the documentation says.
func parseBool(v string) (bool, error) {
	switch v {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, fmt.Errorf("use true or false")
}

func parseMemoryTransfer(v string) (lmv1alpha1.MemoryTransfer, error) {
	switch m := lmv1alpha1.MemoryTransfer(v); m {
	case lmv1alpha1.MemoryTransferStopAndCopy, lmv1alpha1.MemoryTransferPostCopy:
		return m, nil
	}
	return "", fmt.Errorf("use one of %s", strings.Join(memoryTransfers, ", "))
}

func parsePriority(v string) (int32, error) {
	n, err := strconv.ParseInt(v, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("must be an integer from %d to %d, higher drains first", int64(-1<<31), int64(1<<31-1))
	}
	return int32(n), nil
}
