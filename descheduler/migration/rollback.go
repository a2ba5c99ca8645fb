package migration

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	workv1alpha1 "github.com/karmada-io/karmada/pkg/apis/work/v1alpha1"
	workv1alpha2 "github.com/karmada-io/karmada/pkg/apis/work/v1alpha2"
	"github.com/karmada-io/karmada/pkg/util/names"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
)

// rollingBack undoes a migration, in an order that keeps a single live copy:
//
//  1. ask volume replication to stop;
//  2. point the binding back at the source and drop the eviction task;
//  3. wait until Karmada removed the target's Work (read from the API
//     server, after the revert: until then Karmada may still apply the
//     workload there, even after it was seen gone), then remove the
//     restore records and the target workload, and wait until it and its
//     pods are gone;
//  4. only then thaw the source pods;
//  5. enter Failed once replication stopped and cleaned up too.
//
// Every step is idempotent and decided from status alone, so a restarted
// controller repeats them safely.
func (r *Reconciler) rollingBack(ctx context.Context, lm *lmv1alpha1.LiveMigration, now time.Time) (stepResult, error) {
	st := &lm.Status
	m := migrationOf(lm)

	replicationStopped, err := r.abortReplication(ctx, lm, AbortOptions{})
	if err != nil {
		return stay(), err
	}

	if st.SourceCluster != "" {
		rb, err := r.getBinding(ctx, lm)
		switch {
		case apierrors.IsNotFound(err):
		case err != nil:
			return stay(), err
		case ownTask(rb, lm) >= 0:
			replicas := sourceReplicas(rb, lm)
			if err := r.patchBinding(ctx, rb, func(b *workv1alpha2.ResourceBinding) { revert(b, lm, replicas) }); err != nil {
				return stay(), err
			}
			setCondition(st, lm.Generation, lmv1alpha1.ConditionRebound, metav1.ConditionFalse, "Reverted",
				fmt.Sprintf("ResourceBinding %s points at %s again", rb.Name, st.SourceCluster), now)
		}
	}

	// The target may hold the workload only once the binding was patched,
	// which happens in Rebinding: before that there is nothing to remove, and
	// a workload of the same name there is not ours.
	if st.TargetCluster != "" && !enteredAt(st, lmv1alpha1.PhaseRebinding).IsZero() {
		works, err := r.targetWorks(ctx, lm)
		if err != nil {
			return stay(), err
		}
		if len(works) > 0 {
			klog.FromContext(ctx).V(2).Info("Waiting for Karmada to remove the target's Work before the source is thawed",
				"cluster", st.TargetCluster, "works", strings.Join(works, ","))
			return stay(), nil
		}
		removed, err := r.Hooks.Restore.Remove(ctx, m)
		if err != nil {
			return stay(), fmt.Errorf("removing the restore records in %s: %w", st.TargetCluster, err)
		}
		gone, err := r.Hooks.Workload.Remove(ctx, st.TargetCluster, lm.Namespace, lm.Spec.WorkloadRef)
		if err != nil {
			return stay(), fmt.Errorf("removing the target workload in %s: %w", st.TargetCluster, err)
		}
		if !gone || !removed {
			return stay(), nil
		}
	}

	if !enteredAt(st, lmv1alpha1.PhaseCheckpointing).IsZero() {
		allThawed := true
		for i, pod := range podsOf(lm) {
			ok, err := r.Hooks.Checkpoint.Thaw(ctx, m, pod)
			if err != nil {
				return stay(), fmt.Errorf("thawing pod %s: %w", pod.Name, err)
			}
			if ok {
				st.Pods[i].Frozen = false
			}
			allThawed = allThawed && ok
		}
		if !allThawed {
			return stay(), nil
		}
		setCondition(st, lm.Generation, lmv1alpha1.ConditionSourceFrozen, metav1.ConditionFalse, "Thawed", "source pods run again", now)
	}
	// Failed only once replication stopped and its target copy was removed,
	// or, when the agents do not confirm that within AbortWait of the
	// rollback's start, once their objects are removed without it: the
	// source runs again and the target workload is gone, so what is left is
	// cleanup a dead or partitioned node cannot confirm, and waiting for it
	// forever would keep the workload from being migrated again.
	if len(volumesOf(lm)) > 0 {
		if replicationStopped {
			setCondition(st, lm.Generation, lmv1alpha1.ConditionReplicationStopped, metav1.ConditionTrue, "Aborted",
				"the agents stopped volume replication and removed the target copy", now)
		} else {
			wait := r.Config.AbortWait
			if wait <= 0 {
				wait = DefaultAbortWait
			}
			started := enteredAt(st, lmv1alpha1.PhaseRollingBack)
			if left := started.Add(wait).Sub(now); left > 0 {
				return stepResult{wait: min(left, r.Config.PollInterval)}, nil
			}
			if _, err := r.abortReplication(ctx, lm, AbortOptions{Force: true}); err != nil {
				return stay(), err
			}
			msg := fmt.Sprintf("the agents did not confirm within %s that volume replication stopped; its objects and the claims created in %s were deleted without that confirmation, and the target node may keep partial data of the copy until its agent runs again", wait, st.TargetCluster)
			setCondition(st, lm.Generation, lmv1alpha1.ConditionReplicationStopped, metav1.ConditionFalse, "AgentsUnresponsive", msg, now)
			if r.Recorder != nil {
				r.Recorder.Eventf(lm, workloadObject(lm), corev1.EventTypeWarning, "ReplicationAbortUnconfirmed", "RollBack", "%s", msg)
			}
		}
	}
	return advanceTo(lmv1alpha1.PhaseFailed), nil
}

