package migration

import (
	"context"
	"fmt"
	"strings"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
)

// LabelLockMigrationUID labels a workload lock with the UID of the
// LiveMigration holding it (the Lease's holderIdentity is its name).
const LabelLockMigrationUID = "livemigrate.io/migration-uid"

// ReasonMigrationInProgress is the failure reason of a migration whose
// workload another active migration holds.
const ReasonMigrationInProgress = "MigrationInProgress"

// LockName is the name of the Lease, in the workload's namespace, that one
// LiveMigration of the workload holds from Planning until it ends.
func LockName(ref lmv1alpha1.WorkloadReference) string {
	name := "livemigrate-" + strings.ToLower(ref.Kind) + "-" + ref.Name
	if len(name) > 253 {
		name = name[:253]
	}
	return name
}

// reader returns the uncached reader when one is configured: what decides
// the lock, or that the target is gone, must not come from a stale cache.
func (r *Reconciler) reader() client.Reader {
	if r.APIReader != nil {
		return r.APIReader
	}
	return r.Client
}

// acquireLock takes the workload's lock for lm, or fails the step with
// MigrationInProgress when another active migration holds it. The webhook
// refuses a second migration of a workload, but two created at the same
// time can both pass its check; the API server arbitrates the Lease (one
// create wins; a takeover of a lock whose holder ended is an update under
// the resourceVersion), so only one of them ever freezes the workload.
// It is idempotent: the holder calls it again in every reconcile up to the
// freeze.
func (r *Reconciler) acquireLock(ctx context.Context, lm *lmv1alpha1.LiveMigration) error {
	key := types.NamespacedName{Namespace: lm.Namespace, Name: LockName(lm.Spec.WorkloadRef)}
	lease := &coordinationv1.Lease{}
	err := r.reader().Get(ctx, key, lease)
	if apierrors.IsNotFound(err) {
		lease = &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}}
		r.holdLock(lease, lm)
		if err := r.Client.Create(ctx, lease); err != nil {
			if apierrors.IsAlreadyExists(err) {
				return fmt.Errorf("workload lock %s was taken meanwhile: %w", key, err)
			}
			return fmt.Errorf("creating workload lock %s: %w", key, err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("getting workload lock %s: %w", key, err)
	}
	if lease.Labels[LabelLockMigrationUID] == string(lm.UID) {
		return nil
	}
	holder, active, err := r.lockHolderActive(ctx, lease)
	if err != nil {
		return err
	}
	if active {
		return NewStepFailedError(ReasonMigrationInProgress, fmt.Sprintf(
			"LiveMigration %s is already migrating %s %s (it holds the Lease %s): wait for it to finish or abort it, then create a new LiveMigration",
			holder, lm.Spec.WorkloadRef.Kind, lm.Spec.WorkloadRef.Name, key.Name))
	}
	// The holder ended without releasing the lock: take it over, under the
	// resourceVersion read, so that of two migrations doing this at once
	// only one succeeds.
	r.holdLock(lease, lm)
	if err := r.Client.Update(ctx, lease); err != nil {
		return fmt.Errorf("taking over workload lock %s: %w", key, err)
	}
	klog.FromContext(ctx).Info("Took over the workload lock of an ended migration", "lease", klog.KObj(lease), "previousHolder", holder)
	return nil
}

// holdLock makes lease name lm as its holder.
func (r *Reconciler) holdLock(lease *coordinationv1.Lease, lm *lmv1alpha1.LiveMigration) {
	if lease.Labels == nil {
		lease.Labels = map[string]string{}
	}
	lease.Labels[LabelLockMigrationUID] = string(lm.UID)
	lease.OwnerReferences = []metav1.OwnerReference{{
		APIVersion: lmv1alpha1.GroupVersion.String(), Kind: "LiveMigration", Name: lm.Name, UID: lm.UID,
	}}
	now := metav1.NewMicroTime(r.Clock.Now())
	lease.Spec = coordinationv1.LeaseSpec{HolderIdentity: ptr.To(lm.Name), AcquireTime: &now}
}

// lockHolderActive reports whether the LiveMigration holding lease exists
// (same name and UID) and has not ended.
func (r *Reconciler) lockHolderActive(ctx context.Context, lease *coordinationv1.Lease) (string, bool, error) {
	name := ptr.Deref(lease.Spec.HolderIdentity, "")
	if name == "" {
		return "", false, nil
	}
	holder := &lmv1alpha1.LiveMigration{}
	err := r.reader().Get(ctx, types.NamespacedName{Namespace: lease.Namespace, Name: name}, holder)
	switch {
	case apierrors.IsNotFound(err):
		return name, false, nil
	case err != nil:
		return name, false, fmt.Errorf("getting LiveMigration %s holding workload lock %s: %w", name, lease.Name, err)
	}
	return name, string(holder.UID) == lease.Labels[LabelLockMigrationUID] && !holder.Status.Phase.IsTerminal(), nil
}

// releaseLock deletes the workload's lock if lm holds it (a terminal
// migration). The deletion is conditional on the resourceVersion read, so
// a lock taken over meanwhile is left alone.
func (r *Reconciler) releaseLock(ctx context.Context, lm *lmv1alpha1.LiveMigration) error {
	key := types.NamespacedName{Namespace: lm.Namespace, Name: LockName(lm.Spec.WorkloadRef)}
	lease := &coordinationv1.Lease{}
	if err := r.reader().Get(ctx, key, lease); err != nil {
		return client.IgnoreNotFound(err)
	}
	if lease.Labels[LabelLockMigrationUID] != string(lm.UID) {
		return nil
	}
	err := r.Client.Delete(ctx, lease, client.Preconditions{UID: ptr.To(lease.UID), ResourceVersion: ptr.To(lease.ResourceVersion)})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("releasing workload lock %s: %w", key, err)
	}
	return nil
}
