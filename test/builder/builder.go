// Package builder holds the fluent builders of every livemigrate test and
// benchmark: Karmada's objects (Clusters, ResourceBindings,
// PropagationPolicies, templates), ours (LiveMigrations, ClusterLatencies,
// the agent's PodCheckpoints, PodRestores and VolumeReplications) and a
// scheme with all of their types. A test builds its inputs and the results
// it expects with the same wrappers (MakeX(...).Field(...).Obj()), so that
// it states only what matters to it instead of long struct literals.
//
// It is for tests and benchmarks only; production code must never import it.
package builder

import (
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"

	clusterv1alpha1 "github.com/karmada-io/karmada/pkg/apis/cluster/v1alpha1"
	policyv1alpha1 "github.com/karmada-io/karmada/pkg/apis/policy/v1alpha1"
	workv1alpha2 "github.com/karmada-io/karmada/pkg/apis/work/v1alpha2"

	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
)

// ResourceList builds a corev1.ResourceList from name/quantity pairs, e.g.
// ResourceList("cpu", "4", "memory", "8Gi"). It panics on an odd count or an
// unparsable quantity: it is meant for test literals.
func ResourceList(pairs ...string) corev1.ResourceList {
	if len(pairs)%2 != 0 {
		panic("builder.ResourceList needs name/quantity pairs")
	}
	rl := corev1.ResourceList{}
	for i := 0; i < len(pairs); i += 2 {
		rl[corev1.ResourceName(pairs[i])] = resource.MustParse(pairs[i+1])
	}
	return rl
}

// ClusterWrapper builds a clusterv1alpha1.Cluster.
type ClusterWrapper struct{ clusterv1alpha1.Cluster }

// MakeCluster starts a Cluster named name, with resourceVersion "1".
func MakeCluster(name string) *ClusterWrapper {
	return &ClusterWrapper{clusterv1alpha1.Cluster{
		ObjectMeta: metav1.ObjectMeta{Name: name, ResourceVersion: "1", UID: types.UID("uid-" + name)},
	}}
}

func (w *ClusterWrapper) summary() *clusterv1alpha1.ResourceSummary {
	if w.Status.ResourceSummary == nil {
		w.Status.ResourceSummary = &clusterv1alpha1.ResourceSummary{}
	}
	return w.Status.ResourceSummary
}

// Allocatable sets status.resourceSummary.allocatable from name/quantity pairs.
func (w *ClusterWrapper) Allocatable(pairs ...string) *ClusterWrapper {
	w.summary().Allocatable = ResourceList(pairs...)
	return w
}

// Allocated sets status.resourceSummary.allocated from name/quantity pairs.
func (w *ClusterWrapper) Allocated(pairs ...string) *ClusterWrapper {
	w.summary().Allocated = ResourceList(pairs...)
	return w
}

// Allocating sets status.resourceSummary.allocating from name/quantity pairs.
func (w *ClusterWrapper) Allocating(pairs ...string) *ClusterWrapper {
	w.summary().Allocating = ResourceList(pairs...)
	return w
}

// ResourceModel appends a resource model grade with [min,max) ranges given as
// name, min, max triples, e.g. ResourceModel(0, "cpu", "0", "2", "memory", "0", "4Gi").
func (w *ClusterWrapper) ResourceModel(grade uint, triples ...string) *ClusterWrapper {
	if len(triples)%3 != 0 {
		panic("builder.ResourceModel needs name/min/max triples")
	}
	m := clusterv1alpha1.ResourceModel{Grade: grade}
	for i := 0; i < len(triples); i += 3 {
		m.Ranges = append(m.Ranges, clusterv1alpha1.ResourceModelRange{
			Name: corev1.ResourceName(triples[i]),
			Min:  resource.MustParse(triples[i+1]),
			Max:  resource.MustParse(triples[i+2]),
		})
	}
	w.Spec.ResourceModels = append(w.Spec.ResourceModels, m)
	return w
}

// Modeling appends status.resourceSummary.allocatableModelings{grade, count}.
func (w *ClusterWrapper) Modeling(grade uint, count int) *ClusterWrapper {
	s := w.summary()
	s.AllocatableModelings = append(s.AllocatableModelings, clusterv1alpha1.AllocatableModeling{Grade: grade, Count: count})
	return w
}

