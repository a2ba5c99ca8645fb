package builder

import (
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	agentv1alpha1 "github.com/livemigrate/livemigrate/api/agent/v1alpha1"
)

// PodCheckpointWrapper builds an agentv1alpha1.PodCheckpoint.
type PodCheckpointWrapper struct{ agentv1alpha1.PodCheckpoint }

// MakePodCheckpoint starts a PodCheckpoint namespace/name of pod podName on
// node, for migration migrationUID. Fields the API server defaults (action,
// timeoutSeconds) are left empty, so that a test of the defaults can build
// its object here too.
func MakePodCheckpoint(namespace, name, node, podName, migrationUID string) *PodCheckpointWrapper {
	return &PodCheckpointWrapper{agentv1alpha1.PodCheckpoint{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec: agentv1alpha1.PodCheckpointSpec{
			NodeName: node, PodName: podName, MigrationUID: migrationUID,
		},
	}}
}

// PodUID sets spec.podUID.
func (w *PodCheckpointWrapper) PodUID(uid string) *PodCheckpointWrapper {
	w.Spec.PodUID = uid
	return w
}

// Containers sets spec.containers.
func (w *PodCheckpointWrapper) Containers(names ...string) *PodCheckpointWrapper {
	w.Spec.Containers = names
	return w
}

// Repository sets spec.destination.repository.
func (w *PodCheckpointWrapper) Repository(repo string) *PodCheckpointWrapper {
	w.Spec.Destination.Repository = repo
	return w
}

// Insecure sets spec.destination.insecure.
func (w *PodCheckpointWrapper) Insecure() *PodCheckpointWrapper {
	w.Spec.Destination.Insecure = true
	return w
}

// Action sets spec.action.
func (w *PodCheckpointWrapper) Action(a agentv1alpha1.CheckpointAction) *PodCheckpointWrapper {
	w.Spec.Action = a
	return w
}

// TimeoutSeconds sets spec.timeoutSeconds.
func (w *PodCheckpointWrapper) TimeoutSeconds(s int32) *PodCheckpointWrapper {
	w.Spec.TimeoutSeconds = s
	return w
}

// Created sets metadata.creationTimestamp.
func (w *PodCheckpointWrapper) Created(at time.Time) *PodCheckpointWrapper {
	w.CreationTimestamp = metav1.NewTime(at)
	return w
}

// Obj returns the built PodCheckpoint.
func (w *PodCheckpointWrapper) Obj() *agentv1alpha1.PodCheckpoint { return &w.PodCheckpoint }

// PodRestoreWrapper builds an agentv1alpha1.PodRestore.
type PodRestoreWrapper struct{ agentv1alpha1.PodRestore }

// MakePodRestore starts a PodRestore namespace/name for migration
// migrationUID of the apps/v1 workload kind/workload.
func MakePodRestore(namespace, name, migrationUID, kind, workload string) *PodRestoreWrapper {
	return &PodRestoreWrapper{agentv1alpha1.PodRestore{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec: agentv1alpha1.PodRestoreSpec{
			MigrationUID: migrationUID,
			Workload:     agentv1alpha1.WorkloadReference{APIVersion: "apps/v1", Kind: kind, Name: workload},
		},
	}}
}

// WorkloadAPIVersion sets spec.workload.apiVersion.
func (w *PodRestoreWrapper) WorkloadAPIVersion(v string) *PodRestoreWrapper {
	w.Spec.Workload.APIVersion = v
	return w
}

// Checkpoint appends a checkpoint with its ordinal (nil: none) and its
// containers' name and image pairs ("app", "reg/x@sha256:...", ...); an
// empty image is one not pushed yet.
func (w *PodRestoreWrapper) Checkpoint(name string, ordinal *int32, nameImagePairs ...string) *PodRestoreWrapper {
	c := agentv1alpha1.RestoreCheckpoint{Name: name, Ordinal: ordinal}
	for i := 0; i+1 < len(nameImagePairs); i += 2 {
		c.Containers = append(c.Containers, agentv1alpha1.ContainerImage{Name: nameImagePairs[i], Image: nameImagePairs[i+1]})
	}
	w.Spec.Checkpoints = append(w.Spec.Checkpoints, c)
	return w
}

// Node sets spec.nodeName.
func (w *PodRestoreWrapper) Node(n string) *PodRestoreWrapper {
	w.Spec.NodeName = n
	return w
}

// Created sets metadata.creationTimestamp.
func (w *PodRestoreWrapper) Created(at time.Time) *PodRestoreWrapper {
	w.CreationTimestamp = metav1.NewTime(at)
	return w
}

// Phase sets status.phase.
func (w *PodRestoreWrapper) Phase(p agentv1alpha1.PodRestorePhase) *PodRestoreWrapper {
	w.Status.Phase = p
	return w
}

// Claims sets status.claims.
func (w *PodRestoreWrapper) Claims(claims ...agentv1alpha1.RestoreClaim) *PodRestoreWrapper {
	w.Status.Claims = claims
	return w
}

// Obj returns the built PodRestore.
func (w *PodRestoreWrapper) Obj() *agentv1alpha1.PodRestore { return &w.PodRestore }

// VolumeReplicationWrapper builds an agentv1alpha1.VolumeReplication.
type VolumeReplicationWrapper struct {
	agentv1alpha1.VolumeReplication
}

// MakeVolumeReplication starts a VolumeReplication namespace/name of the
// claim claimName for migration migrationUID, by the agent of node in role.
func MakeVolumeReplication(namespace, name, migrationUID string, role agentv1alpha1.ReplicationRole, node, claimName string) *VolumeReplicationWrapper {
	return &VolumeReplicationWrapper{agentv1alpha1.VolumeReplication{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec: agentv1alpha1.VolumeReplicationSpec{
			MigrationUID: migrationUID, Role: role, NodeName: node, ClaimName: claimName,
		},
	}}
}

// Peer sets spec.peerAddress.
func (w *VolumeReplicationWrapper) Peer(address string) *VolumeReplicationWrapper {
	w.Spec.PeerAddress = address
	return w
}

// TLSSecret sets spec.tlsSecretRef: a Secret of the agent's namespace.
func (w *VolumeReplicationWrapper) TLSSecret(name string) *VolumeReplicationWrapper {
	w.Spec.TLSSecretRef = corev1.SecretReference{Name: name}
	return w
}

// PreCopy sets spec.preCopy's rounds and, when not nil, its convergence
// threshold.
func (w *VolumeReplicationWrapper) PreCopy(maxRounds int32, threshold *resource.Quantity) *VolumeReplicationWrapper {
	w.Spec.PreCopy = agentv1alpha1.ReplicationPreCopy{MaxRounds: maxRounds, ConvergenceThreshold: threshold}
	return w
}

// Stage sets spec.stage.
func (w *VolumeReplicationWrapper) Stage(s agentv1alpha1.ReplicationStage) *VolumeReplicationWrapper {
	w.Spec.Stage = s
	return w
}

// Generation sets metadata.generation.
func (w *VolumeReplicationWrapper) Generation(g int64) *VolumeReplicationWrapper {
	w.ObjectMeta.Generation = g
	return w
}

// Obj returns the built VolumeReplication.
func (w *VolumeReplicationWrapper) Obj() *agentv1alpha1.VolumeReplication {
	return &w.VolumeReplication
}
