package v1alpha1

// Reasons a LiveMigration fails with: status.failure.reason, also the reason
// of the Warning event that reports the failure. Each is CamelCase and says
// what went wrong; status.failure.message says with what and what to do.
const (
	// ReasonAborted: spec.abort was set or the LiveMigration was deleted.
	ReasonAborted = "Aborted"
	// ReasonInvalidSpec: the controller cannot act on the spec (each field
	// and what to write is in the message); nothing was touched.
	ReasonInvalidSpec = "InvalidSpec"
	// ReasonTimeout: a phase did not finish within its timeout.
	ReasonTimeout = "Timeout"
	// ReasonBudgetExceeded: the estimated downtime does not fit
	// spec.downtimeBudget, or cannot be estimated; nothing was frozen.
	ReasonBudgetExceeded = "BudgetExceeded"
	// ReasonError: an error the controller has no more specific reason for.
	ReasonError = "Error"

	// ReasonBindingNotFound: the workload's ResourceBinding does not exist or
	// disappeared during the migration.
	ReasonBindingNotFound = "BindingNotFound"
	// ReasonBindingChanged: the ResourceBinding moved to another cluster
	// before the rebinding.
	ReasonBindingChanged = "BindingChanged"
	// ReasonRescheduled: karmada-scheduler placed the workload elsewhere
	// after the rebinding.
	ReasonRescheduled = "Rescheduled"
	// ReasonNotOnOneCluster: the workload is not scheduled to exactly one
	// member cluster.
	ReasonNotOnOneCluster = "NotOnOneCluster"
	// ReasonMigrationInProgress: another LiveMigration already acts on the
	// workload.
	ReasonMigrationInProgress = "MigrationInProgress"
	// ReasonNoTarget: no target cluster was given and none can take the
	// workload.
	ReasonNoTarget = "NoTarget"
	// ReasonTargetIsSource: the target cluster is the one the workload runs on.
	ReasonTargetIsSource = "TargetIsSource"
	// ReasonTargetNotFound: the target is not a member cluster.
	ReasonTargetNotFound = "TargetNotFound"
	// ReasonTargetNotReady: the target member cluster is not Ready.
	ReasonTargetNotReady = "TargetNotReady"
	// ReasonIncompatible: no node of the target can restore the source
	// pods' checkpoints (architecture, OS, container runtime).
	ReasonIncompatible = "Incompatible"
	// ReasonUnsupportedKind: the workload is neither a Deployment nor a
	// StatefulSet.
	ReasonUnsupportedKind = "UnsupportedKind"
	// ReasonWorkloadNotFound: the workload does not exist in the source
	// cluster.
	ReasonWorkloadNotFound = "WorkloadNotFound"
	// ReasonBadSelector: the workload has no usable pod selector.
	ReasonBadSelector = "BadSelector"
	// ReasonNoPods: the workload has no running pod in the source cluster.
	ReasonNoPods = "NoPods"
	// ReasonUnsupported: a volume's StorageClass has no replication backend.
	ReasonUnsupported = "Unsupported"

	// ReasonTargetClaim: the target claim could not be pre-provisioned.
	ReasonTargetClaim = "TargetClaim"
	// ReasonTargetClaimExists: a claim of the same name, not one this
	// migration may adopt, exists in the target.
	ReasonTargetClaimExists = "TargetClaimExists"
	// ReasonTargetClaimInUse: the target claim is used by another migration.
	ReasonTargetClaimInUse = "TargetClaimInUse"
	// ReasonReplicationSecretConflict: the replication credentials' Secret
	// exists and belongs to something else.
	ReasonReplicationSecretConflict = "ReplicationSecretConflict"
	// ReasonNoTargetNode: the target cluster has no Ready schedulable node to
	// receive the volumes.
	ReasonNoTargetNode = "NoTargetNode"
	// ReasonNoSourceNode: no running source pod mounts a claim to replicate.
	ReasonNoSourceNode = "NoSourceNode"
	// ReasonReplicationFailed: an agent reported a volume replication Failed.
	ReasonReplicationFailed = "ReplicationFailed"
	// ReasonTargetVolumeTooSmall: before the first pass, the target had no
	// room (bytes or inodes) for what a source volume occupies; nothing was
	// written. The message says how much is needed and available.
	ReasonTargetVolumeTooSmall = "TargetVolumeTooSmall"
	// ReasonReplicationAborted: an agent aborted a volume replication.
	ReasonReplicationAborted = "ReplicationAborted"
	// ReasonReplicationGone: a VolumeReplication disappeared before the final
	// sync.
	ReasonReplicationGone = "ReplicationGone"
	// ReasonChecksumMismatch: a volume differs on the target after the final
	// sync.
	ReasonChecksumMismatch = "ChecksumMismatch"

	// ReasonPodGone: a source pod disappeared before it was checkpointed.
	ReasonPodGone = "PodGone"
	// ReasonCheckpointDeleted: a PodCheckpoint was deleted during the
	// migration.
	ReasonCheckpointDeleted = "CheckpointDeleted"
	// ReasonCheckpointFailed: an agent reported a PodCheckpoint Failed.
	ReasonCheckpointFailed = "CheckpointFailed"
	// ReasonNoCheckpointImage: a checkpoint was reported pushed without an
	// image.
	ReasonNoCheckpointImage = "NoCheckpointImage"

	// ReasonRestoreGone: the PodRestore in the target cluster was deleted.
	ReasonRestoreGone = "RestoreGone"
	// ReasonRestoreFailed: a target pod could not be restored from its
	// checkpoint.
	ReasonRestoreFailed = "RestoreFailed"
	// ReasonRestoreWebhookBypassed: a target pod was admitted without the
	// restore webhook's rewrite (webhook down or misconfigured).
	ReasonRestoreWebhookBypassed = "RestoreWebhookBypassed"
)
