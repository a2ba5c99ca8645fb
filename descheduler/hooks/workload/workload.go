package workload

import (
	"context"
	"fmt"
	"sort"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
	"github.com/livemigrate/livemigrate/descheduler/hooks/agentcr"
	"github.com/livemigrate/livemigrate/descheduler/migration"
)

// Hook is the WorkloadHook over member-cluster clients.
type Hook struct {
	Clients agentcr.ClientGetter
}

var _ migration.WorkloadHook = &Hook{}

// object returns an empty typed object for the workload kind.
func object(ref lmv1alpha1.WorkloadReference) (client.Object, error) {
	switch ref.Kind {
	case "Deployment":
		return &appsv1.Deployment{}, nil
	case "StatefulSet":
		return &appsv1.StatefulSet{}, nil
	default:
		return nil, migration.NewStepFailedError(lmv1alpha1.ReasonUnsupportedKind, fmt.Sprintf("workload kind %q is not supported (Deployment, StatefulSet)", ref.Kind))
	}
}

func (h *Hook) get(ctx context.Context, cluster, namespace string, ref lmv1alpha1.WorkloadReference) (client.Client, client.Object, error) {
	cl, err := h.Clients.Get(ctx, cluster)
	if err != nil {
		return nil, nil, err
	}
	obj, err := object(ref)
	if err != nil {
		return nil, nil, err
	}
	err = cl.Get(ctx, types.NamespacedName{Namespace: namespace, Name: ref.Name}, obj)
	return cl, obj, err
}

func selectorOf(obj client.Object) (*metav1.LabelSelector, *corev1.PodSpec) {
	switch o := obj.(type) {
	case *appsv1.Deployment:
		return o.Spec.Selector, &o.Spec.Template.Spec
	case *appsv1.StatefulSet:
		return o.Spec.Selector, &o.Spec.Template.Spec
	}
	return nil, nil
}

// Inspect lists the workload's running pods and the claims they mount.
func (h *Hook) Inspect(ctx context.Context, cluster, namespace string, ref lmv1alpha1.WorkloadReference) (migration.WorkloadInfo, error) {
	cl, obj, err := h.get(ctx, cluster, namespace, ref)
	if err != nil {
		if apierrors.IsNotFound(err) {
			return migration.WorkloadInfo{}, migration.NewStepFailedError(lmv1alpha1.ReasonWorkloadNotFound, fmt.Sprintf("%s %s/%s does not exist in %s", ref.Kind, namespace, ref.Name, cluster))
		}
		return migration.WorkloadInfo{}, err
	}
	ls, _ := selectorOf(obj)
	sel, err := metav1.LabelSelectorAsSelector(ls)
	if err != nil || sel.Empty() {
		return migration.WorkloadInfo{}, migration.NewStepFailedError(lmv1alpha1.ReasonBadSelector, fmt.Sprintf("%s %s has no usable selector", ref.Kind, ref.Name))
	}
	var pods corev1.PodList
	if err := cl.List(ctx, &pods, client.InNamespace(namespace), client.MatchingLabelsSelector{Selector: sel}); err != nil {
		return migration.WorkloadInfo{}, fmt.Errorf("listing pods of %s %s in %s: %w", ref.Kind, ref.Name, cluster, err)
	}
	info := migration.WorkloadInfo{}
	claims := map[string]migration.Pod{}
	for i := range pods.Items {
		p := &pods.Items[i]
		if !p.DeletionTimestamp.IsZero() || p.Status.Phase != corev1.PodRunning {
			continue
		}
		mp := migration.Pod{Name: p.Name, Node: p.Spec.NodeName}
		for _, c := range p.Spec.Containers {
			mp.Containers = append(mp.Containers, c.Name)
		}
		info.Pods = append(info.Pods, mp)
		for _, v := range p.Spec.Volumes {
			if v.PersistentVolumeClaim != nil {
				claims[v.PersistentVolumeClaim.ClaimName] = mp
			}
		}
	}
	sort.Slice(info.Pods, func(i, j int) bool { return info.Pods[i].Name < info.Pods[j].Name })
	names := make([]string, 0, len(claims))
	for c := range claims {
		names = append(names, c)
	}
	sort.Strings(names)
	for _, name := range names {
		pvc := &corev1.PersistentVolumeClaim{}
		if err := cl.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, pvc); err != nil {
			return migration.WorkloadInfo{}, fmt.Errorf("getting PersistentVolumeClaim %s in %s: %w", name, cluster, err)
		}
		class := ""
		if pvc.Spec.StorageClassName != nil {
			class = *pvc.Spec.StorageClassName
		}
		info.Volumes = append(info.Volumes, migration.Volume{ClaimName: name, StorageClass: class, Pod: claims[name].Name, Node: claims[name].Node})
	}
	return info, nil
}

