package latency

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	workv1alpha2 "github.com/karmada-io/karmada/pkg/apis/work/v1alpha2"
	policylisters "github.com/karmada-io/karmada/pkg/generated/listers/policy/v1alpha1"
)

// TemplateInformers serves resource templates from dynamic shared informers,
// one per kind. Kinds listed at construction are watched from the start;
// another kind's informer starts the first time a binding for it is seen
// (bounded by syncTimeout). It never reads templates from the API server.
type TemplateInformers struct {
	ctx         context.Context
	factory     dynamicinformer.DynamicSharedInformerFactory
	mapper      meta.RESTMapper
	syncTimeout time.Duration
	onChange    func()

	mu      sync.RWMutex
	listers map[schema.GroupVersionKind]cache.GenericLister
}

// NewTemplateInformers returns template informers over factory; onChange is
// called on every template event (to invalidate cached requirements).
func NewTemplateInformers(ctx context.Context, factory dynamicinformer.DynamicSharedInformerFactory,
	mapper meta.RESTMapper, syncTimeout time.Duration, onChange func()) *TemplateInformers {
	return &TemplateInformers{ctx: ctx, factory: factory, mapper: mapper, syncTimeout: syncTimeout,
		onChange: onChange, listers: map[schema.GroupVersionKind]cache.GenericLister{}}
}

// Watch registers the informer of gvr (the caller starts the factory).
func (t *TemplateInformers) Watch(gvr schema.GroupVersionResource) (cache.SharedIndexInformer, error) {
	gvk, err := t.mapper.KindFor(gvr)
	if err != nil {
		return nil, fmt.Errorf("resolving kind of %s: %w", gvr, err)
	}
	return t.register(gvk, gvr), nil
}

func (t *TemplateInformers) register(gvk schema.GroupVersionKind, gvr schema.GroupVersionResource) cache.SharedIndexInformer {
	inf := t.factory.ForResource(gvr)
	if t.onChange != nil {
		_, _ = inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    func(interface{}) { t.onChange() },
			UpdateFunc: func(interface{}, interface{}) { t.onChange() },
			DeleteFunc: func(interface{}) { t.onChange() },
		})
	}
	t.mu.Lock()
	t.listers[gvk] = inf.Lister()
	t.mu.Unlock()
	return inf.Informer()
}

// GetTemplate implements TemplateGetter.
func (t *TemplateInformers) GetTemplate(ref *workv1alpha2.ObjectReference) (*unstructured.Unstructured, error) {
	gvk := schema.FromAPIVersionAndKind(ref.APIVersion, ref.Kind)
	t.mu.RLock()
	lister, ok := t.listers[gvk]
	t.mu.RUnlock()
	if !ok {
		var err error
		if lister, err = t.start(gvk); err != nil {
			return nil, err
		}
	}
	var obj interface{}
	var err error
	if ref.Namespace != "" {
		obj, err = lister.ByNamespace(ref.Namespace).Get(ref.Name)
	} else {
		obj, err = lister.Get(ref.Name)
	}
	if err != nil {
		return nil, err
	}
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return nil, fmt.Errorf("unexpected %T in template informer", obj)
	}
	return u, nil
}

// start begins watching a kind seen for the first time.
func (t *TemplateInformers) start(gvk schema.GroupVersionKind) (cache.GenericLister, error) {
	mapping, err := t.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return nil, fmt.Errorf("mapping %s: %w", gvk, err)
	}
	klog.InfoS("Starting template informer on first sight", "plugin", Name, "resource", mapping.Resource.String())
	inf := t.register(gvk, mapping.Resource)
	t.factory.Start(t.ctx.Done())
	ctx, cancel := context.WithTimeout(t.ctx, t.syncTimeout)
	defer cancel()
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		return nil, apierrors.NewNotFound(mapping.Resource.GroupResource(), "(informer not synced yet)")
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.listers[gvk], nil
}

// PolicyListers implements PolicyGetter with Karmada's typed listers.
type PolicyListers struct {
	PropagationPolicies        policylisters.PropagationPolicyLister
	ClusterPropagationPolicies policylisters.ClusterPropagationPolicyLister
}

// GetPropagationPolicy implements PolicyGetter.
func (p PolicyListers) GetPropagationPolicy(namespace, name string) (metav1.Object, error) {
	return p.PropagationPolicies.PropagationPolicies(namespace).Get(name)
}

// GetClusterPropagationPolicy implements PolicyGetter.
func (p PolicyListers) GetClusterPropagationPolicy(name string) (metav1.Object, error) {
	return p.ClusterPropagationPolicies.Get(name)
}

// PolicyEventHandler bumps generation on every policy event.
func PolicyEventHandler(generation *atomic.Uint64) cache.ResourceEventHandler {
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    func(interface{}) { generation.Add(1) },
		UpdateFunc: func(interface{}, interface{}) { generation.Add(1) },
		DeleteFunc: func(interface{}) { generation.Add(1) },
	}
}
