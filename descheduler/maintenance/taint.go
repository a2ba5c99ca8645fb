package maintenance

import (
	"context"
	"fmt"
	"slices"

	clusterv1alpha1 "github.com/karmada-io/karmada/pkg/apis/cluster/v1alpha1"
	workv1alpha2 "github.com/karmada-io/karmada/pkg/apis/work/v1alpha2"
	"github.com/karmada-io/karmada/pkg/scheduler/framework"
	corev1 "k8s.io/api/core/v1"
)

// DefaultTaintKey is the maintenance taint key kubectl livemigrate drain sets.
const DefaultTaintKey = "livemigrate.io/maintenance"

// MaintenanceTaint returns the cluster's first taint whose key is one of
// keys with effect NoSchedule or NoExecute, or nil.
func MaintenanceTaint(c *clusterv1alpha1.Cluster, keys []string) *corev1.Taint {
	for i := range c.Spec.Taints {
		t := &c.Spec.Taints[i]
		if (t.Effect == corev1.TaintEffectNoSchedule || t.Effect == corev1.TaintEffectNoExecute) && slices.Contains(keys, t.Key) {
			return t
		}
	}
	return nil
}

// TaintString is key[=value]:effect, as kubectl prints taints.
func TaintString(t *corev1.Taint) string {
	if t.Value == "" {
		return fmt.Sprintf("%s:%s", t.Key, t.Effect)
	}
	return fmt.Sprintf("%s=%s:%s", t.Key, t.Value, t.Effect)
}

// FilterName is the name of the target filter below.
const FilterName = "MaintenanceTaint"

// Filter is a target filter for the placement picker: a cluster tainted for
// maintenance is never a migration target, even for a workload that
// tolerates the taint.
type Filter struct {
	Keys []string
}

var _ framework.FilterPlugin = &Filter{}

// Name returns the filter's name.
func (f *Filter) Name() string { return FilterName }

// Filter refuses clusters being drained.
func (f *Filter) Filter(_ context.Context, _ *workv1alpha2.ResourceBindingSpec, _ *workv1alpha2.ResourceBindingStatus,
	c *clusterv1alpha1.Cluster) *framework.Result {
	if t := MaintenanceTaint(c, f.Keys); t != nil {
		return framework.NewResult(framework.Unschedulable, fmt.Sprintf("cluster is being drained for maintenance (taint %s)", TaintString(t)))
	}
	return framework.NewResult(framework.Success)
}
