package migration

import (
	"context"
	"fmt"
	"strings"

	workv1alpha2 "github.com/karmada-io/karmada/pkg/apis/work/v1alpha2"
	"github.com/karmada-io/karmada/pkg/util/names"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
)

const (
	// EvictionProducer is the producer of the graceful eviction tasks this
	// controller adds to a ResourceBinding.
	EvictionProducer = "livemigrate"
	// EvictionReason is the reason of those tasks.
	EvictionReason = "LiveMigration"
)

// BindingName returns the name Karmada gives the ResourceBinding of a workload.
func BindingName(ref lmv1alpha1.WorkloadReference) string {
	return names.GenerateBindingName(ref.Kind, ref.Name)
}

// evictionMessage identifies a task as this migration's.
func evictionMessage(lm *lmv1alpha1.LiveMigration) string {
	return fmt.Sprintf("live migration %s/%s uid=%s", lm.Namespace, lm.Name, lm.UID)
}

// ownTask returns the index of this migration's eviction task, -1 if none.
func ownTask(rb *workv1alpha2.ResourceBinding, lm *lmv1alpha1.LiveMigration) int {
	msg := evictionMessage(lm)
	for i, t := range rb.Spec.GracefulEvictionTasks {
		if t.Producer == EvictionProducer && t.Message == msg {
			return i
		}
	}
	return -1
}

// foreignTask returns another live migration's eviction task on the binding, if any.
func foreignTask(rb *workv1alpha2.ResourceBinding, lm *lmv1alpha1.LiveMigration) *workv1alpha2.GracefulEvictionTask {
	msg := evictionMessage(lm)
	for i, t := range rb.Spec.GracefulEvictionTasks {
		if t.Producer == EvictionProducer && t.Message != msg {
			return &rb.Spec.GracefulEvictionTasks[i]
		}
	}
	return nil
}

// onlyOn reports whether the binding places the workload on exactly cluster.
func onlyOn(rb *workv1alpha2.ResourceBinding, cluster string) bool {
	return len(rb.Spec.Clusters) == 1 && rb.Spec.Clusters[0].Name == cluster
}

func replicasOf(rb *workv1alpha2.ResourceBinding) int32 {
	var n int32
	for _, c := range rb.Spec.Clusters {
		n += c.Replicas
	}
	return n
}

func (r *Reconciler) getBinding(ctx context.Context, lm *lmv1alpha1.LiveMigration) (*workv1alpha2.ResourceBinding, error) {
	name := lm.Status.BindingName
	if name == "" {
		name = BindingName(lm.Spec.WorkloadRef)
	}
	rb := &workv1alpha2.ResourceBinding{}
	if err := r.Client.Get(ctx, client.ObjectKey{Namespace: lm.Namespace, Name: name}, rb); err != nil {
		return nil, err
	}
	return rb, nil
}

// patchBinding applies mutate to the binding with an optimistic-lock merge
// patch, so a concurrent scheduler update is never overwritten silently.
func (r *Reconciler) patchBinding(ctx context.Context, rb *workv1alpha2.ResourceBinding, mutate func(*workv1alpha2.ResourceBinding)) error {
	orig := rb.DeepCopy()
	mutate(rb)
	if err := r.Client.Patch(ctx, rb, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{})); err != nil {
		return fmt.Errorf("patching ResourceBinding %s/%s: %w", rb.Namespace, rb.Name, err)
	}
	return nil
}

// rebind moves the binding to the target and keeps the source workload with
// a suppressed-deletion graceful eviction task.
func rebind(rb *workv1alpha2.ResourceBinding, lm *lmv1alpha1.LiveMigration, replicas int32) {
	src, dst := lm.Status.SourceCluster, lm.Status.TargetCluster
	rb.Spec.Clusters = []workv1alpha2.TargetCluster{{Name: dst, Replicas: replicas}}
	if ownTask(rb, lm) < 0 {
		rb.Spec.GracefulEvictionTasks = append(rb.Spec.GracefulEvictionTasks, workv1alpha2.GracefulEvictionTask{
			FromCluster:      src,
			Replicas:         ptr.To(replicas),
			Reason:           EvictionReason,
			Message:          evictionMessage(lm),
			Producer:         EvictionProducer,
			SuppressDeletion: ptr.To(true),
		})
	}
}

// revert puts the binding back on the source and drops this migration's task.
func revert(rb *workv1alpha2.ResourceBinding, lm *lmv1alpha1.LiveMigration, replicas int32) {
	rb.Spec.Clusters = []workv1alpha2.TargetCluster{{Name: lm.Status.SourceCluster, Replicas: replicas}}
	dropTask(rb, lm)
}

func dropTask(rb *workv1alpha2.ResourceBinding, lm *lmv1alpha1.LiveMigration) {
	if i := ownTask(rb, lm); i >= 0 {
		rb.Spec.GracefulEvictionTasks = append(rb.Spec.GracefulEvictionTasks[:i:i], rb.Spec.GracefulEvictionTasks[i+1:]...)
	}
}

// sourceReplicas is the replica count recorded for the move (from the task
// when the binding was already rebound, else from the clusters).
func sourceReplicas(rb *workv1alpha2.ResourceBinding, lm *lmv1alpha1.LiveMigration) int32 {
	if i := ownTask(rb, lm); i >= 0 && rb.Spec.GracefulEvictionTasks[i].Replicas != nil {
		return *rb.Spec.GracefulEvictionTasks[i].Replicas
	}
	if n := replicasOf(rb); n > 0 {
		return n
	}
	return rb.Spec.Replicas
}

func joinClusters(rb *workv1alpha2.ResourceBinding) string {
	var s []string
	for _, c := range rb.Spec.Clusters {
		s = append(s, c.Name)
	}
	return strings.Join(s, ",")
}
