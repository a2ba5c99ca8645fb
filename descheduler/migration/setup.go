package migration

import (
	"context"

	workv1alpha2 "github.com/karmada-io/karmada/pkg/apis/work/v1alpha2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
)

// SetupWithManager registers the reconciler. It watches LiveMigrations, the
// ResourceBindings they rebind (so Rebinding advances as soon as
// karmada-scheduler observed the change) and, when MemberEvents is set, the
// agent resources in member clusters. LiveMigrations are few and each one is
// slow, so a handful of workers is plenty.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	b := ctrl.NewControllerManagedBy(mgr).
		For(&lmv1alpha1.LiveMigration{}).
		Watches(&workv1alpha2.ResourceBinding{}, handler.EnqueueRequestsFromMapFunc(r.migrationsOfBinding)).
		Named("livemigration").
		WithOptions(controller.Options{MaxConcurrentReconciles: 4})
	if r.MemberEvents != nil {
		b = b.WatchesRawSource(source.Channel(r.MemberEvents, &handler.EnqueueRequestForObject{}))
	}
	return b.Complete(r)
}

// migrationsOfBinding maps a ResourceBinding to the active migrations of its workload.
func (r *Reconciler) migrationsOfBinding(ctx context.Context, obj client.Object) []reconcile.Request {
	var list lmv1alpha1.LiveMigrationList
	if err := r.Client.List(ctx, &list, client.InNamespace(obj.GetNamespace())); err != nil {
		return nil
	}
	var reqs []reconcile.Request
	for i := range list.Items {
		lm := &list.Items[i]
		if lm.Status.Phase.IsTerminal() {
			continue
		}
		if lm.Status.BindingName == obj.GetName() || BindingName(lm.Spec.WorkloadRef) == obj.GetName() {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(lm)})
		}
	}
	return reqs
}
