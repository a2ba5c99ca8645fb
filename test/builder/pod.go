package builder

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
)

// PodWrapper builds a corev1.Pod.
type PodWrapper struct{ corev1.Pod }

// MakePod starts a Pod namespace/name without containers.
func MakePod(namespace, name string) *PodWrapper {
	return &PodWrapper{corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}}}
}

// GenerateName sets metadata.generateName and clears the name, as a pod
// its controller creates is sent to admission.
func (w *PodWrapper) GenerateName(prefix string) *PodWrapper {
	w.Name, w.ObjectMeta.GenerateName = "", prefix
	return w
}

// Container appends a container.
func (w *PodWrapper) Container(name, image string) *PodWrapper {
	w.Spec.Containers = append(w.Spec.Containers, corev1.Container{Name: name, Image: image})
	return w
}

// ControlledBy sets the pod's controller: the apps/v1 kind/name.
func (w *PodWrapper) ControlledBy(kind, name string) *PodWrapper {
	w.OwnerReferences = []metav1.OwnerReference{{
		APIVersion: "apps/v1", Kind: kind, Name: name, UID: types.UID("uid-" + name), Controller: ptr.To(true),
	}}
	return w
}

// Label sets a label.
func (w *PodWrapper) Label(k, v string) *PodWrapper {
	if w.Labels == nil {
		w.Labels = map[string]string{}
	}
	w.Labels[k] = v
	return w
}

// Node sets spec.nodeName.
func (w *PodWrapper) Node(n string) *PodWrapper {
	w.Spec.NodeName = n
	return w
}

// Obj returns the built Pod.
func (w *PodWrapper) Obj() *corev1.Pod { return &w.Pod }
