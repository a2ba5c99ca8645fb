package migration

import (
	"context"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/types"

	workv1alpha2 "github.com/karmada-io/karmada/pkg/apis/work/v1alpha2"

	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
	"github.com/livemigrate/livemigrate/descheduler/placement"
)

// Migration is what a hook is told about the migration it works for. Every
// hook call must be idempotent and keyed by UID: the controller calls the same
// method again after a restart or a requeue, and expects the same answer.
type Migration struct {
	UID       types.UID
	Namespace string
	Name      string
	Workload  lmv1alpha1.WorkloadReference
	Source    string
	Target    string
	// BandwidthLimit in bytes per second; 0 means unlimited.
	BandwidthLimit int64
}

// Pod is one source pod of the workload.
type Pod struct {
	Name       string
	Node       string
	Containers []string
	// Ordinal is the StatefulSet ordinal, nil for other workloads.
	Ordinal *int32
}

// Volume is one persistent volume claim of the workload.
type Volume struct {
	ClaimName    string
	StorageClass string
	// Pod mounting the claim in the source cluster, and its node.
	Pod  string
	Node string
}

// CheckpointState is what the checkpoint backend reports for one pod.
type CheckpointState struct {
	// Frozen is true once the pod's cgroup is frozen.
	Frozen bool
	// FrozenAt is when the backend froze the pod, by its own clock (zero
	// when it does not say): the downtime starts at the earliest of them.
	FrozenAt time.Time
	// Checkpointed is true once every container's archive was taken.
	Checkpointed bool
	// Pushed is true once every checkpoint image is in the registry.
	Pushed bool
	// Bytes is the total size of the pod's archives.
	Bytes int64
	// Images maps container name to checkpoint image (set once Pushed).
	Images map[string]string
	// Message is a progress note for status.
	Message string
}

// CheckpointHook freezes, checkpoints and transfers one source pod, and thaws
// or releases it afterwards. Freeze, Checkpoint and Transfer request the step
// (if not requested yet) and report the pod's state; they return a
// StepFailedError when the backend gave up.
type CheckpointHook interface {
	// EstimateSize returns the expected checkpoint size of the pod in bytes.
	EstimateSize(ctx context.Context, m Migration, pod Pod) (int64, error)
	Freeze(ctx context.Context, m Migration, pod Pod) (CheckpointState, error)
	Checkpoint(ctx context.Context, m Migration, pod Pod) (CheckpointState, error)
	Transfer(ctx context.Context, m Migration, pod Pod) (CheckpointState, error)
	// Thaw lets a frozen source pod continue (rollback); done once it runs again
	// or was never frozen.
	Thaw(ctx context.Context, m Migration, pod Pod) (done bool, err error)
	// Release deletes the pod's checkpoint archives and images (success).
	Release(ctx context.Context, m Migration, pod Pod) (done bool, err error)
}

// ReplicationState is what a replication backend reports for one volume.
type ReplicationState struct {
	// Rounds of pre-copy done (the full pass included).
	Rounds int32
	// LastDeltaBytes is the size of the last pre-copy pass.
	LastDeltaBytes int64
	// PreCopyBytes is the total sent during pre-copy.
	PreCopyBytes int64
	// BytesPerSecond is the measured throughput, 0 when unknown.
	BytesPerSecond int64
	// PreCopyDone is true once the delta converged under the threshold or the
	// round limit was hit; the backend keeps the volume in sync until FinalSync.
	PreCopyDone bool
	// PendingBytes estimates what the final sync would send now.
	PendingBytes int64
	// Synced is true once the final sync finished.
	Synced bool
	// FinalDeltaBytes is what the final sync sent.
	FinalDeltaBytes int64
	Message         string
}

// PreCopyOptions are the pre-copy settings of a migration.
type PreCopyOptions struct {
	ConvergenceThresholdBytes int64
	MaxRounds                 int32
}

// AbortOptions tune ReplicationHook.Abort.
type AbortOptions struct {
	// Force removes what the hook created without waiting any longer for
	// its agents to confirm that replication stopped: a rollback sets it
	// once the source runs again and the confirmation did not come within
	// Config.AbortWait (a dead or partitioned node never confirms).
	Force bool
}

// ReplicationHook replicates one volume to the target cluster. PreCopy and
// FinalSync request the step and report progress; Progress only reports.
type ReplicationHook interface {
	PreCopy(ctx context.Context, m Migration, vol Volume, opts PreCopyOptions) (ReplicationState, error)
	FinalSync(ctx context.Context, m Migration, vol Volume) (ReplicationState, error)
	Progress(ctx context.Context, m Migration, vol Volume) (ReplicationState, error)
	// Abort stops replication and removes the target copy (rollback).
	Abort(ctx context.Context, m Migration, vol Volume, opts AbortOptions) (done bool, err error)
	// Complete ends replication and keeps the target copy (success).
	Complete(ctx context.Context, m Migration, vol Volume) (done bool, err error)
}

