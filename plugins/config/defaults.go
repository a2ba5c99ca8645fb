package config

import (
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Default values.
const (
	DefaultLatencyMaxAge       = 5 * time.Minute
	DefaultInformerSyncTimeout = 10 * time.Second
)

// DefaultTemplateResources are the resource templates watched from the start.
var DefaultTemplateResources = []string{"deployments.v1.apps", "statefulsets.v1.apps"}

// SetDefaults fills every nil field of c (and of its plugin args).
func SetDefaults(c *SchedulerPluginsConfiguration) {
	if c.APIVersion == "" {
		c.APIVersion = APIVersion
	}
	if c.Kind == "" {
		c.Kind = Kind
	}
	if c.Capacity == nil {
		c.Capacity = &CapacityArgs{}
	}
	SetDefaultsCapacityArgs(c.Capacity)
	if c.Latency == nil {
		c.Latency = &LatencyArgs{}
	}
	SetDefaultsLatencyArgs(c.Latency)
}

// SetDefaultsCapacityArgs fills the nil fields of a.
func SetDefaultsCapacityArgs(a *CapacityArgs) {
	if a.Strategy == nil {
		s := LeastAllocated
		a.Strategy = &s
	}
	if a.ResourceWeights == nil {
		a.ResourceWeights = map[corev1.ResourceName]int64{corev1.ResourceCPU: 1, corev1.ResourceMemory: 1}
	}
}

// SetDefaultsLatencyArgs fills the nil fields of a.
func SetDefaultsLatencyArgs(a *LatencyArgs) {
	if a.MaxAge == nil {
		a.MaxAge = &metav1.Duration{Duration: DefaultLatencyMaxAge}
	}
	if a.Percentile == nil {
		p := P50
		a.Percentile = &p
	}
	if a.TemplateResources == nil {
		a.TemplateResources = append([]string(nil), DefaultTemplateResources...)
	}
	if a.InformerSyncTimeout == nil {
		a.InformerSyncTimeout = &metav1.Duration{Duration: DefaultInformerSyncTimeout}
	}
}
