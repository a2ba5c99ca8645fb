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
	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
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

// Prepare records the checkpoints in the target cluster: it creates the
// PodRestore naming every checkpoint and its containers, with the images
// known so far (none when it is called at the freeze, before the push), and,
// called again once the images are pushed, adds the images not recorded yet
// (the restore controller then releases the pods the webhook gated). An
// image once recorded is never changed. The namespace is propagated to every
// member by Karmada; the agent's restore webhook sees every namespace not
// labelled agent.livemigrate.io/restore-webhook=disabled.
func (r *Restore) Prepare(ctx context.Context, m migration.Migration, checkpoints []migration.PodCheckpoint) error {
	cl, err := r.Clients.Get(ctx, m.Target)
	if err != nil {
		return err
	}
	pr := &agentv1alpha1.PodRestore{}
	key := r.key(m)
	if err := cl.Get(ctx, key, pr); err == nil {
		return r.recordImages(ctx, cl, m, pr, checkpoints)
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
		names := map[string]bool{}
		for _, c := range cp.Pod.Containers {
			names[c] = true
		}
		for c := range cp.Images {
			names[c] = true
		}
		for name := range names {
			rc.Containers = append(rc.Containers, agentv1alpha1.ContainerImage{Name: name, Image: cp.Images[name]})
		}
		sort.Slice(rc.Containers, func(i, j int) bool { return rc.Containers[i].Name < rc.Containers[j].Name })
		pr.Spec.Checkpoints = append(pr.Spec.Checkpoints, rc)
	}
	if err := cl.Create(ctx, pr); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating PodRestore %s in %s: %w", key, m.Target, err)
	}
	return nil
}

// recordImages adds to an existing PodRestore the checkpoint images it does
// not record yet. The descheduler is the only writer of a PodRestore's spec
// and the CRD lets an image be set once only, so a plain merge patch is
// enough (no optimistic lock: the webhook's concurrent claims, in status,
// must not make it fail).
func (r *Restore) recordImages(ctx context.Context, cl client.Client, m migration.Migration, pr *agentv1alpha1.PodRestore, checkpoints []migration.PodCheckpoint) error {
	images := map[string]map[string]string{}
	for _, cp := range checkpoints {
		images[cp.Pod.Name] = cp.Images
	}
	orig := pr.DeepCopy()
	changed := false
	for i := range pr.Spec.Checkpoints {
		rc := &pr.Spec.Checkpoints[i]
		for j := range rc.Containers {
			c := &rc.Containers[j]
			if img := images[rc.Name][c.Name]; c.Image == "" && img != "" {
				c.Image = img
				changed = true
			}
		}
	}
	if !changed {
		return nil
	}
	if err := cl.Patch(ctx, pr, client.MergeFrom(orig)); err != nil {
		return fmt.Errorf("recording the checkpoint images in PodRestore %s/%s in %s: %w", pr.Namespace, pr.Name, m.Target, err)
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
			return migration.RestoreState{}, migration.NewStepFailedError(lmv1alpha1.ReasonRestoreGone, "the PodRestore in the target cluster was deleted")
		}
		return migration.RestoreState{}, err
	}
	if pr.Status.Phase == agentv1alpha1.PodRestoreFailed {
		return migration.RestoreState{Message: pr.Status.Message}, migration.NewStepFailedError(lmv1alpha1.ReasonRestoreFailed, "restore failed: "+pr.Status.Message)
	}
	rs := migration.RestoreState{Restored: map[string]bool{}, Message: pr.Status.Message}
	var pods []corev1.Pod
	if rs.Unmutated, rs.Ungated, pods, err = r.unmutated(ctx, cl, m, pr); err != nil {
		return migration.RestoreState{}, err
	}
	if rs.UnreadyNodes, err = unreadyNodes(ctx, cl, pr, pods); err != nil {
		return migration.RestoreState{}, fmt.Errorf("reading the target nodes in %s: %w", m.Target, err)
	}
	for _, c := range pr.Status.Claims {
		switch c.Phase {
		case agentv1alpha1.RestoreClaimRunning, agentv1alpha1.RestoreClaimReady:
			rs.Restored[c.Checkpoint] = true
		case agentv1alpha1.RestoreClaimFailed:
			msg := fmt.Sprintf("pod %s failed to restore checkpoint %s", c.PodName, c.Checkpoint)
			if c.Message != "" {
				msg += ": " + c.Message
			}
			return rs, migration.NewStepFailedError(lmv1alpha1.ReasonRestoreFailed, msg)
		}
	}
	return rs, nil
}