// Label sets a label.
func (w *ClusterWrapper) Label(k, v string) *ClusterWrapper {
	if w.Labels == nil {
		w.Labels = map[string]string{}
	}
	w.Labels[k] = v
	return w
}

// Region sets spec.region.
func (w *ClusterWrapper) Region(r string) *ClusterWrapper { w.Spec.Region = r; return w }

// Taint appends a taint.
func (w *ClusterWrapper) Taint(key, value string, effect corev1.TaintEffect) *ClusterWrapper {
	w.Spec.Taints = append(w.Spec.Taints, corev1.Taint{Key: key, Value: value, Effect: effect})
	return w
}

// ResourceVersion sets metadata.resourceVersion.
func (w *ClusterWrapper) ResourceVersion(rv string) *ClusterWrapper {
	w.ObjectMeta.ResourceVersion = rv
	return w
}

// APIs sets status.apiEnablements to the given group versions and kinds
// ("apps/v1", "Deployment", ...): pairs of groupVersion and kind.
func (w *ClusterWrapper) APIs(pairs ...string) *ClusterWrapper {
	for i := 0; i+1 < len(pairs); i += 2 {
		w.Status.APIEnablements = append(w.Status.APIEnablements, clusterv1alpha1.APIEnablement{
			GroupVersion: pairs[i],
			Resources:    []clusterv1alpha1.APIResource{{Name: fmt.Sprintf("%ss", pairs[i+1]), Kind: pairs[i+1]}},
		})
	}
	return w
}

// Obj returns the built Cluster.
func (w *ClusterWrapper) Obj() *clusterv1alpha1.Cluster { return &w.Cluster }

// BindingWrapper builds a workv1alpha2.ResourceBinding.
type BindingWrapper struct{ workv1alpha2.ResourceBinding }

// MakeBinding starts a ResourceBinding for the apps/v1 Deployment namespace/name,
// named as Karmada names it (names.GenerateBindingName), with one replica.
func MakeBinding(namespace, name string) *BindingWrapper {
	return &BindingWrapper{workv1alpha2.ResourceBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name + "-deployment", UID: types.UID("rb-uid-" + name)},
		Spec: workv1alpha2.ResourceBindingSpec{
			Resource: workv1alpha2.ObjectReference{
				APIVersion: "apps/v1", Kind: "Deployment", Namespace: namespace, Name: name,
				UID: types.UID("uid-" + namespace + "-" + name), ResourceVersion: "1",
			},
			Replicas: 1,
		},
	}}
}

// Resource sets spec.resource's apiVersion and kind.
func (w *BindingWrapper) Resource(apiVersion, kind string) *BindingWrapper {
	w.Spec.Resource.APIVersion, w.Spec.Resource.Kind = apiVersion, kind
	return w
}

// TemplateUID sets spec.resource.uid and resourceVersion.
func (w *BindingWrapper) TemplateUID(uid, rv string) *BindingWrapper {
	w.Spec.Resource.UID, w.Spec.Resource.ResourceVersion = types.UID(uid), rv
	return w
}

// Replicas sets spec.replicas.
func (w *BindingWrapper) Replicas(n int32) *BindingWrapper { w.Spec.Replicas = n; return w }

// Request sets spec.replicaRequirements.resourceRequest (per replica).
func (w *BindingWrapper) Request(pairs ...string) *BindingWrapper {
	if w.Spec.ReplicaRequirements == nil {
		w.Spec.ReplicaRequirements = &workv1alpha2.ReplicaRequirements{}
	}
	w.Spec.ReplicaRequirements.ResourceRequest = ResourceList(pairs...)
	return w
}

// ScheduledOn sets spec.clusters to the given clusters, with replicas each.
func (w *BindingWrapper) ScheduledOn(replicas int32, clusters ...string) *BindingWrapper {
	w.Spec.Clusters = nil
	for _, c := range clusters {
		w.Spec.Clusters = append(w.Spec.Clusters, workv1alpha2.TargetCluster{Name: c, Replicas: replicas})
	}
	return w
}

