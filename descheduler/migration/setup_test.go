package migration

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
	"github.com/livemigrate/livemigrate/test/builder"
)

func TestMigrationsOfBinding(t *testing.T) {
	active := builder.MakeLiveMigration("ns", "active", "app").Obj()
	active.Status.Phase = lmv1alpha1.PhaseRebinding
	done := builder.MakeLiveMigration("ns", "done", "app").Obj()
	done.Status.Phase = lmv1alpha1.PhaseSucceeded
	other := builder.MakeLiveMigration("ns", "other", "web").Obj()
	elsewhere := builder.MakeLiveMigration("ns2", "elsewhere", "app").Obj()
	c := fake.NewClientBuilder().WithScheme(builder.Scheme()).WithObjects(active, done, other, elsewhere).Build()
	r := &Reconciler{Client: c}
	got := r.migrationsOfBinding(context.Background(), builder.MakeBinding("ns", "app").Obj())
	want := []reconcile.Request{{NamespacedName: client.ObjectKeyFromObject(active)}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}
