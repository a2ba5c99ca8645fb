package capacity

import (
	"context"

	clusterv1alpha1 "github.com/karmada-io/karmada/pkg/apis/cluster/v1alpha1"
	workv1alpha2 "github.com/karmada-io/karmada/pkg/apis/work/v1alpha2"
	"github.com/karmada-io/karmada/pkg/scheduler/framework"

	"github.com/livemigrate/livemigrate/plugins/internal/binding"
)

// Filter rejects a cluster whose free resources cannot hold the replicas
// that would land on it, or none of whose nodes (per its resource models) is
// large enough for one replica. A cluster the binding already runs on, and a
// cluster without a resource summary, always pass.
func (p *Capacity) Filter(_ context.Context, spec *workv1alpha2.ResourceBindingSpec,
	_ *workv1alpha2.ResourceBindingStatus, cluster *clusterv1alpha1.Cluster) *framework.Result {
	if binding.RunsOn(spec, cluster.Name) {
		return nil
	}
	b := p.binding(spec)
	if b.onCluster == 0 {
		return nil
	}
	info := p.clusterInfo(cluster)
	if !info.hasSummary {
		return nil
	}
	for i, need := range b.total {
		if need == 0 {
			continue
		}
		if i == slotPods && info.allocatable.get(i) == 0 {
			continue // the cluster does not report pods
		}
		if need > info.free.get(i) {
			return framework.NewResult(framework.Unschedulable, b.insufficient[i]+info.freeTextOf(i))
		}
	}
	if len(info.grades) > 0 && len(b.requested) > 0 && !mayFitOneNode(info.grades, b) {
		return framework.NewResult(framework.Unschedulable, b.noNode)
	}
	return nil
}

// freeTextOf returns the free-amount text of slot i, for reasons.
func (info *clusterInfo) freeTextOf(i int) string {
	if i < len(info.freeText) {
		return info.freeText[i]
	}
	return "0 free"
}

// mayFitOneNode reports whether some populated resource model grade may
// have a node that holds one replica. Karmada puts a node in the lowest grade
// any of its resources falls in, so a node of grade g has every resource at
// least min_g but only one (unknown) resource is sure to be below max_g: a
// grade is too small for certain only when the replica asks for at least
// max_g of every resource the grade ranges over.
func mayFitOneNode(grades []gradeBounds, b *bindingReq) bool {
	for _, g := range grades {
		for _, r := range g {
			if b.perReplica.get(r.slot) < r.max {
				return true
			}
		}
	}
	return false
}

func (p *Capacity) describe(v vector) string {
	s := ""
	for i, x := range v {
		if x == 0 {
			continue
		}
		if s != "" {
			s += ", "
		}
		name := p.slots.name(i)
		s += string(name) + "=" + format(name, x)
	}
	return s
}
