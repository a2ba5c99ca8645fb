package v1alpha1

import (
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// LiveMigrationPhase is one state of the live-migration state machine. The
// happy path is Pending → Planning → PreCopy → Checkpointing → Rebinding →
// FinalSync → Transfer → Restoring → Verifying → Cleanup → Succeeded; any
// failure, timeout or abort before Cleanup leads to RollingBack → Failed.
// +kubebuilder:validation:Enum=Pending;Planning;PreCopy;Checkpointing;FinalSync;Transfer;Rebinding;Restoring;Verifying;Cleanup;Succeeded;RollingBack;Failed
type LiveMigrationPhase string

const (
	PhasePending       LiveMigrationPhase = "Pending"
	PhasePlanning      LiveMigrationPhase = "Planning"
	PhasePreCopy       LiveMigrationPhase = "PreCopy"
	PhaseCheckpointing LiveMigrationPhase = "Checkpointing"
	PhaseFinalSync     LiveMigrationPhase = "FinalSync"
	PhaseTransfer      LiveMigrationPhase = "Transfer"
	PhaseRebinding     LiveMigrationPhase = "Rebinding"
	PhaseRestoring     LiveMigrationPhase = "Restoring"
	PhaseVerifying     LiveMigrationPhase = "Verifying"
	PhaseCleanup       LiveMigrationPhase = "Cleanup"
	PhaseSucceeded     LiveMigrationPhase = "Succeeded"
	PhaseRollingBack   LiveMigrationPhase = "RollingBack"
	PhaseFailed        LiveMigrationPhase = "Failed"
)

// Condition types set on a LiveMigration.
const (
	// ConditionDowntimeBudget is True when the estimated downtime fits
	// spec.downtimeBudget and False (reason BudgetExceeded) when the controller
	// refuses to freeze the workload because it does not.
	ConditionDowntimeBudget = "DowntimeBudgetMet"
	// ConditionSourceFrozen is True while the source pods are frozen.
	ConditionSourceFrozen = "SourceFrozen"
	// ConditionRebound is True while the ResourceBinding points at the target.
	ConditionRebound = "Rebound"
	// ConditionAdmitted is False (reason ConcurrencyLimit) while the migration
	// waits in Pending for the concurrency budget, True once admitted; False
	// (reason InvalidSpec) on a migration the controller failed without
	// acting because it cannot act on its spec.
	ConditionAdmitted = "Admitted"
	// ConditionCompleted is True once the migration reached Succeeded or Failed.
	ConditionCompleted = "Completed"
	// ConditionReplicationStopped is set by a rollback: True once the agents
	// confirmed that volume replication stopped and the target copy was
	// removed; False (reason AgentsUnresponsive) when they did not confirm
	// within the controller's --rollback-abort-wait and the replication
	// objects were deleted without it (the target node may keep partial
	// data of the copy until its agent runs again).
	ConditionReplicationStopped = "ReplicationStopped"
)

// WorkloadReference names the workload to migrate, in the LiveMigration's namespace.
//
// Required fields and allowed values are checked by CEL rules rather than
// required/enum, so that a rejection names every wrong field with what to
// write instead.
// +kubebuilder:validation:XValidation:rule="has(self.kind)",fieldPath=".kind",reason="FieldValueRequired",message="the workload's kind is required: Deployment or StatefulSet"
// +kubebuilder:validation:XValidation:rule="has(self.name)",fieldPath=".name",reason="FieldValueRequired",message="the workload's name is required"
type WorkloadReference struct {
	// APIVersion of the workload.
	// +kubebuilder:validation:XValidation:rule="self == 'apps/v1'",message="must be apps/v1"
	// +kubebuilder:default=apps/v1
	// +optional
	APIVersion string `json:"apiVersion,omitempty"`

	// Kind of the workload: Deployment or StatefulSet. Required.
	// +kubebuilder:validation:XValidation:rule="self in ['Deployment', 'StatefulSet']",message="must be Deployment or StatefulSet"
	// +optional
	Kind string `json:"kind"`

	// Name of the workload. Required.
	// +kubebuilder:validation:XValidation:rule="size(self) >= 1 && size(self) <= 253",message="must be the name of the workload (1 to 253 characters)"
	// +optional
	Name string `json:"name"`
}

// PreCopySettings tunes the volume pre-copy rounds run while the workload runs.
// +kubebuilder:validation:XValidation:rule="has(self.convergenceThreshold) == has(oldSelf.convergenceThreshold)",fieldPath=".convergenceThreshold",message="spec.preCopy is immutable; create a new LiveMigration instead"
// +kubebuilder:validation:XValidation:rule="has(self.maxRounds) == has(oldSelf.maxRounds)",fieldPath=".maxRounds",message="spec.preCopy is immutable; create a new LiveMigration instead"
type PreCopySettings struct {
	// ConvergenceThreshold is the delta size under which pre-copy stops and the
	// workload may be frozen: a quantity of bytes greater than zero, such as
	// 64Mi. Defaults to the controller's --precopy-threshold.
	// +kubebuilder:validation:XValidation:rule="isQuantity(string(self)) && quantity(string(self)).isGreaterThan(quantity('0'))",message="must be a quantity of bytes greater than zero, such as 64Mi (omit it for the controller's default)"
	// +kubebuilder:validation:XValidation:rule="string(self) == string(oldSelf) || !isQuantity(string(self)) || !isQuantity(string(oldSelf)) || quantity(string(self)).compareTo(quantity(string(oldSelf))) == 0",message="spec.preCopy is immutable; create a new LiveMigration instead"
	// +optional
	ConvergenceThreshold *resource.Quantity `json:"convergenceThreshold,omitempty"`

	// MaxRounds bounds the number of pre-copy passes (the full pass
	// included), 1 to 100. Defaults to the controller's --precopy-max-rounds.
	// +kubebuilder:validation:XValidation:rule="self >= 1 && self <= 100",message="must be between 1 and 100 (omit it for the controller's default)"
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="spec.preCopy is immutable; create a new LiveMigration instead"
	// +optional
	MaxRounds *int32 `json:"maxRounds,omitempty"`
}

// MemoryTransfer is how the checkpointed memory reaches the target.
type MemoryTransfer string

const (
	// MemoryTransferStopAndCopy dumps the whole memory while the source is
	// frozen and restores it on the target: the downtime grows with the
	// memory, and the source holds a complete copy until the target runs.
	MemoryTransferStopAndCopy MemoryTransfer = "StopAndCopy"
	// MemoryTransferPostCopy dumps everything but the memory pages while
	// the source is frozen; the target restores at once and its pages
	// follow from the frozen source, on demand and in the background. The
	// downtime no longer grows with the memory, but until the last page
	// arrived the memory lives in two places, and losing the source node
	// or the link then loses it (the volumes are safe). Opt-in, behind
	// the PostCopyMigration feature gate.
	MemoryTransferPostCopy MemoryTransfer = "PostCopy"
)

// PhaseTimeouts bounds the time spent in each phase. A phase without a value
// uses the controller's default for it. Each value is a duration greater
// than zero and at most 24h in Go's notation (30m, 90s, 1h30m).
// +kubebuilder:validation:XValidation:rule="[has(self.planning), has(self.preCopy), has(self.checkpointing), has(self.finalSync), has(self.transfer), has(self.rebinding), has(self.restoring), has(self.verifying)] == [has(oldSelf.planning), has(oldSelf.preCopy), has(oldSelf.checkpointing), has(oldSelf.finalSync), has(oldSelf.transfer), has(oldSelf.rebinding), has(oldSelf.restoring), has(oldSelf.verifying)]",message="spec.timeouts is immutable; create a new LiveMigration instead"
type PhaseTimeouts struct {
	// +kubebuilder:validation:XValidation:rule="self.matches('^(([0-9]+([.][0-9]*)?|[.][0-9]+)(ns|us|ms|s|m|h))+$') && duration(self) > duration('0s') && duration(self) <= duration('24h')",message="must be a duration greater than zero, such as 30m or 90s, and at most 24h (omit it for the controller's default)"
	// +kubebuilder:validation:XValidation:rule="self == oldSelf || !self.matches('^(([0-9]+([.][0-9]*)?|[.][0-9]+)(ns|us|ms|s|m|h))+$') || duration(self) == duration(oldSelf)",message="spec.timeouts is immutable; create a new LiveMigration instead"
	// +optional
	Planning *metav1.Duration `json:"planning,omitempty"`
	// +kubebuilder:validation:XValidation:rule="self.matches('^(([0-9]+([.][0-9]*)?|[.][0-9]+)(ns|us|ms|s|m|h))+$') && duration(self) > duration('0s') && duration(self) <= duration('24h')",message="must be a duration greater than zero, such as 30m or 90s, and at most 24h (omit it for the controller's default)"
	// +kubebuilder:validation:XValidation:rule="self == oldSelf || !self.matches('^(([0-9]+([.][0-9]*)?|[.][0-9]+)(ns|us|ms|s|m|h))+$') || duration(self) == duration(oldSelf)",message="spec.timeouts is immutable; create a new LiveMigration instead"
	// +optional
	PreCopy *metav1.Duration `json:"preCopy,omitempty"`
	// +kubebuilder:validation:XValidation:rule="self.matches('^(([0-9]+([.][0-9]*)?|[.][0-9]+)(ns|us|ms|s|m|h))+$') && duration(self) > duration('0s') && duration(self) <= duration('24h')",message="must be a duration greater than zero, such as 30m or 90s, and at most 24h (omit it for the controller's default)"
	// +kubebuilder:validation:XValidation:rule="self == oldSelf || !self.matches('^(([0-9]+([.][0-9]*)?|[.][0-9]+)(ns|us|ms|s|m|h))+$') || duration(self) == duration(oldSelf)",message="spec.timeouts is immutable; create a new LiveMigration instead"
	// +optional
	Checkpointing *metav1.Duration `json:"checkpointing,omitempty"`
	// +kubebuilder:validation:XValidation:rule="self.matches('^(([0-9]+([.][0-9]*)?|[.][0-9]+)(ns|us|ms|s|m|h))+$') && duration(self) > duration('0s') && duration(self) <= duration('24h')",message="must be a duration greater than zero, such as 30m or 90s, and at most 24h (omit it for the controller's default)"
	// +kubebuilder:validation:XValidation:rule="self == oldSelf || !self.matches('^(([0-9]+([.][0-9]*)?|[.][0-9]+)(ns|us|ms|s|m|h))+$') || duration(self) == duration(oldSelf)",message="spec.timeouts is immutable; create a new LiveMigration instead"
	// +optional
	FinalSync *metav1.Duration `json:"finalSync,omitempty"`
	// +kubebuilder:validation:XValidation:rule="self.matches('^(([0-9]+([.][0-9]*)?|[.][0-9]+)(ns|us|ms|s|m|h))+$') && duration(self) > duration('0s') && duration(self) <= duration('24h')",message="must be a duration greater than zero, such as 30m or 90s, and at most 24h (omit it for the controller's default)"
	// +kubebuilder:validation:XValidation:rule="self == oldSelf || !self.matches('^(([0-9]+([.][0-9]*)?|[.][0-9]+)(ns|us|ms|s|m|h))+$') || duration(self) == duration(oldSelf)",message="spec.timeouts is immutable; create a new LiveMigration instead"
	// +optional
	Transfer *metav1.Duration `json:"transfer,omitempty"`
	// +kubebuilder:validation:XValidation:rule="self.matches('^(([0-9]+([.][0-9]*)?|[.][0-9]+)(ns|us|ms|s|m|h))+$') && duration(self) > duration('0s') && duration(self) <= duration('24h')",message="must be a duration greater than zero, such as 30m or 90s, and at most 24h (omit it for the controller's default)"
	// +kubebuilder:validation:XValidation:rule="self == oldSelf || !self.matches('^(([0-9]+([.][0-9]*)?|[.][0-9]+)(ns|us|ms|s|m|h))+$') || duration(self) == duration(oldSelf)",message="spec.timeouts is immutable; create a new LiveMigration instead"
	// +optional
	Rebinding *metav1.Duration `json:"rebinding,omitempty"`
	// +kubebuilder:validation:XValidation:rule="self.matches('^(([0-9]+([.][0-9]*)?|[.][0-9]+)(ns|us|ms|s|m|h))+$') && duration(self) > duration('0s') && duration(self) <= duration('24h')",message="must be a duration greater than zero, such as 30m or 90s, and at most 24h (omit it for the controller's default)"
	// +kubebuilder:validation:XValidation:rule="self == oldSelf || !self.matches('^(([0-9]+([.][0-9]*)?|[.][0-9]+)(ns|us|ms|s|m|h))+$') || duration(self) == duration(oldSelf)",message="spec.timeouts is immutable; create a new LiveMigration instead"
	// +optional
	Restoring *metav1.Duration `json:"restoring,omitempty"`
	// +kubebuilder:validation:XValidation:rule="self.matches('^(([0-9]+([.][0-9]*)?|[.][0-9]+)(ns|us|ms|s|m|h))+$') && duration(self) > duration('0s') && duration(self) <= duration('24h')",message="must be a duration greater than zero, such as 30m or 90s, and at most 24h (omit it for the controller's default)"
	// +kubebuilder:validation:XValidation:rule="self == oldSelf || !self.matches('^(([0-9]+([.][0-9]*)?|[.][0-9]+)(ns|us|ms|s|m|h))+$') || duration(self) == duration(oldSelf)",message="spec.timeouts is immutable; create a new LiveMigration instead"
	// +optional
	Verifying *metav1.Duration `json:"verifying,omitempty"`
}

// LiveMigrationSpec is what to move and under which limits. Everything but
// abort is fixed at creation. Immutability compares values, not spellings:
// 30m and 30m0s, or 0.5Gi and 512Mi, are the same.
// +kubebuilder:validation:XValidation:rule="has(self.workloadRef)",fieldPath=".workloadRef",reason="FieldValueRequired",message="the workload to migrate is required: spec.workloadRef {kind: Deployment or StatefulSet, name: ...}"
// +kubebuilder:validation:XValidation:rule="!has(oldSelf.abort) || !oldSelf.abort || (has(self.abort) && self.abort)",message="spec.abort cannot be unset once set"
// +kubebuilder:validation:XValidation:rule="has(self.targetCluster) == has(oldSelf.targetCluster) && (!has(self.targetCluster) || self.targetCluster == oldSelf.targetCluster)",message="spec.targetCluster is immutable; create a new LiveMigration instead"
// +kubebuilder:validation:XValidation:rule="has(self.downtimeBudget) == has(oldSelf.downtimeBudget)",fieldPath=".downtimeBudget",message="spec.downtimeBudget is immutable; create a new LiveMigration instead"
// +kubebuilder:validation:XValidation:rule="has(self.bandwidthLimit) == has(oldSelf.bandwidthLimit)",fieldPath=".bandwidthLimit",message="spec.bandwidthLimit is immutable; create a new LiveMigration instead"
// +kubebuilder:validation:XValidation:rule="has(self.preCopy) == has(oldSelf.preCopy)",fieldPath=".preCopy",message="spec.preCopy is immutable; create a new LiveMigration instead"
// +kubebuilder:validation:XValidation:rule="has(self.timeouts) == has(oldSelf.timeouts)",fieldPath=".timeouts",message="spec.timeouts is immutable; create a new LiveMigration instead"
type LiveMigrationSpec struct {
	// WorkloadRef is the workload to migrate. Required.
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="spec.workloadRef is immutable; create a new LiveMigration instead"
	// +optional
	WorkloadRef WorkloadReference `json:"workloadRef"`

	// TargetCluster is the member cluster to move to. When empty, the
	// controller picks the best-scored Ready cluster with the Capacity and
	// Latency scoring of the livemigrate scheduler.
	// +kubebuilder:validation:XValidation:rule="size(self) <= 253",message="must be the name of a member cluster (at most 253 characters; see kubectl get clusters)"
	// +optional
	TargetCluster string `json:"targetCluster,omitempty"`

	// DowntimeBudget is the longest the workload may stay frozen, a duration
	// greater than zero (2s, 500ms). The controller does not freeze the
	// workload when its estimate exceeds it. Defaults to the controller's
	// --default-downtime-budget.
	// +kubebuilder:validation:XValidation:rule="self.matches('^(([0-9]+([.][0-9]*)?|[.][0-9]+)(ns|us|ms|s|m|h))+$') && duration(self) > duration('0s') && duration(self) <= duration('1h')",message="must be a duration greater than zero, such as 2s or 500ms, and at most 1h (omit it for the controller's --default-downtime-budget)"
	// +kubebuilder:validation:XValidation:rule="self == oldSelf || !self.matches('^(([0-9]+([.][0-9]*)?|[.][0-9]+)(ns|us|ms|s|m|h))+$') || duration(self) == duration(oldSelf)",message="spec.downtimeBudget is immutable; create a new LiveMigration instead"
	// +optional
	DowntimeBudget *metav1.Duration `json:"downtimeBudget,omitempty"`

	// BandwidthLimit caps the bytes per second used for volume replication and
	// checkpoint transfer: a quantity greater than zero, such as 200Mi.
	// Unlimited when omitted.
	// +kubebuilder:validation:XValidation:rule="isQuantity(string(self)) && quantity(string(self)).isGreaterThan(quantity('0'))",message="must be a quantity of bytes per second greater than zero, such as 200Mi (omit it for no limit)"
	// +kubebuilder:validation:XValidation:rule="string(self) == string(oldSelf) || !isQuantity(string(self)) || !isQuantity(string(oldSelf)) || quantity(string(self)).compareTo(quantity(string(oldSelf))) == 0",message="spec.bandwidthLimit is immutable; create a new LiveMigration instead"
	// +optional
	BandwidthLimit *resource.Quantity `json:"bandwidthLimit,omitempty"`

	// PreCopy tunes the volume pre-copy rounds.
	// +optional
	PreCopy *PreCopySettings `json:"preCopy,omitempty"`

	// Timeouts bounds each phase.
	// +optional
	Timeouts *PhaseTimeouts `json:"timeouts,omitempty"`

	// MemoryTransfer is how the memory reaches the target: StopAndCopy
	// (the default) or PostCopy (needs the PostCopyMigration feature gate
	// of the descheduler and the agents; see docs/livemigration.md for
	// what it risks).
	// +kubebuilder:default=StopAndCopy
	// +kubebuilder:validation:XValidation:rule="self in ['StopAndCopy', 'PostCopy']",message="must be StopAndCopy or PostCopy (omit it for StopAndCopy)"
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="spec.memoryTransfer is immutable; create a new LiveMigration instead"
	// +optional
	MemoryTransfer MemoryTransfer `json:"memoryTransfer,omitempty"`

	// Abort requests a rollback. Ignored once the migration reached Cleanup
	// (the target already runs). Cannot be unset.
	// +optional
	Abort bool `json:"abort,omitempty"`
}

// PhaseTransition records when a phase was entered.
type PhaseTransition struct {
	// Phase entered.
	// +required
	Phase LiveMigrationPhase `json:"phase"`
	// EnteredAt is when the phase was entered (microsecond precision, for
	// phase durations).
	// +required
	EnteredAt metav1.MicroTime `json:"enteredAt"`
}

// PodMigrationStatus is the progress of one pod of the workload.
type PodMigrationStatus struct {
	// Name of the source pod.
	// +required
	Name string `json:"name"`
	// SourceNode is the node the source pod runs on.
	// +optional
	SourceNode string `json:"sourceNode,omitempty"`
	// Containers checkpointed, in pod order.
	// +listType=atomic
	// +optional
	Containers []string `json:"containers,omitempty"`
	// Frozen is true while the source pod is frozen.
	// +optional
	Frozen bool `json:"frozen,omitempty"`
	// CheckpointBytes is the size of the pod's checkpoint archives.
	// +optional
	CheckpointBytes int64 `json:"checkpointBytes,omitempty"`
	// CheckpointImages are the checkpoint images the target restores from.
	// +listType=map
	// +listMapKey=container
	// +optional
	CheckpointImages []ContainerCheckpointImage `json:"checkpointImages,omitempty"`
	// Restored is true once the target pod was restored from the checkpoint.
	// +optional
	Restored bool `json:"restored,omitempty"`
	// Message is the latest progress note from the checkpoint agent.
	// +optional
	Message string `json:"message,omitempty"`
}

// ContainerCheckpointImage is the checkpoint image of one container.
type ContainerCheckpointImage struct {
	// Container name in the pod.
	// +required
	Container string `json:"container"`
	// Image reference, preferably by digest.
	// +required
	Image string `json:"image"`
}

// VolumeMigrationStatus is the replication progress of one persistent volume.
type VolumeMigrationStatus struct {
	// ClaimName is the PersistentVolumeClaim replicated.
	// +required
	ClaimName string `json:"claimName"`
	// StorageClass of the claim; selects the replication backend.
	// +optional
	StorageClass string `json:"storageClass,omitempty"`
	// PodName is the source pod mounting the claim.
	// +optional
	PodName string `json:"podName,omitempty"`
	// SourceNode is the node of that pod.
	// +optional
	SourceNode string `json:"sourceNode,omitempty"`
	// Rounds is the number of pre-copy passes done.
	// +optional
	Rounds int32 `json:"rounds,omitempty"`
	// LastDeltaBytes is the size of the last pre-copy pass.
	// +optional
	LastDeltaBytes int64 `json:"lastDeltaBytes,omitempty"`
	// PreCopyBytes is the total sent during pre-copy.
	// +optional
	PreCopyBytes int64 `json:"preCopyBytes,omitempty"`
	// FinalDeltaBytes is what the final sync sent while frozen.
	// +optional
	FinalDeltaBytes int64 `json:"finalDeltaBytes,omitempty"`
	// Synced is true once the final sync finished.
	// +optional
	Synced bool `json:"synced,omitempty"`
}

// TransferredBytes counts the bytes moved, by kind.
type TransferredBytes struct {
	// Memory is the total size of the checkpoint archives.
	// +optional
	Memory int64 `json:"memory,omitempty"`
	// VolumePreCopy is what volume pre-copy sent while the workload ran.
	// +optional
	VolumePreCopy int64 `json:"volumePreCopy,omitempty"`
	// FinalDelta is what the final volume sync sent while frozen.
	// +optional
	FinalDelta int64 `json:"finalDelta,omitempty"`
}

// MigrationFailure says why a migration rolled back.
type MigrationFailure struct {
	// Phase that failed (or was running when abort was requested).
	// +required
	Phase LiveMigrationPhase `json:"phase"`
	// Reason is a CamelCase cause: Aborted, Timeout, BudgetExceeded, Error, ...
	// +required
	Reason string `json:"reason"`
	// Message is the error.
	// +optional
	Message string `json:"message,omitempty"`
	// Time the failure was recorded.
	// +required
	Time metav1.Time `json:"time"`
}

// LiveMigrationStatus is the persisted state of the migration: a restarted
// controller resumes or rolls back from it alone.
type LiveMigrationStatus struct {
	// Phase is the current state.
	// +optional
	Phase LiveMigrationPhase `json:"phase,omitempty"`
	// SourceCluster the workload runs on when the migration started.
	// +optional
	SourceCluster string `json:"sourceCluster,omitempty"`
	// TargetCluster chosen (spec.targetCluster or the best-scored cluster).
	// +optional
	TargetCluster string `json:"targetCluster,omitempty"`
	// BindingName is the workload's ResourceBinding.
	// +optional
	BindingName string `json:"bindingName,omitempty"`
	// Conditions of the migration.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// PhaseTransitions records when each phase was entered.
	// +listType=map
	// +listMapKey=phase
	// +optional
	PhaseTransitions []PhaseTransition `json:"phaseTransitions,omitempty"`
	// Pods is the per-pod progress.
	// +listType=map
	// +listMapKey=name
	// +optional
	Pods []PodMigrationStatus `json:"pods,omitempty"`
	// Volumes is the per-volume replication progress.
	// +listType=map
	// +listMapKey=claimName
	// +optional
	Volumes []VolumeMigrationStatus `json:"volumes,omitempty"`
	// Bytes moved, by kind.
	// +optional
	Bytes TransferredBytes `json:"bytes,omitempty"`
	// MeasuredBandwidth is the replication throughput measured during
	// pre-copy, in bytes per second.
	// +optional
	MeasuredBandwidth *resource.Quantity `json:"measuredBandwidth,omitempty"`
	// EstimatedDowntime is the downtime estimated before freezing.
	// +optional
	EstimatedDowntime *metav1.Duration `json:"estimatedDowntime,omitempty"`
	// FrozenAt is when the source was frozen, the start of the downtime
	// (microsecond precision): the earliest freeze the checkpoint agents
	// report for the source pods (their PodCheckpoints' status.frozenAt),
	// else when the controller saw every source pod frozen.
	// +optional
	FrozenAt *metav1.MicroTime `json:"frozenAt,omitempty"`
	// TargetReadyAt is when every target pod was Ready.
	// +optional
	TargetReadyAt *metav1.MicroTime `json:"targetReadyAt,omitempty"`
	// Downtime measured from freeze to target Ready.
	// +optional
	Downtime *metav1.Duration `json:"downtime,omitempty"`
	// Failure is what caused the rollback, and in which phase.
	// +optional
	Failure *MigrationFailure `json:"failure,omitempty"`
	// CompletionTime is when Succeeded or Failed was reached.
	// +optional
	CompletionTime *metav1.Time `json:"completionTime,omitempty"`
}

// LiveMigration moves one running workload between member clusters, with its
// memory state (checkpoint/restore) and its persistent volumes.
//
// +kubebuilder:validation:XValidation:rule="has(self.spec)",fieldPath=".spec",reason="FieldValueRequired",message="spec is required: at least spec.workloadRef {kind: Deployment or StatefulSet, name: ...}"
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Namespaced,shortName=lm;lmig,categories=livemigrate
// +kubebuilder:printcolumn:name="Workload",type=string,JSONPath=`.spec.workloadRef.name`,priority=1
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Source",type=string,JSONPath=`.status.sourceCluster`
// +kubebuilder:printcolumn:name="Target",type=string,JSONPath=`.status.targetCluster`
// +kubebuilder:printcolumn:name="Downtime",type=string,JSONPath=`.status.downtime`
// +kubebuilder:printcolumn:name="Trigger",type=string,JSONPath=`.metadata.labels.livemigrate\.io/trigger`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type LiveMigration struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is required.
	// +optional
	Spec LiveMigrationSpec `json:"spec"`
	// +optional
	Status LiveMigrationStatus `json:"status,omitempty"`
}

// LiveMigrationList is a list of LiveMigration.
//
// +kubebuilder:object:root=true
type LiveMigrationList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []LiveMigration `json:"items"`
}

// IsTerminal reports whether the phase is Succeeded or Failed.
func (p LiveMigrationPhase) IsTerminal() bool {
	return p == PhaseSucceeded || p == PhaseFailed
}

func init() {
	SchemeBuilder.Register(&LiveMigration{}, &LiveMigrationList{})
}
