package capacity

import (
	"strconv"

	"k8s.io/klog/v2"

	clusterv1alpha1 "github.com/karmada-io/karmada/pkg/apis/cluster/v1alpha1"
	policyv1alpha1 "github.com/karmada-io/karmada/pkg/apis/policy/v1alpha1"
	workv1alpha2 "github.com/karmada-io/karmada/pkg/apis/work/v1alpha2"
)

// clusterInfo is a cluster's resource summary, precomputed.
type clusterInfo struct {
	resourceVersion string
	generation      int64

	hasSummary  bool
	allocatable vector
	free        vector // allocatable − in use (allocated + allocating), never below 0; see Usage
	// freeText[i] is free[i] as a quantity and " free", for reasons.
	freeText []string

	// grades holds, for each resource model grade with at least one node,
	// the grade's exclusive upper bounds (range max) by resource. Empty when
	// the cluster has no modelings.
	grades []gradeBounds
}

func (p *Capacity) computeCluster(c *clusterv1alpha1.Cluster) *clusterInfo {
	info := &clusterInfo{resourceVersion: c.ResourceVersion, generation: c.Generation}
	rs := c.Status.ResourceSummary
	if rs == nil || len(rs.Allocatable) == 0 {
		return info
	}
	info.hasSummary = true
	info.allocatable = p.slots.vector(rs.Allocatable)
	used := p.slots.vector(rs.Allocated)
	pending := p.slots.vector(rs.Allocating)
	info.free = make(vector, len(info.allocatable))
	for i, a := range info.allocatable {
		info.free[i] = free(a, inUse(used.get(i), pending.get(i)))
	}
	info.freeText = make([]string, len(info.free))
	for i, f := range info.free {
		info.freeText[i] = format(p.slots.name(i), f) + " free"
	}
	for _, m := range rs.AllocatableModelings {
		if m.Count <= 0 {
			continue
		}
		for _, model := range c.Spec.ResourceModels {
			if model.Grade != m.Grade {
				continue
			}
			var g gradeBounds
			for _, r := range model.Ranges {
				g = append(g, bound{slot: p.slots.slot(r.Name), max: amount(r.Name, r.Max)})
			}
			if len(g) > 0 {
				info.grades = append(info.grades, g)
			}
		}
	}
	return info
}

// bound is one resource range's exclusive upper bound in a grade.
type bound struct {
	slot int
	max  int64
}

// gradeBounds are the upper bounds of one resource model grade.
type gradeBounds []bound

// clusterInfo returns the precomputed summary of c, computing it when the
// informer has not delivered this resourceVersion yet.
func (p *Capacity) clusterInfo(c *clusterv1alpha1.Cluster) *clusterInfo {
	p.mu.RLock()
	info := p.clusters[c.Name]
	p.mu.RUnlock()
	if info != nil && info.resourceVersion == c.ResourceVersion && info.generation == c.Generation {
		return info
	}
	info = p.computeCluster(c)
	p.mu.Lock()
	p.clusters[c.Name] = info
	p.mu.Unlock()
	return info
}

// OnClusterUpdate precomputes c's summary; wire it to the cluster informer's
// add and update events.
func (p *Capacity) OnClusterUpdate(c *clusterv1alpha1.Cluster) {
	info := p.computeCluster(c)
	p.mu.Lock()
	p.clusters[c.Name] = info
	p.mu.Unlock()
}

// OnClusterDelete forgets the cluster named name.
func (p *Capacity) OnClusterDelete(name string) {
	p.mu.Lock()
	delete(p.clusters, name)
	p.mu.Unlock()
}

// bindingReq is a binding's replica requirements, precomputed.
type bindingReq struct {
	// key
	spec     *workv1alpha2.ResourceBindingSpec
	reqs     *workv1alpha2.ReplicaRequirements
	replicas int32
	uid      string
	rv       string

	perReplica vector
	requested  []int // slots with a positive per-replica request
	// onCluster is how many replicas Filter assumes land on one cluster.
	onCluster int64
	total     vector // perReplica × onCluster, plus onCluster pods

	// insufficient[i] + the cluster's free text is the reason when total[i]
	// does not fit; noNode is the reason when no node holds one replica.
	insufficient []string
	noNode       string
}

func (b *bindingReq) matches(spec *workv1alpha2.ResourceBindingSpec) bool {
	return b.spec == spec && b.reqs == spec.ReplicaRequirements && b.replicas == spec.Replicas &&
		b.uid == string(spec.Resource.UID) && b.rv == spec.Resource.ResourceVersion
}

// binding returns the precomputed requirements of spec. The last one is
// kept, so every Filter/Score call of one scheduling cycle after the first
// is a pointer comparison.
func (p *Capacity) binding(spec *workv1alpha2.ResourceBindingSpec) *bindingReq {
	if b := p.lastBinding.Load(); b != nil && b.matches(spec) {
		return b
	}
	b := &bindingReq{
		spec: spec, reqs: spec.ReplicaRequirements, replicas: spec.Replicas,
		uid: string(spec.Resource.UID), rv: spec.Resource.ResourceVersion,
	}
	if spec.ReplicaRequirements != nil {
		b.perReplica = p.slots.vector(spec.ReplicaRequirements.ResourceRequest)
	}
	for i, v := range b.perReplica {
		if v > 0 {
			b.requested = append(b.requested, i)
		}
	}
	b.onCluster = replicasOnOneCluster(spec)
	b.total = make(vector, max(len(b.perReplica), slotPods+1))
	for i, v := range b.perReplica {
		b.total[i] = v * b.onCluster
	}
	if spec.Replicas > 0 {
		b.total[slotPods] += b.onCluster
	}
	b.insufficient = make([]string, len(b.total))
	for i, need := range b.total {
		if need > 0 {
			name := p.slots.name(i)
			b.insufficient[i] = "cluster(s) had insufficient " + string(name) + ": " +
				strconv.FormatInt(b.onCluster, 10) + " replica(s) need " + format(name, need) + ", "
		}
	}
	if len(b.requested) > 0 {
		b.noNode = "cluster(s) had no node large enough for one replica (per resource models): " + p.describe(b.perReplica)
	}
	p.lastBinding.Store(b)
	klog.V(5).InfoS("Precomputed binding requirements", "binding", spec.Resource.Name, "replicasPerCluster", b.onCluster)
	return b
}

// replicasOnOneCluster is how many of the binding's replicas Filter assumes
// would land on one candidate cluster: all of them when replicas are
// duplicated or when the placement puts everything in one cluster (spread by
// cluster with maxGroups 1, or a single cluster named by affinity); otherwise
// (divided over several clusters) at least one must fit, and the division is
// left to Karmada's replica estimators.
func replicasOnOneCluster(spec *workv1alpha2.ResourceBindingSpec) int64 {
	n := int64(spec.Replicas)
	if n <= 0 {
		return 0
	}
	pl := spec.Placement
	if pl == nil || pl.ReplicaScheduling == nil ||
		pl.ReplicaScheduling.ReplicaSchedulingType == policyv1alpha1.ReplicaSchedulingTypeDuplicated {
		return n
	}
	for _, sc := range pl.SpreadConstraints {
		if sc.SpreadByField == policyv1alpha1.SpreadByFieldCluster && sc.MaxGroups == 1 {
			return n
		}
	}
	if pl.ClusterAffinity != nil && len(pl.ClusterAffinity.ClusterNames) == 1 {
		return n
	}
	return 1
}
