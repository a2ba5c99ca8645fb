package migration

import (
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/source"

	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
)

// SetupWithManager registers the reconciler. LiveMigrations are few and each
// one is slow, so a handful of workers is plenty.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	b := ctrl.NewControllerManagedBy(mgr).
		For(&lmv1alpha1.LiveMigration{}).
		Named("livemigration").
		WithOptions(controller.Options{MaxConcurrentReconciles: 4})
	if r.MemberEvents != nil {
		b = b.WatchesRawSource(source.Channel(r.MemberEvents, &handler.EnqueueRequestForObject{}))
	}
	return b.Complete(r)
}
