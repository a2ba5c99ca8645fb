package scenario

import corev1 "k8s.io/api/core/v1"

// PodOf locates a pod's lab app on the host: its state directory, its
// output and its freezer cgroup, from the pod's node and UID. Its Layout
// is unset until the caller reads it (labstate.ReadLayout of StateDir),
// which succeeds once the lab app runs.
func (e *Env) PodOf(cluster string, pod *corev1.Pod) *Pod { return e.podOf(cluster, pod) }