// unmutated lists the workload's pods in the target that would not restore
// their checkpoint: without the agent.livemigrate.io/restore annotation
// naming this PodRestore (the webhook did not see them), and, apart, those
// annotated but neither gated (agent.livemigrate.io/checkpoint-image) nor
// running every checkpoint image of their checkpoint (admitted ungated while
// the images were pushed: they run the workload's own images, a fresh
// start). The workload only exists in the target since the rebinding, and
// the PodRestore was created before, so every pod of it must have gone
// through the webhook.
func (r *Restore) unmutated(ctx context.Context, cl client.Client, m migration.Migration, pr *agentv1alpha1.PodRestore) (unmutated, ungated []string, pods []corev1.Pod, err error) {
	var obj client.Object
	switch m.Workload.Kind {
	case "StatefulSet":
		obj = &appsv1.StatefulSet{}
	case "Deployment":
		obj = &appsv1.Deployment{}
	default:
		return nil, nil, nil, nil
	}
	if err := cl.Get(ctx, types.NamespacedName{Namespace: m.Namespace, Name: m.Workload.Name}, obj); err != nil {
		// Not propagated yet: no pod either.
		return nil, nil, nil, client.IgnoreNotFound(err)
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
		return nil, nil, nil, nil
	}
	var list corev1.PodList
	if err := cl.List(ctx, &list, client.InNamespace(m.Namespace), client.MatchingLabelsSelector{Selector: sel}); err != nil {
		return nil, nil, nil, fmt.Errorf("listing the pods of %s %s in %s: %w", m.Workload.Kind, m.Workload.Name, m.Target, err)
	}
	for i := range list.Items {
		p := &list.Items[i]
		switch {
		case !p.DeletionTimestamp.IsZero():
		case p.Annotations[agentv1alpha1.AnnotationRestore] != pr.Name:
			unmutated = append(unmutated, p.Name)
		case !gatedOrRestoring(p, pr):
			ungated = append(ungated, p.Name)
		}
	}
	sort.Strings(unmutated)
	sort.Strings(ungated)
	return unmutated, ungated, list.Items, nil
}

// unreadyNodes names the target nodes the restore depends on whose Ready
// condition is not True (or that are gone): the node the PodRestore pins
// the restored pods to (where their volumes were received), and the node
// of every scheduled pod of the workload not being deleted.
func unreadyNodes(ctx context.Context, cl client.Client, pr *agentv1alpha1.PodRestore, pods []corev1.Pod) ([]string, error) {
	nodes := map[string]bool{}
	if pr.Spec.NodeName != "" {
		nodes[pr.Spec.NodeName] = true
	}
	for i := range pods {
		if pods[i].Spec.NodeName != "" && pods[i].DeletionTimestamp.IsZero() {
			nodes[pods[i].Spec.NodeName] = true
		}
	}
	var unready []string
	for name := range nodes {
		n := &corev1.Node{}
		if err := cl.Get(ctx, types.NamespacedName{Name: name}, n); err != nil {
			if apierrors.IsNotFound(err) {
				unready = append(unready, name)
				continue
			}
			return nil, err
		}
		ready := false
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady {
				ready = c.Status == corev1.ConditionTrue
			}
		}
		if !ready {
			unready = append(unready, name)
		}
	}
	sort.Strings(unready)
	return unready, nil
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

// gatedOrRestoring reports whether a pod that claimed a checkpoint of the
// PodRestore is still gated until the images are recorded, or runs every
// image of its checkpoint.
func gatedOrRestoring(p *corev1.Pod, pr *agentv1alpha1.PodRestore) bool {
	for _, g := range p.Spec.SchedulingGates {
		if g.Name == agentv1alpha1.SchedulingGateCheckpointImage {
			return true
		}
	}
	name := p.Annotations[agentv1alpha1.AnnotationRestoreCheckpoint]
	for _, cp := range pr.Spec.Checkpoints {
		if cp.Name != name {
			continue
		}
		running := map[string]string{}
		for _, c := range p.Spec.Containers {
			running[c.Name] = c.Image
		}
		for _, c := range cp.Containers {
			if c.Image == "" || running[c.Name] != c.Image {
				return false
			}
		}
		return true
	}
	return false
}
