package config

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const (
	// GroupName is the API group of the configuration file.
	GroupName = "config.livemigrate.io"
	// Version is its version.
	Version = "v1alpha1"
	// APIVersion is GroupName/Version.
	APIVersion = GroupName + "/" + Version
	// Kind is the kind of the configuration file.
	Kind = "SchedulerPluginsConfiguration"
)

// SchedulerPluginsConfiguration configures the livemigrate scheduler plugins.
type SchedulerPluginsConfiguration struct {
	metav1.TypeMeta `json:",inline"`

	// Capacity configures the Capacity plugin.
	Capacity *CapacityArgs `json:"capacity,omitempty"`

	// Latency configures the Latency plugin.
	Latency *LatencyArgs `json:"latency,omitempty"`
}

// ScoringStrategy is how the Capacity plugin turns headroom into a score.
type ScoringStrategy string

const (
	// LeastAllocated favours the cluster with the most headroom left after
	// placement (spreads load). The default.
	LeastAllocated ScoringStrategy = "LeastAllocated"
	// MostAllocated favours the cluster with the least headroom left after
	// placement (packs load).
	MostAllocated ScoringStrategy = "MostAllocated"
)

// CapacityArgs configures the Capacity plugin.
type CapacityArgs struct {
	// Strategy is LeastAllocated (default) or MostAllocated.
	Strategy *ScoringStrategy `json:"strategy,omitempty"`

	// ResourceWeights weighs each resource in the score; resources not listed
	// are not scored (they are still filtered). Default: cpu 1, memory 1.
	ResourceWeights map[corev1.ResourceName]int64 `json:"resourceWeights,omitempty"`
}

// Percentile selects which measured percentile the Latency plugin uses.
type Percentile string

const (
	// P50 uses the median RTT. The default.
	P50 Percentile = "p50"
	// P90 uses the 90th percentile RTT.
	P90 Percentile = "p90"
)

// LatencyArgs configures the Latency plugin.
type LatencyArgs struct {
	// MaxAge is how old a measurement (its observedAt) may be before it counts
	// as missing. Default 5m.
	MaxAge *metav1.Duration `json:"maxAge,omitempty"`

	// Percentile is p50 (default) or p90.
	Percentile *Percentile `json:"percentile,omitempty"`

	// TemplateResources are the resource templates (resource.version.group,
	// e.g. "deployments.v1.apps"; core resources as "services.v1.") whose
	// informers start with the scheduler. A binding for any other kind starts
	// its informer on first sight. Default: deployments.v1.apps,
	// statefulsets.v1.apps.
	TemplateResources []string `json:"templateResources,omitempty"`

	// InformerSyncTimeout bounds the wait for an informer started on first
	// sight of a kind. Default 10s.
	InformerSyncTimeout *metav1.Duration `json:"informerSyncTimeout,omitempty"`
}
