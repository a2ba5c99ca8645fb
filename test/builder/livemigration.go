package builder

import (
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	clusterv1alpha1 "github.com/karmada-io/karmada/pkg/apis/cluster/v1alpha1"

	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
)

// LiveMigrationWrapper builds a LiveMigration.
type LiveMigrationWrapper struct{ lmv1alpha1.LiveMigration }

// MakeLiveMigration starts a LiveMigration of the Deployment workload in namespace.
func MakeLiveMigration(namespace, name, workload string) *LiveMigrationWrapper {
	return &LiveMigrationWrapper{lmv1alpha1.LiveMigration{
		TypeMeta:   metav1.TypeMeta{APIVersion: lmv1alpha1.GroupVersion.String(), Kind: "LiveMigration"},
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, UID: types.UID("uid-" + name), Generation: 1},
		Spec: lmv1alpha1.LiveMigrationSpec{
			WorkloadRef: lmv1alpha1.WorkloadReference{APIVersion: "apps/v1", Kind: "Deployment", Name: workload},
		},
	}}
}

// Kind sets the workload kind.
func (w *LiveMigrationWrapper) Kind(kind string) *LiveMigrationWrapper {
	w.Spec.WorkloadRef.Kind = kind
	return w
}

// Target sets spec.targetCluster.
func (w *LiveMigrationWrapper) Target(c string) *LiveMigrationWrapper {
	w.Spec.TargetCluster = c
	return w
}

// Budget sets spec.downtimeBudget.
func (w *LiveMigrationWrapper) Budget(d time.Duration) *LiveMigrationWrapper {
	w.Spec.DowntimeBudget = &metav1.Duration{Duration: d}
	return w
}

// MemoryTransfer sets spec.memoryTransfer.
func (w *LiveMigrationWrapper) MemoryTransfer(m lmv1alpha1.MemoryTransfer) *LiveMigrationWrapper {
	w.Spec.MemoryTransfer = m
	return w
}

// Bandwidth sets spec.bandwidthLimit.
func (w *LiveMigrationWrapper) Bandwidth(q string) *LiveMigrationWrapper {
	v := resource.MustParse(q)
	w.Spec.BandwidthLimit = &v
	return w
}

// Timeout sets one phase timeout.
func (w *LiveMigrationWrapper) Timeout(p lmv1alpha1.LiveMigrationPhase, d time.Duration) *LiveMigrationWrapper {
	if w.Spec.Timeouts == nil {
		w.Spec.Timeouts = &lmv1alpha1.PhaseTimeouts{}
	}
	v := &metav1.Duration{Duration: d}
	switch p {
	case lmv1alpha1.PhasePlanning:
		w.Spec.Timeouts.Planning = v
	case lmv1alpha1.PhasePreCopy:
		w.Spec.Timeouts.PreCopy = v
	case lmv1alpha1.PhaseCheckpointing:
		w.Spec.Timeouts.Checkpointing = v
	case lmv1alpha1.PhaseFinalSync:
		w.Spec.Timeouts.FinalSync = v
	case lmv1alpha1.PhaseTransfer:
		w.Spec.Timeouts.Transfer = v
	case lmv1alpha1.PhaseRebinding:
		w.Spec.Timeouts.Rebinding = v
	case lmv1alpha1.PhaseRestoring:
		w.Spec.Timeouts.Restoring = v
	case lmv1alpha1.PhaseVerifying:
		w.Spec.Timeouts.Verifying = v
	}
	return w
}

// Abort sets spec.abort.
func (w *LiveMigrationWrapper) Abort() *LiveMigrationWrapper {
	w.Spec.Abort = true
	return w
}

// Phase sets status.phase, entered at the given time.
func (w *LiveMigrationWrapper) Phase(p lmv1alpha1.LiveMigrationPhase, at time.Time) *LiveMigrationWrapper {
	w.Status.Phase = p
	w.Status.PhaseTransitions = append(w.Status.PhaseTransitions, lmv1alpha1.PhaseTransition{Phase: p, EnteredAt: metav1.NewMicroTime(at)})
	return w
}

// Clusters sets status.sourceCluster and status.targetCluster.
func (w *LiveMigrationWrapper) Clusters(source, target string) *LiveMigrationWrapper {
	w.Status.SourceCluster, w.Status.TargetCluster = source, target
	return w
}

// Obj returns the built LiveMigration.
func (w *LiveMigrationWrapper) Obj() *lmv1alpha1.LiveMigration { return &w.LiveMigration }

// Ready marks a Cluster Ready (or not).
func Ready(c *clusterv1alpha1.Cluster, ready bool) *clusterv1alpha1.Cluster {
	st := metav1.ConditionFalse
	if ready {
		st = metav1.ConditionTrue
	}
	meta.SetStatusCondition(&c.Status.Conditions, metav1.Condition{Type: clusterv1alpha1.ClusterConditionReady, Status: st, Reason: "Test"})
	return c
}

// Push marks a Cluster as a push-mode member at endpoint with credentials in
// the karmada-cluster Secret named after it, and returns that Secret.
func Push(c *clusterv1alpha1.Cluster, endpoint string) (*clusterv1alpha1.Cluster, *corev1.Secret) {
	c.Spec.SyncMode = clusterv1alpha1.Push
	c.Spec.APIEndpoint = endpoint
	c.Spec.SecretRef = &clusterv1alpha1.LocalSecretReference{Namespace: "karmada-cluster", Name: c.Name}
	sec := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: "karmada-cluster", Name: c.Name},
		Data: map[string][]byte{
			clusterv1alpha1.SecretTokenKey:  []byte("token-" + c.Name),
			clusterv1alpha1.SecretCADataKey: []byte("ca-" + c.Name),
		},
	}
	return c, sec
}