// abortReplication asks every volume's replication backend to stop and
// remove the target copy; stopped once every one is done.
func (r *Reconciler) abortReplication(ctx context.Context, lm *lmv1alpha1.LiveMigration, opts AbortOptions) (bool, error) {
	m := migrationOf(lm)
	stopped := true
	for _, vol := range volumesOf(lm) {
		hook, err := r.Hooks.Replication.For(vol.StorageClass)
		if err != nil {
			continue // nothing was started for a class without a backend
		}
		done, err := hook.Abort(ctx, m, vol, opts)
		if err != nil {
			return false, fmt.Errorf("aborting replication of volume %s: %w", vol.ClaimName, err)
		}
		stopped = stopped && done
	}
	return stopped, nil
}

// targetWorks lists the Works through which Karmada applies the workload to
// the target cluster (in its execution namespace karmada-es-<target>): the
// ones labelled with the binding's permanent ID, and the workload's Work by
// its name. They are read from the API server (APIReader), so what is
// seen is later than the binding's revert; until none is left Karmada may
// still create the workload in the target, so the target is not gone.
func (r *Reconciler) targetWorks(ctx context.Context, lm *lmv1alpha1.LiveMigration) ([]string, error) {
	return r.clusterWorks(ctx, lm, lm.Status.TargetCluster)
}

// clusterWorks lists the Works of the migration's workload in a cluster's
// execution namespace, as targetWorks does for the target.
func (r *Reconciler) clusterWorks(ctx context.Context, lm *lmv1alpha1.LiveMigration, cluster string) ([]string, error) {
	ns := names.GenerateExecutionSpaceName(cluster)
	ref := lm.Spec.WorkloadRef
	found := map[string]bool{}
	rb, err := r.getBinding(ctx, lm)
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		return nil, err
	default:
		if id := rb.Labels[workv1alpha2.ResourceBindingPermanentIDLabel]; id != "" {
			var works workv1alpha1.WorkList
			if err := r.reader().List(ctx, &works, client.InNamespace(ns),
				client.MatchingLabels{workv1alpha2.ResourceBindingPermanentIDLabel: id}); noWorkAPI(err) {
				return nil, nil
			} else if err != nil {
				return nil, fmt.Errorf("listing the Works of ResourceBinding %s in %s: %w", rb.Name, ns, err)
			}
			for _, w := range works.Items {
				found[w.Name] = true
			}
		}
	}
	name := names.GenerateWorkName(ref.Kind, ref.Name, lm.Namespace)
	w := &workv1alpha1.Work{}
	switch err := r.reader().Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, w); {
	case err == nil:
		found[w.Name] = true
	case noWorkAPI(err):
		return nil, nil
	case !apierrors.IsNotFound(err):
		return nil, fmt.Errorf("getting Work %s/%s: %w", ns, name, err)
	}
	out := make([]string, 0, len(found))
	for n := range found {
		out = append(out, n)
	}
	sort.Strings(out)
	return out, nil
}

// noWorkAPI reports whether the control plane serves no Work API at all
// (no Karmada controllers: nothing can apply the workload anywhere).
func noWorkAPI(err error) bool {
	return meta.IsNoMatchError(err) || discovery.IsGroupDiscoveryFailedError(err)
}
