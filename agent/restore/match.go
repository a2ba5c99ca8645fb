package restore

import (
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	agentv1alpha1 "github.com/livemigrate/livemigrate/api/agent/v1alpha1"
)

// owner is a workload a pod belongs to.
type owner struct {
	Kind, Name string
}

// podOwners returns the workloads a pod belongs to, from its controller
// reference: a StatefulSet, or a ReplicaSet and the Deployment that owns it
// (by the pod-template-hash naming convention), and the pod's StatefulSet
// ordinal when it has one.
func podOwners(pod *corev1.Pod) ([]owner, *int32) {
	ref := metav1.GetControllerOf(pod)
	if ref == nil || !strings.HasPrefix(ref.APIVersion, "apps/") {
		return nil, nil
	}
	switch ref.Kind {
	case "StatefulSet":
		return []owner{{"StatefulSet", ref.Name}}, statefulSetOrdinal(pod, ref.Name)
	case "ReplicaSet":
		out := []owner{{"ReplicaSet", ref.Name}}
		if h := pod.Labels["pod-template-hash"]; h != "" && strings.HasSuffix(ref.Name, "-"+h) {
			out = append(out, owner{"Deployment", strings.TrimSuffix(ref.Name, "-"+h)})
		}
		return out, nil
	}
	return nil, nil
}

func statefulSetOrdinal(pod *corev1.Pod, set string) *int32 {
	if v, ok := pod.Labels["apps.kubernetes.io/pod-index"]; ok {
		if n, err := strconv.ParseInt(v, 10, 32); err == nil && n >= 0 {
			o := int32(n)
			return &o
		}
	}
	if pod.Name != "" && strings.HasPrefix(pod.Name, set+"-") {
		if n, err := strconv.ParseInt(strings.TrimPrefix(pod.Name, set+"-"), 10, 32); err == nil && n >= 0 {
			o := int32(n)
			return &o
		}
	}
	return nil
}

// matches tells whether a PodRestore is for one of the owners.
func matches(pr *agentv1alpha1.PodRestore, owners []owner) bool {
	for _, o := range owners {
		if pr.Spec.Workload.Kind == o.Kind && pr.Spec.Workload.Name == o.Name {
			return true
		}
	}
	return false
}

// pending tells whether a PodRestore still accepts claims.
func pending(pr *agentv1alpha1.PodRestore) bool {
	return pr.DeletionTimestamp == nil && pr.Status.Phase != agentv1alpha1.PodRestoreFailed &&
		pr.Status.Phase != agentv1alpha1.PodRestoreRestored
}

// findClaim returns the claim with key, if any.
func findClaim(pr *agentv1alpha1.PodRestore, key string) *agentv1alpha1.RestoreClaim {
	for i := range pr.Status.Claims {
		if pr.Status.Claims[i].Key == key {
			return &pr.Status.Claims[i]
		}
	}
	return nil
}

// pick chooses the checkpoint for a new pod: the one of its ordinal when both
// have one, else the first unclaimed one (spec order). nil when none is left.
func pick(pr *agentv1alpha1.PodRestore, ordinal *int32) *agentv1alpha1.RestoreCheckpoint {
	claimed := map[string]bool{}
	for _, c := range pr.Status.Claims {
		claimed[c.Checkpoint] = true
	}
	if ordinal != nil {
		for i := range pr.Spec.Checkpoints {
			cp := &pr.Spec.Checkpoints[i]
			if cp.Ordinal != nil && *cp.Ordinal == *ordinal {
				if claimed[cp.Name] {
					return nil
				}
				return cp
			}
		}
	}
	for i := range pr.Spec.Checkpoints {
		cp := &pr.Spec.Checkpoints[i]
		if claimed[cp.Name] {
			continue
		}
		// A checkpoint with an ordinal is reserved for that ordinal's pod.
		if ordinal != nil && cp.Ordinal != nil {
			continue
		}
		return cp
	}
	return nil
}

func checkpointByName(pr *agentv1alpha1.PodRestore, name string) *agentv1alpha1.RestoreCheckpoint {
	for i := range pr.Spec.Checkpoints {
		if pr.Spec.Checkpoints[i].Name == name {
			return &pr.Spec.Checkpoints[i]
		}
	}
	return nil
}

// rewrite points the pod's containers at the checkpoint images, labels and
// annotates it, and pins it to the restore's node when one is named. When
// the checkpoint's images are not recorded yet (the push still runs), it
// leaves the images alone and gates the pod instead: scheduling gates can
// only be added at creation, and a gated pod is neither scheduled nor run
// until the restore controller sets its images and removes the gate.
func rewrite(pod *corev1.Pod, pr *agentv1alpha1.PodRestore, cp *agentv1alpha1.RestoreCheckpoint, key string) {
	if ImagesRecorded(cp) {
		SetImages(pod, cp)
	} else if !Gated(pod) {
		pod.Spec.SchedulingGates = append(pod.Spec.SchedulingGates, corev1.PodSchedulingGate{Name: agentv1alpha1.SchedulingGateCheckpointImage})
	}
	if pod.Annotations == nil {
		pod.Annotations = map[string]string{}
	}
	pod.Annotations[agentv1alpha1.AnnotationRestore] = pr.Name
	pod.Annotations[agentv1alpha1.AnnotationRestoreCheckpoint] = cp.Name
	pod.Annotations[agentv1alpha1.AnnotationRestoreClaim] = key
	if pod.Labels == nil {
		pod.Labels = map[string]string{}
	}
	pod.Labels[agentv1alpha1.LabelRestoredFrom] = pr.Name
	if pr.Spec.NodeName != "" {
		pinToNode(pod, pr.Spec.NodeName)
	}
}

func pinToNode(pod *corev1.Pod, node string) {
	req := corev1.NodeSelectorRequirement{Key: "metadata.name", Operator: corev1.NodeSelectorOpIn, Values: []string{node}}
	if pod.Spec.Affinity == nil {
		pod.Spec.Affinity = &corev1.Affinity{}
	}
	if pod.Spec.Affinity.NodeAffinity == nil {
		pod.Spec.Affinity.NodeAffinity = &corev1.NodeAffinity{}
	}
	na := pod.Spec.Affinity.NodeAffinity
	if na.RequiredDuringSchedulingIgnoredDuringExecution == nil || len(na.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms) == 0 {
		na.RequiredDuringSchedulingIgnoredDuringExecution = &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{}}}
	}
	terms := na.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
	for i := range terms {
		terms[i].MatchFields = append(terms[i].MatchFields, req)
	}
}