// ReplicationHooks selects the replication backend of a StorageClass, so that
// a storage array's replication or VolSync can serve some classes while the
// agent serves the others.
type ReplicationHooks interface {
	For(storageClass string) (ReplicationHook, error)
}

// ReplicationByStorageClass is a ReplicationHooks backed by a map, with a
// fallback for classes it does not name.
type ReplicationByStorageClass struct {
	ByClass map[string]ReplicationHook
	Default ReplicationHook
}

// For returns the backend of the class, or the default one.
func (r ReplicationByStorageClass) For(storageClass string) (ReplicationHook, error) {
	if h, ok := r.ByClass[storageClass]; ok {
		return h, nil
	}
	if r.Default != nil {
		return r.Default, nil
	}
	return nil, NewStepFailedError(lmv1alpha1.ReasonUnsupported, fmt.Sprintf("no volume replication backend for StorageClass %q", storageClass))
}

// PodCheckpoint is one checkpointed source pod handed to the restore step.
type PodCheckpoint struct {
	Pod    Pod
	Images map[string]string
}

// RestoreState is what the restore backend reports.
type RestoreState struct {
	// Restored lists the checkpoints (source pod names) a target pod restored from.
	Restored map[string]bool
	// Unmutated names the target pods of the workload that were admitted
	// without being pointed at a checkpoint: the restore webhook is down or
	// misconfigured and its failure policy (Ignore) let them in as fresh
	// starts. Such a pod never restores, so the migration fails at once,
	// in every phase the target workload exists in.
	Unmutated []string
	// Ungated names the target pods that claimed a checkpoint but are
	// neither held by the checkpoint-image scheduling gate nor running
	// the checkpoint's images (a webhook that did not gate them while the
	// images were pushed): they started fresh, so Restoring fails at once.
	Ungated []string
	// UnreadyNodes names the target nodes the restore runs on (or is
	// pinned to) whose Ready condition is not True: the restore fails at
	// once instead of at the Restoring timeout; the rollback still thaws
	// the source only once the target pods are confirmed gone.
	UnreadyNodes []string
	Message      string
}

// RestoreHook makes the target workload's new pods restore from the
// checkpoint images.
type RestoreHook interface {
	// Prepare records the checkpoints in the target cluster before the
	// workload is created there (Rebinding, at the freeze: the checkpoints'
	// images are not pushed yet, and the target pods that claim them wait,
	// gated, unscheduled), and is called again with the images once they
	// are pushed (Transfer), which releases those pods. It only ever adds
	// images: an image once recorded is never changed.
	Prepare(ctx context.Context, m Migration, checkpoints []PodCheckpoint) error
	Status(ctx context.Context, m Migration) (RestoreState, error)
	// Remove deletes the restore records; done once gone.
	Remove(ctx context.Context, m Migration) (done bool, err error)
}

// WorkloadInfo is what a member cluster runs for a workload.
type WorkloadInfo struct {
	Pods    []Pod
	Volumes []Volume
}

// WorkloadHook reads and removes the workload in member clusters.
type WorkloadHook interface {
	Inspect(ctx context.Context, cluster, namespace string, ref lmv1alpha1.WorkloadReference) (WorkloadInfo, error)
	// Ready reports whether the workload runs with every replica Ready.
	Ready(ctx context.Context, cluster, namespace string, ref lmv1alpha1.WorkloadReference) (bool, error)
	// Remove deletes the workload and its pods from the cluster; done once gone.
	Remove(ctx context.Context, cluster, namespace string, ref lmv1alpha1.WorkloadReference) (gone bool, err error)
}

// TargetPicker picks the target cluster when spec.targetCluster is empty.
type TargetPicker interface {
	Plan(ctx context.Context, binding *workv1alpha2.ResourceBinding, source string) (*placement.Plan, error)
}

// CompatibilityHook checks, before anything is touched, that the target
// cluster can restore checkpoints of the source pods (architecture, OS,
// container runtime). It returns a StepFailedError saying why not.
type CompatibilityHook interface {
	Check(ctx context.Context, m Migration, pods []Pod) error
}

// MemberWatcher starts watching a member cluster's objects for the
// migrations that touch it (optional: without it phases advance by polling).
type MemberWatcher interface {
	Watch(ctx context.Context, cluster string) error
}

// Hooks bundles the side effects of the state machine.
type Hooks struct {
	Checkpoint  CheckpointHook
	Replication ReplicationHooks
	Restore     RestoreHook
	Workload    WorkloadHook
	Picker      TargetPicker
	Watcher     MemberWatcher
	// Compatibility is optional.
	Compatibility CompatibilityHook
	// SourceClaims is optional: without it the source claims are left
	// untouched after a successful migration.
	SourceClaims SourceClaimHook
}
