package latency

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic/dynamicinformer"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/tools/cache"

	"github.com/livemigrate/livemigrate/test/builder"
)

func TestTemplateInformers(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	deployments := schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}
	statefulsets := schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "statefulsets"}
	mapper := meta.NewDefaultRESTMapper([]schema.GroupVersion{{Group: "apps", Version: "v1"}})
	mapper.Add(schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}, meta.RESTScopeNamespace)
	mapper.Add(schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "StatefulSet"}, meta.RESTScopeNamespace)

	db := builder.MakeTemplate("default", "db").Annotation(AnnotationNear, "origin:eu-users").Obj()
	sts := builder.MakeTemplate("default", "kv").Obj()
	sts.SetKind("StatefulSet")
	client := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
		map[schema.GroupVersionResource]string{deployments: "DeploymentList", statefulsets: "StatefulSetList"}, db, sts)
	factory := dynamicinformer.NewDynamicSharedInformerFactory(client, 0)
	var changes atomic.Int64
	ti := NewTemplateInformers(ctx, factory, mapper, 5*time.Second, func() { changes.Add(1) })

	inf, err := ti.Watch(deployments)
	if err != nil {
		t.Fatal(err)
	}
	factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		t.Fatal("deployments informer did not sync")
	}
	got, err := ti.GetTemplate(&builder.MakeBinding("default", "db").Spec.Resource)
	if err != nil || got.GetAnnotations()[AnnotationNear] != "origin:eu-users" {
		t.Fatalf("GetTemplate(db) = %v, %v", got, err)
	}
	// A kind not watched yet starts its informer on first sight.
	ref := builder.MakeBinding("default", "kv").Resource("apps/v1", "StatefulSet").Spec.Resource
	if got, err := ti.GetTemplate(&ref); err != nil || got.GetName() != "kv" {
		t.Fatalf("GetTemplate(kv) = %v, %v", got, err)
	}
	missing := builder.MakeBinding("default", "nope").Spec.Resource
	if _, err := ti.GetTemplate(&missing); err == nil {
		t.Errorf("GetTemplate(missing) succeeded")
	}
	if changes.Load() < 2 {
		t.Errorf("onChange called %d times, want at least one per template", changes.Load())
	}
}
