package capacity

import (
	"context"

	"k8s.io/klog/v2"

	clusterv1alpha1 "github.com/karmada-io/karmada/pkg/apis/cluster/v1alpha1"
	workv1alpha2 "github.com/karmada-io/karmada/pkg/apis/work/v1alpha2"
	"github.com/karmada-io/karmada/pkg/scheduler/framework"

	"github.com/livemigrate/livemigrate/plugins/config"
	"github.com/livemigrate/livemigrate/plugins/internal/binding"
)

// Score rates the headroom left on cluster after placing the binding's
// replicas there, 0–100, as a weighted mean over the weighted resources the
// cluster reports. LeastAllocated scores free share, MostAllocated used
// share. The replicas of a cluster the binding already runs on are already
// in its allocated resources and are not added again. A cluster without a
// resource summary scores 0.
func (p *Capacity) Score(ctx context.Context, spec *workv1alpha2.ResourceBindingSpec,
	cluster *clusterv1alpha1.Cluster) (int64, *framework.Result) {
	info := p.clusterInfo(cluster)
	if !info.hasSummary {
		if logger := klog.FromContext(ctx); logger.V(4).Enabled() {
			logger.V(4).Info("Cluster scores 0: no resource summary", "plugin", Name, "cluster", cluster.Name)
		}
		return framework.MinClusterScore, nil
	}
	b := p.binding(spec)
	onCluster := b.onCluster
	if binding.RunsOn(spec, cluster.Name) {
		onCluster = 0
	}
	var sum, weights int64
	for _, w := range p.weights {
		alloc := info.allocatable.get(w.slot)
		if alloc <= 0 {
			continue
		}
		left := info.free.get(w.slot) - b.perReplica.get(w.slot)*onCluster
		if left < 0 {
			left = 0
		}
		share := left * framework.MaxClusterScore / alloc
		if p.strategy == config.MostAllocated {
			share = framework.MaxClusterScore - share
		}
		sum += share * w.weight
		weights += w.weight
	}
	if weights == 0 {
		return framework.MinClusterScore, nil
	}
	return sum / weights, nil
}

// ScoreExtensions returns the plugin itself: it normalizes its scores.
func (p *Capacity) ScoreExtensions() framework.ScoreExtensions { return p }

// NormalizeScore scales the scores so that the best cluster gets 100,
// keeping their proportions (all zeros stay zeros).
func (p *Capacity) NormalizeScore(_ context.Context, scores framework.ClusterScoreList) *framework.Result {
	var highest int64
	for i := range scores {
		if scores[i].Score > highest {
			highest = scores[i].Score
		}
	}
	if highest == 0 {
		return nil
	}
	for i := range scores {
		scores[i].Score = scores[i].Score * framework.MaxClusterScore / highest
	}
	return nil
}
