// Package trigger holds what the descheduler's triggers (maintenance,
// rebalance) share: the LiveMigration a trigger creates for a workload, the
// workload's template as the object its events are about, and the
// first-order size of what a move of it sends.
package trigger

import (
	"strings"

	workv1alpha2 "github.com/karmada-io/karmada/pkg/apis/work/v1alpha2"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
	"github.com/livemigrate/livemigrate/descheduler/policy"
)

// NewLiveMigration returns the LiveMigration a trigger creates to move the
// workload rb propagates to target: named after the workload and the
// trigger (generateName <name>-<suffix>-), labelled with the trigger and
// labels, annotated with the reason, with the workload policy's downtime
// budget and memory transfer (a nil policy, or a value it does not set,
// leaves the controller's default).
func NewLiveMigration(rb *workv1alpha2.ResourceBinding, target string, t policy.Trigger, suffix string,
	labels map[string]string, reason string, pol *policy.Policy) *lmv1alpha1.LiveMigration {
	ref := rb.Spec.Resource
	l := map[string]string{policy.LabelTrigger: string(t)}
	for k, v := range labels {
		l[k] = v
	}
	lm := &lmv1alpha1.LiveMigration{
		ObjectMeta: metav1.ObjectMeta{
			Namespace:    rb.Namespace,
			GenerateName: namePrefix(ref.Name, 40) + "-" + suffix + "-",
			Labels:       l,
			Annotations:  map[string]string{policy.AnnotationReason: reason},
		},
		Spec: lmv1alpha1.LiveMigrationSpec{
			WorkloadRef:   lmv1alpha1.WorkloadReference{APIVersion: "apps/v1", Kind: ref.Kind, Name: ref.Name},
			TargetCluster: target,
		},
	}
	pol.ApplyTo(&lm.Spec)
	return lm
}

// TemplateOf is the resource template rb propagates, as the object of the
// triggers' events.
func TemplateOf(rb *workv1alpha2.ResourceBinding) *metav1.PartialObjectMetadata {
	ref := rb.Spec.Resource
	return &metav1.PartialObjectMetadata{TypeMeta: metav1.TypeMeta{APIVersion: ref.APIVersion, Kind: ref.Kind},
		ObjectMeta: metav1.ObjectMeta{Namespace: rb.Namespace, Name: ref.Name, UID: ref.UID}}
}

// namePrefix is the first n bytes of a Kubernetes name (ASCII), with no
// trailing dash or dot.
func namePrefix(name string, n int) string {
	if len(name) > n {
		name = strings.TrimRight(name[:n], "-.")
	}
	return name
}

// CheckpointBytes is a first-order size of the workload's checkpoints: the
// binding's per-replica memory request (fallback per replica without one)
// times its replicas (at least one).
func CheckpointBytes(rb *workv1alpha2.ResourceBinding, fallback int64) int64 {
	perReplica := fallback
	if rr := rb.Spec.ReplicaRequirements; rr != nil {
		if q, ok := rr.ResourceRequest[corev1.ResourceMemory]; ok && q.Value() > 0 {
			perReplica = q.Value()
		}
	}
	return perReplica * max(int64(rb.Spec.Replicas), 1)
}
