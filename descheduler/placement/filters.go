package placement

import (
	"context"

	clusterv1alpha1 "github.com/karmada-io/karmada/pkg/apis/cluster/v1alpha1"
	workv1alpha2 "github.com/karmada-io/karmada/pkg/apis/work/v1alpha2"
	"github.com/karmada-io/karmada/pkg/scheduler/framework"
	"github.com/karmada-io/karmada/pkg/scheduler/framework/plugins/clusteraffinity"
	"github.com/karmada-io/karmada/pkg/scheduler/framework/plugins/tainttoleration"
)

// SchedulerFilters returns Karmada's TaintToleration and ClusterAffinity
// filters, run on a target as karmada-scheduler runs them on a cluster: a
// workload is never moved to a cluster whose NoSchedule/NoExecute taints
// its placement does not tolerate, or that its cluster affinity excludes.
// A binding without a placement passes both.
func SchedulerFilters() []framework.Plugin {
	return []framework.Plugin{
		withPlacement{&tainttoleration.TaintToleration{}},
		withPlacement{&clusteraffinity.ClusterAffinity{}},
	}
}

// withPlacement runs a filter only on bindings that have a placement (the
// Karmada filters dereference it).
type withPlacement struct{ framework.FilterPlugin }

func (w withPlacement) Filter(ctx context.Context, spec *workv1alpha2.ResourceBindingSpec, status *workv1alpha2.ResourceBindingStatus,
	c *clusterv1alpha1.Cluster) *framework.Result {
	if spec.Placement == nil {
		return framework.NewResult(framework.Success)
	}
	return w.FilterPlugin.Filter(ctx, spec, status, c)
}