// Ready reports whether the workload's controller observed its latest spec
// and every desired replica is Ready.
func (h *Hook) Ready(ctx context.Context, cluster, namespace string, ref lmv1alpha1.WorkloadReference) (bool, error) {
	_, obj, err := h.get(ctx, cluster, namespace, ref)
	if err != nil {
		if apierrors.IsNotFound(err) {
			return false, nil // Karmada has not created it yet
		}
		return false, err
	}
	switch o := obj.(type) {
	case *appsv1.Deployment:
		want := int32(1)
		if o.Spec.Replicas != nil {
			want = *o.Spec.Replicas
		}
		return o.Status.ObservedGeneration >= o.Generation && want > 0 &&
			o.Status.ReadyReplicas >= want && o.Status.UpdatedReplicas >= want, nil
	case *appsv1.StatefulSet:
		want := int32(1)
		if o.Spec.Replicas != nil {
			want = *o.Spec.Replicas
		}
		return o.Status.ObservedGeneration >= o.Generation && want > 0 && o.Status.ReadyReplicas >= want, nil
	}
	return false, nil
}

// Remove deletes the workload in the foreground; done once it is gone and
// no pod (or ReplicaSet) of it is left. Foreground deletion removes the
// workload after its pods, but one deleted otherwise (by Karmada when its
// Work goes, in the background) leaves pods behind that run until the
// garbage collector and their kubelet removed them.
func (h *Hook) Remove(ctx context.Context, cluster, namespace string, ref lmv1alpha1.WorkloadReference) (bool, error) {
	cl, obj, err := h.get(ctx, cluster, namespace, ref)
	if apierrors.IsNotFound(err) {
		left, err := leftovers(ctx, cl, namespace, ref)
		if err != nil {
			return false, fmt.Errorf("listing what is left of %s %s in %s: %w", ref.Kind, ref.Name, cluster, err)
		}
		return len(left) == 0, nil
	}
	if err != nil {
		return false, err
	}
	if obj.GetDeletionTimestamp().IsZero() {
		if err := cl.Delete(ctx, obj, client.PropagationPolicy(metav1.DeletePropagationForeground)); client.IgnoreNotFound(err) != nil {
			return false, fmt.Errorf("deleting %s %s in %s: %w", ref.Kind, ref.Name, cluster, err)
		}
	}
	return false, nil
}

// leftovers names the pods and ReplicaSets still owned by the (deleted)
// workload: a StatefulSet's pods, a Deployment's ReplicaSets and the pods of
// its ReplicaSets (<name>-<pod-template-hash>).
func leftovers(ctx context.Context, cl client.Client, namespace string, ref lmv1alpha1.WorkloadReference) ([]string, error) {
	ownedBy := func(refs []metav1.OwnerReference, kind string, match func(string) bool) bool {
		for _, o := range refs {
			if o.Kind == kind && match(o.Name) {
				return true
			}
		}
		return false
	}
	isName := func(n string) bool { return n == ref.Name }
	isReplicaSet := func(n string) bool {
		hash, ok := strings.CutPrefix(n, ref.Name+"-")
		return ok && hash != "" && !strings.Contains(hash, "-")
	}
	var left []string
	if ref.Kind == "Deployment" {
		var rss appsv1.ReplicaSetList
		if err := cl.List(ctx, &rss, client.InNamespace(namespace)); err != nil {
			return nil, err
		}
		for i := range rss.Items {
			if ownedBy(rss.Items[i].OwnerReferences, "Deployment", isName) {
				left = append(left, "replicaset/"+rss.Items[i].Name)
			}
		}
	}
	var pods corev1.PodList
	if err := cl.List(ctx, &pods, client.InNamespace(namespace)); err != nil {
		return nil, err
	}
	for i := range pods.Items {
		p := &pods.Items[i]
		if (ref.Kind == "StatefulSet" && ownedBy(p.OwnerReferences, "StatefulSet", isName)) ||
			(ref.Kind == "Deployment" && ownedBy(p.OwnerReferences, "ReplicaSet", isReplicaSet)) {
			left = append(left, "pod/"+p.Name)
		}
	}
	sort.Strings(left)
	return left, nil
}