func (w *BindingWrapper) placement() *policyv1alpha1.Placement {
	if w.Spec.Placement == nil {
		w.Spec.Placement = &policyv1alpha1.Placement{}
	}
	return w.Spec.Placement
}

// SingleCluster sets the placement a stateful app typically uses: spread by
// cluster with maxGroups = minGroups = 1.
func (w *BindingWrapper) SingleCluster() *BindingWrapper {
	p := w.placement()
	p.SpreadConstraints = []policyv1alpha1.SpreadConstraint{{SpreadByField: policyv1alpha1.SpreadByFieldCluster, MaxGroups: 1, MinGroups: 1}}
	p.ReplicaScheduling = &policyv1alpha1.ReplicaSchedulingStrategy{
		ReplicaSchedulingType:     policyv1alpha1.ReplicaSchedulingTypeDivided,
		ReplicaDivisionPreference: policyv1alpha1.ReplicaDivisionPreferenceAggregated,
	}
	return w
}

// Divided sets a Divided/Weighted replica scheduling with no spread limit.
func (w *BindingWrapper) Divided() *BindingWrapper {
	w.placement().ReplicaScheduling = &policyv1alpha1.ReplicaSchedulingStrategy{
		ReplicaSchedulingType:     policyv1alpha1.ReplicaSchedulingTypeDivided,
		ReplicaDivisionPreference: policyv1alpha1.ReplicaDivisionPreferenceAggregated,
	}
	return w
}

// Duplicated sets a Duplicated replica scheduling.
func (w *BindingWrapper) Duplicated() *BindingWrapper {
	w.placement().ReplicaScheduling = &policyv1alpha1.ReplicaSchedulingStrategy{ReplicaSchedulingType: policyv1alpha1.ReplicaSchedulingTypeDuplicated}
	return w
}

// ClusterNames sets placement.clusterAffinity.clusterNames.
func (w *BindingWrapper) ClusterNames(names ...string) *BindingWrapper {
	w.placement().ClusterAffinity = &policyv1alpha1.ClusterAffinity{ClusterNames: names}
	return w
}

// ClusterLabelIn adds to placement.clusterAffinity.labelSelector the
// requirement that the cluster's label key be one of values.
func (w *BindingWrapper) ClusterLabelIn(key string, values ...string) *BindingWrapper {
	p := w.placement()
	if p.ClusterAffinity == nil {
		p.ClusterAffinity = &policyv1alpha1.ClusterAffinity{}
	}
	if p.ClusterAffinity.LabelSelector == nil {
		p.ClusterAffinity.LabelSelector = &metav1.LabelSelector{}
	}
	ls := p.ClusterAffinity.LabelSelector
	ls.MatchExpressions = append(ls.MatchExpressions, metav1.LabelSelectorRequirement{
		Key: key, Operator: metav1.LabelSelectorOpIn, Values: values,
	})
	return w
}

// Toleration appends a cluster toleration.
func (w *BindingWrapper) Toleration(key string, effect corev1.TaintEffect) *BindingWrapper {
	p := w.placement()
	p.ClusterTolerations = append(p.ClusterTolerations, corev1.Toleration{Key: key, Operator: corev1.TolerationOpExists, Effect: effect})
	return w
}

// Obj returns the built ResourceBinding.
func (w *BindingWrapper) Obj() *workv1alpha2.ResourceBinding { return &w.ResourceBinding }

// SpecObj returns a pointer to the built ResourceBinding's spec.
func (w *BindingWrapper) SpecObj() *workv1alpha2.ResourceBindingSpec { return &w.Spec }

// TemplateWrapper builds an unstructured resource template (a Deployment by default).
type TemplateWrapper struct{ unstructured.Unstructured }

// MakeTemplate starts an apps/v1 Deployment template with the UID and
// resourceVersion MakeBinding uses for the same namespace/name.
func MakeTemplate(namespace, name string) *TemplateWrapper {
	u := unstructured.Unstructured{}
	u.SetAPIVersion("apps/v1")
	u.SetKind("Deployment")
	u.SetNamespace(namespace)
	u.SetName(name)
	u.SetUID(types.UID("uid-" + namespace + "-" + name))
	u.SetResourceVersion("1")
	return &TemplateWrapper{u}
}

