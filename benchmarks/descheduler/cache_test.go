package descheduler

import (
	"context"
	"fmt"
	"reflect"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
)

// informerReader serves Get and List from client-go indexers as
// controller-runtime's informer cache does (its CacheReader): Get deep-copies
// the stored object; List copies each item into the list, and deep-copies
// it unless client.UnsafeDisableDeepCopy is given. Metadata-only reads
// (PartialObjectMetadata) are served from a store of their own, as the
// cache serves them from a metadata informer.
type informerReader struct {
	scheme *runtime.Scheme
	stores map[string]cache.Indexer // by GVK, "meta:"-prefixed for metadata
}

func newInformerReader(scheme *runtime.Scheme) *informerReader {
	return &informerReader{scheme: scheme, stores: map[string]cache.Indexer{}}
}

func (r *informerReader) store(key string) cache.Indexer {
	s := r.stores[key]
	if s == nil {
		s = cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
		r.stores[key] = s
	}
	return s
}

func (r *informerReader) key(obj runtime.Object) (string, error) {
	if pm, ok := obj.(*metav1.PartialObjectMetadata); ok {
		return "meta:" + pm.GroupVersionKind().String(), nil
	}
	gvk, err := apiutil.GVKForObject(obj, r.scheme)
	if err != nil {
		return "", err
	}
	return gvk.String(), nil
}

// add puts objects into their stores.
func (r *informerReader) add(objs ...client.Object) {
	for _, o := range objs {
		k, err := r.key(o)
		if err != nil {
			panic(err)
		}
		if err := r.store(k).Add(o); err != nil {
			panic(err)
		}
	}
}

func (r *informerReader) Get(_ context.Context, key client.ObjectKey, obj client.Object, _ ...client.GetOption) error {
	k, err := r.key(obj)
	if err != nil {
		return err
	}
	item, ok, err := r.store(k).GetByKey(cache.ObjectName{Namespace: key.Namespace, Name: key.Name}.String())
	if err != nil {
		return err
	}
	if !ok {
		return apierrors.NewNotFound(schema.GroupResource{Resource: k}, key.Name)
	}
	reflect.ValueOf(obj).Elem().Set(reflect.ValueOf(item.(runtime.Object).DeepCopyObject()).Elem())
	return nil
}

func (r *informerReader) List(_ context.Context, list client.ObjectList, opts ...client.ListOption) error {
	lo := (&client.ListOptions{}).ApplyOptions(opts)
	gvk, err := apiutil.GVKForObject(list, r.scheme)
	if err != nil {
		return err
	}
	gvk.Kind = strings.TrimSuffix(gvk.Kind, "List")
	items := r.store(gvk.String()).List()
	out := make([]runtime.Object, 0, len(items))
	for _, item := range items {
		o := item.(runtime.Object)
		if lo.UnsafeDisableDeepCopy == nil || !*lo.UnsafeDisableDeepCopy {
			o = o.DeepCopyObject()
		}
		out = append(out, o)
	}
	if err := apimeta.SetList(list, out); err != nil {
		return fmt.Errorf("setting the list: %w", err)
	}
	return nil
}
