package agentcr

import (
	"context"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache/informertest"

	agentv1alpha1 "github.com/livemigrate/livemigrate/api/agent/v1alpha1"
	"github.com/livemigrate/livemigrate/test/builder"
)

type configs struct{ calls int }

func (c *configs) Config(context.Context, string) (*rest.Config, error) {
	c.calls++
	return &rest.Config{Host: "https://member"}, nil
}

func TestWatcherEnqueuesTheMigrationOfAChangedAgentResource(t *testing.T) {
	fakeCache := &informertest.FakeInformers{Scheme: builder.Scheme()}
	var opts cache.Options
	cfgs := &configs{}
	w := NewWatcher(cfgs, builder.Scheme())
	w.NewCache = func(_ *rest.Config, o cache.Options) (cache.Cache, error) {
		opts = o
		return fakeCache, nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	if err := w.Watch(ctx, "a"); err != nil || cfgs.calls != 0 {
		t.Fatalf("Watch before Start = %v (%d configs built), want a no-op", err, cfgs.calls)
	}
	go func() { _ = w.Start(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		w.mu.Lock()
		started := w.ctx != nil
		w.mu.Unlock()
		if started || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	for i := 0; i < 2; i++ {
		if err := w.Watch(ctx, "a"); err != nil {
			t.Fatal(err)
		}
	}
	if cfgs.calls != 1 {
		t.Errorf("member watch started %d times, want once", cfgs.calls)
	}
	if opts.DefaultLabelSelector == nil || opts.DefaultLabelSelector.String() != LabelMigrationUID {
		t.Errorf("watch selector = %v, want only objects labelled %s", opts.DefaultLabelSelector, LabelMigrationUID)
	}

	inf, err := fakeCache.FakeInformerFor(ctx, &agentv1alpha1.PodCheckpoint{})
	if err != nil {
		t.Fatal(err)
	}
	inf.Add(&agentv1alpha1.PodCheckpoint{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "db-0-x",
		Annotations: map[string]string{AnnotationMigration: "mig"}}})
	inf.Add(&agentv1alpha1.PodCheckpoint{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "foreign"}})
	select {
	case ev := <-w.Events:
		if ev.Object.GetNamespace() != "ns" || ev.Object.GetName() != "mig" {
			t.Errorf("enqueued %s/%s, want ns/mig", ev.Object.GetNamespace(), ev.Object.GetName())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no event for the changed PodCheckpoint")
	}
	select {
	case ev := <-w.Events:
		t.Errorf("unexpected event for %s", ev.Object.GetName())
	default:
	}
}
