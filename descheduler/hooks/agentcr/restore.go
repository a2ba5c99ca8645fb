package agentcr

import (
	"context"
	"fmt"
	"sort"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	agentv1alpha1 "github.com/livemigrate/livemigrate/api/agent/v1alpha1"
	"github.com/livemigrate/livemigrate/descheduler/migration"
)

// Restore is the RestoreHook backed by a PodRestore in the target cluster.
type Restore struct {
	Clients ClientGetter
}

var _ migration.RestoreHook = &Restore{}

func (r *Restore) key(m migration.Migration) types.NamespacedName {
	return types.NamespacedName{Namespace: m.Namespace, Name: objectName(m.Workload.Name, m.UID)}
}

// Prepare creates the PodRestore naming every checkpoint. The namespace is
// propagated to every member by Karmada; the agent's restore webhook sees
// every namespace not labelled agent.livemigrate.io/restore-webhook=disabled.
func (r *Restore) Prepare(ctx context.Context, m migration.Migration, checkpoints []migration.PodCheckpoint) error {
	cl, err := r.Clients.Get(ctx, m.Target)
	if err != nil {
		return err
	}
	pr := &agentv1alpha1.PodRestore{}
	key := r.key(m)
	if err := cl.Get(ctx, key, pr); err == nil {
		return nil
	} else if !apierrors.IsNotFound(err) {
		return err
	}
	pr = &agentv1alpha1.PodRestore{
		ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name,
			Labels:      map[string]string{LabelMigrationUID: string(m.UID)},
			Annotations: map[string]string{AnnotationMigration: m.Name}},
		Spec: agentv1alpha1.PodRestoreSpec{
			MigrationUID: string(m.UID),
			Workload:     agentv1alpha1.WorkloadReference{APIVersion: m.Workload.APIVersion, Kind: m.Workload.Kind, Name: m.Workload.Name},
		},
	}
	// Restored pods run where their volumes were received.
	var vrs agentv1alpha1.VolumeReplicationList
	if err := cl.List(ctx, &vrs, client.InNamespace(m.Namespace), client.MatchingLabels{LabelMigrationUID: string(m.UID)}); err != nil {
		return err
	}
	for _, vr := range vrs.Items {
		if vr.Spec.Role == agentv1alpha1.ReplicationRoleTarget {
			pr.Spec.NodeName = vr.Spec.NodeName
		}
	}
	for _, cp := range checkpoints {
		rc := agentv1alpha1.RestoreCheckpoint{Name: cp.Pod.Name, Ordinal: cp.Pod.Ordinal}
		for name, img := range cp.Images {
			rc.Containers = append(rc.Containers, agentv1alpha1.ContainerImage{Name: name, Image: img})
		}
		sort.Slice(rc.Containers, func(i, j int) bool { return rc.Containers[i].Name < rc.Containers[j].Name })
		pr.Spec.Checkpoints = append(pr.Spec.Checkpoints, rc)
	}
	if err := cl.Create(ctx, pr); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating PodRestore %s in %s: %w", key, m.Target, err)
	}
	return nil
}

// Status reports which checkpoints a running target pod restored from.
func (r *Restore) Status(ctx context.Context, m migration.Migration) (migration.RestoreState, error) {
	cl, err := r.Clients.Get(ctx, m.Target)
	if err != nil {
		return migration.RestoreState{}, err
	}
	pr := &agentv1alpha1.PodRestore{}
	if err := cl.Get(ctx, r.key(m), pr); err != nil {
		if apierrors.IsNotFound(err) {
			return migration.RestoreState{}, migration.NewStepFailedError("RestoreGone", "the PodRestore in the target cluster was deleted")
		}
		return migration.RestoreState{}, err
	}
	if pr.Status.Phase == agentv1alpha1.PodRestoreFailed {
		return migration.RestoreState{Message: pr.Status.Message}, migration.NewStepFailedError("RestoreFailed", "restore failed: "+pr.Status.Message)
	}
	rs := migration.RestoreState{Restored: map[string]bool{}, Message: pr.Status.Message}
	if rs.Unmutated, err = r.unmutated(ctx, cl, m, pr.Name); err != nil {
		return migration.RestoreState{}, err
	}
	for _, c := range pr.Status.Claims {
		switch c.Phase {
		case agentv1alpha1.RestoreClaimRunning, agentv1alpha1.RestoreClaimReady:
			rs.Restored[c.Checkpoint] = true
		case agentv1alpha1.RestoreClaimFailed:
			return rs, migration.NewStepFailedError("RestoreFailed", fmt.Sprintf("pod %s failed to restore checkpoint %s", c.PodName, c.Checkpoint))
		}
	}
	return rs, nil
}

// unmutated lists the workload's pods in the target that the restore
// webhook did not point at a checkpoint of this PodRestore (no
// agent.livemigrate.io/restore annotation naming it). The workload only
// exists in the target since the rebinding, and the PodRestore was created
// before, so every pod of it must have gone through the webhook.
func (r *Restore) unmutated(ctx context.Context, cl client.Client, m migration.Migration, restore string) ([]string, error) {
	var obj client.Object
	switch m.Workload.Kind {
	case "StatefulSet":
		obj = &appsv1.StatefulSet{}
	case "Deployment":
		obj = &appsv1.Deployment{}
	default:
		return nil, nil
	}
	if err := cl.Get(ctx, types.NamespacedName{Namespace: m.Namespace, Name: m.Workload.Name}, obj); err != nil {
		// Not propagated yet: no pod either.
		return nil, client.IgnoreNotFound(err)
	}
	var ls *metav1.LabelSelector
	switch o := obj.(type) {
	case *appsv1.StatefulSet:
		ls = o.Spec.Selector
	case *appsv1.Deployment:
		ls = o.Spec.Selector
	}
	sel, err := metav1.LabelSelectorAsSelector(ls)
	if err != nil || sel.Empty() {
		return nil, nil
	}
	var pods corev1.PodList
	if err := cl.List(ctx, &pods, client.InNamespace(m.Namespace), client.MatchingLabelsSelector{Selector: sel}); err != nil {
		return nil, fmt.Errorf("listing the pods of %s %s in %s: %w", m.Workload.Kind, m.Workload.Name, m.Target, err)
	}
	var out []string
	for i := range pods.Items {
		p := &pods.Items[i]
		if p.DeletionTimestamp.IsZero() && p.Annotations[agentv1alpha1.AnnotationRestore] != restore {
			out = append(out, p.Name)
		}
	}
	sort.Strings(out)
	return out, nil
}

// Remove deletes the PodRestore; done once it is gone.
func (r *Restore) Remove(ctx context.Context, m migration.Migration) (bool, error) {
	if m.Target == "" {
		return true, nil
	}
	cl, err := r.Clients.Get(ctx, m.Target)
	if err != nil {
		return false, err
	}
	pr := &agentv1alpha1.PodRestore{}
	if err := cl.Get(ctx, r.key(m), pr); err != nil {
		return apierrors.IsNotFound(err), client.IgnoreNotFound(err)
	}
	if pr.DeletionTimestamp.IsZero() {
		if err := cl.Delete(ctx, pr); err != nil && !apierrors.IsNotFound(err) {
			return false, err
		}
	}
	return false, nil
}
