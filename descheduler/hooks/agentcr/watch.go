package agentcr

import (
	"context"
	"fmt"
	"sync"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"

	agentv1alpha1 "github.com/livemigrate/livemigrate/api/agent/v1alpha1"
	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
)

// AnnotationMigration on the agent resources names the LiveMigration (in the
// same namespace) they were written for.
const AnnotationMigration = "livemigrate.io/migration"

// ConfigGetter returns the rest config of a member cluster (member.Clients).
type ConfigGetter interface {
	Config(ctx context.Context, cluster string) (*rest.Config, error)
}

// Watcher watches the agent resources this controller wrote in member
// clusters and turns each change into a reconcile of the LiveMigration it
// belongs to, so that phases waiting on the agent advance on its status
// change instead of on the next poll. It is a manager Runnable; a member's
// watch starts the first time a migration touches it.
type Watcher struct {
	Configs ConfigGetter
	Scheme  *runtime.Scheme
	// Events receives one event per change, for a source.Channel.
	Events chan event.GenericEvent
	// NewCache defaults to cache.New.
	NewCache func(*rest.Config, cache.Options) (cache.Cache, error)

	mu      sync.Mutex
	ctx     context.Context
	running map[string]bool
}

// NewWatcher returns a Watcher with a buffered event channel.
func NewWatcher(configs ConfigGetter, scheme *runtime.Scheme) *Watcher {
	return &Watcher{Configs: configs, Scheme: scheme, Events: make(chan event.GenericEvent, 1024)}
}

// Start records the manager's context; member watches stop with it.
func (w *Watcher) Start(ctx context.Context) error {
	w.mu.Lock()
	w.ctx = ctx
	w.mu.Unlock()
	<-ctx.Done()
	return nil
}

// Watch starts watching the member cluster, once. Before Start it does
// nothing: the controller's polling covers the gap.
func (w *Watcher) Watch(_ context.Context, cluster string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.ctx == nil || w.running[cluster] {
		return nil
	}
	ctx := w.ctx
	cfg, err := w.Configs.Config(ctx, cluster)
	if err != nil {
		return err
	}
	req, err := labels.NewRequirement(LabelMigrationUID, selection.Exists, nil)
	if err != nil {
		return err
	}
	newCache := w.NewCache
	if newCache == nil {
		newCache = cache.New
	}
	c, err := newCache(cfg, cache.Options{Scheme: w.Scheme, DefaultLabelSelector: labels.NewSelector().Add(*req)})
	if err != nil {
		return fmt.Errorf("creating the watch cache of cluster %s: %w", cluster, err)
	}
	for _, obj := range []client.Object{&agentv1alpha1.PodCheckpoint{}, &agentv1alpha1.PodRestore{}, &agentv1alpha1.VolumeReplication{}} {
		inf, err := c.GetInformer(ctx, obj)
		if err != nil {
			return fmt.Errorf("watching %T in cluster %s: %w", obj, cluster, err)
		}
		if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
			AddFunc:    w.enqueue,
			UpdateFunc: func(_, o interface{}) { w.enqueue(o) },
			DeleteFunc: w.enqueue,
		}); err != nil {
			return err
		}
	}
	go func() {
		if err := c.Start(ctx); err != nil {
			klog.FromContext(ctx).Error(err, "Member watch stopped", "cluster", cluster)
			w.mu.Lock()
			delete(w.running, cluster)
			w.mu.Unlock()
		}
	}()
	if w.running == nil {
		w.running = map[string]bool{}
	}
	w.running[cluster] = true
	return nil
}

// enqueue maps an agent resource to its LiveMigration. A full channel drops
// the event: polling still advances the migration.
func (w *Watcher) enqueue(o interface{}) {
	if t, ok := o.(toolscache.DeletedFinalStateUnknown); ok {
		o = t.Obj
	}
	obj, ok := o.(client.Object)
	if !ok {
		return
	}
	name := obj.GetAnnotations()[AnnotationMigration]
	if name == "" {
		return
	}
	lm := &lmv1alpha1.LiveMigration{}
	lm.Namespace, lm.Name = obj.GetNamespace(), name
	select {
	case w.Events <- event.GenericEvent{Object: lm}:
	default:
	}
}
