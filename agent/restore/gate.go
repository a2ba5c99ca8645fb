package restore

import (
	corev1 "k8s.io/api/core/v1"

	agentv1alpha1 "github.com/livemigrate/livemigrate/api/agent/v1alpha1"
)

// ImagesRecorded reports whether every container of the checkpoint has its
// checkpoint image recorded (the push is done).
func ImagesRecorded(cp *agentv1alpha1.RestoreCheckpoint) bool {
	if len(cp.Containers) == 0 {
		return false
	}
	for _, c := range cp.Containers {
		if c.Image == "" {
			return false
		}
	}
	return true
}

// SetImages points the pod's containers at the checkpoint's images and
// reports whether it changed any.
func SetImages(pod *corev1.Pod, cp *agentv1alpha1.RestoreCheckpoint) bool {
	images := map[string]string{}
	for _, c := range cp.Containers {
		if c.Image != "" {
			images[c.Name] = c.Image
		}
	}
	changed := false
	for i := range pod.Spec.Containers {
		if img, ok := images[pod.Spec.Containers[i].Name]; ok && pod.Spec.Containers[i].Image != img {
			pod.Spec.Containers[i].Image = img
			changed = true
		}
	}
	return changed
}

// Gated reports whether the pod waits for its checkpoint images.
func Gated(pod *corev1.Pod) bool {
	for _, g := range pod.Spec.SchedulingGates {
		if g.Name == agentv1alpha1.SchedulingGateCheckpointImage {
			return true
		}
	}
	return false
}

// Ungate removes the checkpoint-image scheduling gate and reports whether
// the pod had it.
func Ungate(pod *corev1.Pod) bool {
	gates := pod.Spec.SchedulingGates[:0:0]
	for _, g := range pod.Spec.SchedulingGates {
		if g.Name != agentv1alpha1.SchedulingGateCheckpointImage {
			gates = append(gates, g)
		}
	}
	if len(gates) == len(pod.Spec.SchedulingGates) {
		return false
	}
	if len(gates) == 0 {
		gates = nil
	}
	pod.Spec.SchedulingGates = gates
	return true
}
