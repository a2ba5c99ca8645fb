package latency

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/klog/v2"

	policyv1alpha1 "github.com/karmada-io/karmada/pkg/apis/policy/v1alpha1"
	workv1alpha2 "github.com/karmada-io/karmada/pkg/apis/work/v1alpha2"
)

// TemplateGetter returns the resource template a binding's spec.resource
// refers to, from an informer cache (never from the API server).
type TemplateGetter interface {
	GetTemplate(ref *workv1alpha2.ObjectReference) (*unstructured.Unstructured, error)
}

// PolicyGetter returns (Cluster)PropagationPolicies from listers.
type PolicyGetter interface {
	GetPropagationPolicy(namespace, name string) (metav1.Object, error)
	GetClusterPropagationPolicy(name string) (metav1.Object, error)
}

// resolver finds a binding's template and policy the way Karmada relates
// them (spec.resource names the template; Karmada's resource detector
// stamps the claiming policy on the template as the
// propagationpolicy.karmada.io/{namespace,name} or
// clusterpropagationpolicy.karmada.io/name annotations) and parses their
// latency annotations, caching the result by the objects' UID and
// resourceVersion.
type resolver struct {
	templates  TemplateGetter
	policies   PolicyGetter
	recorder   EventRecorder
	generation *atomic.Uint64

	mu      sync.Mutex
	parsed  map[string]*Requirement
	emitted map[string]struct{}
}

const maxCacheEntries = 10000

func (r *resolver) gen() uint64 {
	if r.generation == nil {
		return 0
	}
	return r.generation.Load()
}

// requirement returns spec's latency requirement (nil when it has none).
// Latency asks once per scheduling cycle (see cycle).
func (r *resolver) requirement(ctx context.Context, spec *workv1alpha2.ResourceBindingSpec) *Requirement {
	logger := klog.FromContext(ctx).WithValues("plugin", Name, "kind", spec.Resource.Kind,
		"template", klog.KRef(spec.Resource.Namespace, spec.Resource.Name))
	if r.templates == nil {
		return nil
	}
	tmpl, err := r.templates.GetTemplate(&spec.Resource)
	if err != nil {
		if !apierrors.IsNotFound(err) {
			logger.V(2).Info("No latency requirement: template not readable", "err", err)
		}
		return nil
	}
	policy, policyKind := r.policyOf(tmpl)

	key := string(tmpl.GetUID()) + "/" + tmpl.GetResourceVersion()
	if policy != nil {
		key += "/" + string(policy.GetUID()) + "/" + policy.GetResourceVersion()
	}
	r.mu.Lock()
	req, ok := r.parsed[key]
	r.mu.Unlock()
	if ok {
		return req
	}

	near, maxRTT, from := annotationValues(tmpl, policy, policyKind)
	req, err = ParseRequirement(near, maxRTT)
	if err != nil {
		req = nil
		logger.V(2).Info("Ignoring invalid latency annotations", "from", from, "err", err)
		r.emitOnce(key, tmpl, fmt.Sprintf("Latency annotations (from %s) ignored, the workload is scheduled as if they were absent: %v", from, err))
	}
	r.mu.Lock()
	if len(r.parsed) >= maxCacheEntries {
		r.parsed = map[string]*Requirement{}
	}
	r.parsed[key] = req
	r.mu.Unlock()
	return req
}

// policyOf returns the policy that claims tmpl, if any can be read.
func (r *resolver) policyOf(tmpl *unstructured.Unstructured) (metav1.Object, string) {
	if r.policies == nil {
		return nil, ""
	}
	a := tmpl.GetAnnotations()
	if name := a[policyv1alpha1.PropagationPolicyNameAnnotation]; name != "" {
		ns := a[policyv1alpha1.PropagationPolicyNamespaceAnnotation]
		if ns == "" {
			ns = tmpl.GetNamespace()
		}
		if p, err := r.policies.GetPropagationPolicy(ns, name); err == nil {
			return p, "PropagationPolicy " + ns + "/" + name
		}
	}
	if name := a[policyv1alpha1.ClusterPropagationPolicyAnnotation]; name != "" {
		if p, err := r.policies.GetClusterPropagationPolicy(name); err == nil {
			return p, "ClusterPropagationPolicy " + name
		}
	}
	return nil, ""
}

// annotationValues takes each latency annotation from the template when it
// is set there, else from the policy.
func annotationValues(tmpl metav1.Object, policy metav1.Object, policyKind string) (near, maxRTT, from string) {
	ta := tmpl.GetAnnotations()
	var pa map[string]string
	if policy != nil {
		pa = policy.GetAnnotations()
	}
	var sources []string
	pick := func(key string) string {
		if v, ok := ta[key]; ok {
			sources = append(sources, "template")
			return v
		}
		if v, ok := pa[key]; ok {
			sources = append(sources, policyKind)
			return v
		}
		return ""
	}
	near, maxRTT = pick(AnnotationNear), pick(AnnotationMaxRTT)
	from = "template"
	if len(sources) > 0 {
		from = sources[0]
		if len(sources) == 2 && sources[1] != sources[0] {
			from += " and " + sources[1]
		}
	}
	return near, maxRTT, from
}

func (r *resolver) emitOnce(key string, tmpl *unstructured.Unstructured, msg string) {
	if r.recorder == nil {
		return
	}
	r.mu.Lock()
	if _, done := r.emitted[key]; done {
		r.mu.Unlock()
		return
	}
	if len(r.emitted) >= maxCacheEntries {
		r.emitted = map[string]struct{}{}
	}
	r.emitted[key] = struct{}{}
	r.mu.Unlock()
	r.recorder.Event(tmpl, corev1.EventTypeWarning, ReasonInvalidAnnotation, msg)
}
