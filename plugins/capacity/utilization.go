package capacity

import (
	clusterv1alpha1 "github.com/karmada-io/karmada/pkg/apis/cluster/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// Resources of a Usage, in order: CPU (millicores), memory (bytes), pods.
const (
	UsageCPU = iota
	UsageMemory
	UsagePods
	// UsageResources is the number of resources a Usage holds.
	UsageResources
)

// UsageNames names the resources of a Usage by index.
var UsageNames = [UsageResources]corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory, corev1.ResourcePods}

// Usage is how full a member cluster is, from its resource summary, in the
// figures Filter and Score work with: in use is allocated + allocating,
// free is allocatable − in use (never below 0).
type Usage struct {
	// Known is false when the cluster reports no resource summary (Filter
	// then lets everything pass and Score gives 0).
	Known       bool
	Allocatable [UsageResources]int64
	InUse       [UsageResources]int64
}

// UsageOf returns the cluster's usage of CPU, memory and pods.
func UsageOf(c *clusterv1alpha1.Cluster) Usage {
	var u Usage
	rs := c.Status.ResourceSummary
	if rs == nil || len(rs.Allocatable) == 0 {
		return u
	}
	u.Known = true
	for i, name := range UsageNames {
		q := rs.Allocatable[name]
		u.Allocatable[i] = amount(name, q)
		used, pending := rs.Allocated[name], rs.Allocating[name]
		u.InUse[i] = inUse(amount(name, used), amount(name, pending))
	}
	return u
}

// Utilization is the share of resource i in use, 0 when the cluster does not
// report it (Filter and Score skip such a resource too). It can exceed 1.
func (u *Usage) Utilization(i int) float64 {
	if u.Allocatable[i] <= 0 {
		return 0
	}
	return float64(u.InUse[i]) / float64(u.Allocatable[i])
}

// inUse and free are the one computation of a cluster's figures, for Usage
// and for the plugin's precomputed cluster summaries.
func inUse(allocated, allocating int64) int64 { return allocated + allocating }

func free(allocatable, used int64) int64 {
	if f := allocatable - used; f > 0 {
		return f
	}
	return 0
}

// AmountOf is q in the unit a Usage holds resource name in: millicores for
// CPU, whole units (rounded up) for everything else.
func AmountOf(name corev1.ResourceName, q resource.Quantity) int64 { return amount(name, q) }