// Annotation sets an annotation.
func (w *TemplateWrapper) Annotation(k, v string) *TemplateWrapper {
	a := w.GetAnnotations()
	if a == nil {
		a = map[string]string{}
	}
	a[k] = v
	w.SetAnnotations(a)
	return w
}

// ResourceVersion sets metadata.resourceVersion.
func (w *TemplateWrapper) ResourceVersion(rv string) *TemplateWrapper {
	w.SetResourceVersion(rv)
	return w
}

// Policy marks the template as claimed by PropagationPolicy namespace/name, as
// Karmada's resource detector does.
func (w *TemplateWrapper) Policy(namespace, name string) *TemplateWrapper {
	w.Annotation(policyv1alpha1.PropagationPolicyNamespaceAnnotation, namespace)
	return w.Annotation(policyv1alpha1.PropagationPolicyNameAnnotation, name)
}

// ClusterPolicy marks the template as claimed by ClusterPropagationPolicy name.
func (w *TemplateWrapper) ClusterPolicy(name string) *TemplateWrapper {
	return w.Annotation(policyv1alpha1.ClusterPropagationPolicyAnnotation, name)
}

// Obj returns the built template.
func (w *TemplateWrapper) Obj() *unstructured.Unstructured { return &w.Unstructured }

// MakePolicy returns a PropagationPolicy with the given annotations (k, v pairs).
func MakePolicy(namespace, name string, annotations ...string) *policyv1alpha1.PropagationPolicy {
	p := &policyv1alpha1.PropagationPolicy{ObjectMeta: metav1.ObjectMeta{
		Namespace: namespace, Name: name, UID: types.UID("pp-uid-" + name), ResourceVersion: "1",
		Annotations: pairsToMap(annotations),
	}}
	return p
}

// MakeClusterPolicy returns a ClusterPropagationPolicy with the given annotations (k, v pairs).
func MakeClusterPolicy(name string, annotations ...string) *policyv1alpha1.ClusterPropagationPolicy {
	return &policyv1alpha1.ClusterPropagationPolicy{ObjectMeta: metav1.ObjectMeta{
		Name: name, UID: types.UID("cpp-uid-" + name), ResourceVersion: "1",
		Annotations: pairsToMap(annotations),
	}}
}

func pairsToMap(kv []string) map[string]string {
	if len(kv) == 0 {
		return nil
	}
	m := make(map[string]string, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

// LatencyWrapper builds a ClusterLatency.
type LatencyWrapper struct{ lmv1alpha1.ClusterLatency }

// MakeLatency starts the ClusterLatency of cluster name.
func MakeLatency(name string) *LatencyWrapper {
	return &LatencyWrapper{lmv1alpha1.ClusterLatency{
		ObjectMeta: metav1.ObjectMeta{Name: name, ResourceVersion: "1", UID: types.UID("cl-uid-" + name)},
	}}
}

// Peer adds an RTT measurement to peer cluster name (p50 = p90 = rtt).
func (w *LatencyWrapper) Peer(name string, rtt time.Duration, observedAt time.Time) *LatencyWrapper {
	w.Status.Peers = append(w.Status.Peers, measurement(name, rtt, observedAt))
	return w
}

// Origin adds an RTT measurement to origin name (p50 = p90 = rtt).
func (w *LatencyWrapper) Origin(name string, rtt time.Duration, observedAt time.Time) *LatencyWrapper {
	w.Status.Origins = append(w.Status.Origins, measurement(name, rtt, observedAt))
	return w
}

func measurement(name string, rtt time.Duration, at time.Time) lmv1alpha1.RTTMeasurement {
	return lmv1alpha1.RTTMeasurement{
		Name: name, P50: &metav1.Duration{Duration: rtt}, P90: &metav1.Duration{Duration: rtt},
		Samples: 5, ObservedAt: metav1.NewTime(at),
	}
}

// Obj returns the built ClusterLatency.
func (w *LatencyWrapper) Obj() *lmv1alpha1.ClusterLatency { return &w.ClusterLatency }
