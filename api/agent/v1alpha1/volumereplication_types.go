package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ReplicationRole is the side of a volume replication an object describes.
// +kubebuilder:validation:Enum=Source;Target
type ReplicationRole string

const (
	// ReplicationRoleSource is the node holding the volume's data; its agent
	// runs the rsync passes.
	ReplicationRoleSource ReplicationRole = "Source"
	// ReplicationRoleTarget is the node mounting the pre-provisioned target
	// PVC; its agent runs the receiver.
	ReplicationRoleTarget ReplicationRole = "Target"
)

// ReplicationStage is what the controller of the migration asks for.
// +kubebuilder:validation:Enum=PreCopy;Final
type ReplicationStage string

const (
	// ReplicationStagePreCopy replicates while the workload runs.
	ReplicationStagePreCopy ReplicationStage = "PreCopy"
	// ReplicationStageFinal sends the last delta and verifies it; set only
	// while the pod is frozen.
	ReplicationStageFinal ReplicationStage = "Final"
)

// VolumeReplicationPhase is the state the agent reports.
// +kubebuilder:validation:Enum=Pending;Listening;PreCopying;PreCopied;FinalSyncing;Verifying;Completed;Failed;Aborted
type VolumeReplicationPhase string

const (
	VolumeReplicationPending      VolumeReplicationPhase = "Pending"
	VolumeReplicationListening    VolumeReplicationPhase = "Listening"
	VolumeReplicationPreCopying   VolumeReplicationPhase = "PreCopying"
	VolumeReplicationPreCopied    VolumeReplicationPhase = "PreCopied"
	VolumeReplicationFinalSyncing VolumeReplicationPhase = "FinalSyncing"
	VolumeReplicationVerifying    VolumeReplicationPhase = "Verifying"
	VolumeReplicationCompleted    VolumeReplicationPhase = "Completed"
	VolumeReplicationFailed       VolumeReplicationPhase = "Failed"
	VolumeReplicationAborted      VolumeReplicationPhase = "Aborted"
)

// ChecksumResult is the outcome of the verification pass.
// +kubebuilder:validation:Enum=Pending;Match;Mismatch
type ChecksumResult string

const (
	ChecksumPending  ChecksumResult = "Pending"
	ChecksumMatch    ChecksumResult = "Match"
	ChecksumMismatch ChecksumResult = "Mismatch"
)

// Condition types of a VolumeReplication.
const (
	// ConditionConverged is True once a pre-copy delta fell under the
	// threshold (False with reason MaxRounds when the round limit was hit).
	ConditionConverged = "Converged"
	// ConditionVerified is True once the final checksum pass matched.
	ConditionVerified = "Verified"
	// ConditionReceiverReady is True while the target's receiver accepts
	// connections; False, with the reason and what to do in its message,
	// while it cannot start (a transient cause is retried, a terminal one
	// fails the replication).
	ConditionReceiverReady = "ReceiverReady"
	// ConditionSenderReady is True once the source's sender has started;
	// False, like ReceiverReady, while it cannot.
	ConditionSenderReady = "SenderReady"
	// ConditionFailed is True once the replication failed (phase Failed);
	// its reason names the cause when the agent knows one the user can act
	// on (ReasonTargetVolumeTooSmall), Error otherwise.
	ConditionFailed = "Failed"
)

// Reasons of the Failed condition.
const (
	// ReasonTargetVolumeTooSmall: before the first pass, the target's
	// filesystem had no room (bytes or inodes) for what the source volume
	// occupies; the message says how much is needed and available.
	ReasonTargetVolumeTooSmall = "TargetVolumeTooSmall"
	// ReasonError: any other failure; the phase's message says what.
	ReasonError = "Error"
)

// ReplicationPreCopy tunes the pre-copy rounds.
type ReplicationPreCopy struct {
	// ConvergenceThreshold: pre-copy stops once a delta pass changed at most
	// this much file data. Defaults to 64Mi.
	// +optional
	ConvergenceThreshold *resource.Quantity `json:"convergenceThreshold,omitempty"`

	// MaxRounds bounds the pre-copy passes, the full pass included.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	// +kubebuilder:default=5
	// +optional
	MaxRounds int32 `json:"maxRounds,omitempty"`
}

// ReplicationBase names a claim restored from a snapshot and the pod on the
// source node that mounts it.
type ReplicationBase struct {
	// ClaimName of the restored claim, in this namespace.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	ClaimName string `json:"claimName"`
	// PodName of the reader pod mounting it.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	PodName string `json:"podName"`
}

// VolumeReplicationSpec describes one side of the replication of one
// persistent volume claim.
// +kubebuilder:validation:XValidation:rule="self.migrationUID == oldSelf.migrationUID && self.role == oldSelf.role && self.nodeName == oldSelf.nodeName && self.claimName == oldSelf.claimName",message="migrationUID, role, nodeName and claimName are immutable"
// +kubebuilder:validation:XValidation:rule="!(has(oldSelf.stage) && oldSelf.stage == 'Final') || (has(self.stage) && self.stage == 'Final')",message="stage may only move from PreCopy to Final"
// +kubebuilder:validation:XValidation:rule="!has(oldSelf.abort) || !oldSelf.abort || (has(self.abort) && self.abort)",message="abort cannot be withdrawn"
// +kubebuilder:validation:XValidation:rule="self.role == 'Target' || (has(self.peerAddress) && size(self.peerAddress) > 0)",message="a Source needs peerAddress"
// +kubebuilder:validation:XValidation:rule="self.role == 'Source' || (!has(self.podName) && !has(self.preCopyBase))",message="podName and preCopyBase are only meaningful for a Source"
type VolumeReplicationSpec struct {
	// MigrationUID is the UID of the LiveMigration this replication belongs
	// to; the TLS credentials are bound to it.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=64
	MigrationUID string `json:"migrationUID"`

	// Role is the side this object describes.
	Role ReplicationRole `json:"role"`

	// NodeName is the node whose agent acts on this object.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	NodeName string `json:"nodeName"`

	// ClaimName is the PersistentVolumeClaim, in this object's namespace:
	// the workload's claim on the source, the pre-provisioned claim of the
	// same name on the target.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	ClaimName string `json:"claimName"`

	// PodName is the source pod mounting the claim (Source only). The agent
	// reads the volume through the pod's volume directory under the kubelet
	// root unless the PersistentVolume is a local or hostPath volume.
	// +kubebuilder:validation:MaxLength=253
	// +optional
	PodName string `json:"podName,omitempty"`

	// PeerAddress is host:port of the target's receiver (Source only), as
	// reported in the Target's status.endpoint.
	// +kubebuilder:validation:MaxLength=261
	// +optional
	PeerAddress string `json:"peerAddress,omitempty"`

	// PeerServerName is the TLS server name (SNI) the source sends to reach
	// its receiver on the target agent's shared replication port (Source
	// only), as reported in the Target's status.serverName. When empty the
	// source derives it from migrationUID and claimName, as the target does.
	// +kubebuilder:validation:MaxLength=253
	// +optional
	PeerServerName string `json:"peerServerName,omitempty"`

	// ListenPort, when set, makes the receiver listen on its own port
	// (Target only) instead of the agent's shared replication port.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=65535
	// +optional
	ListenPort int32 `json:"listenPort,omitempty"`

	// TLSSecretRef names the Secret holding the migration's credentials
	// (keys ca.crt, source.crt/source.key, target.crt/target.key; each side
	// needs only its own key). It lives in the agent's own namespace, never
	// in the workload's: an empty namespace means the agent's, any other
	// namespace is refused (reason SecretNotAllowed), and so is a Secret
	// not labelled for this object's migration (livemigrate.io/migration-uid
	// is spec.migrationUID, livemigrate.io/migration-namespace this
	// object's namespace).
	TLSSecretRef corev1.SecretReference `json:"tlsSecretRef"`

	// BandwidthLimit caps the replication traffic, in bytes per second.
	// Unlimited when unset.
	// +optional
	BandwidthLimit *resource.Quantity `json:"bandwidthLimit,omitempty"`

	// PreCopy tunes the pre-copy rounds.
	// +optional
	PreCopy ReplicationPreCopy `json:"preCopy,omitempty"`

	// PreCopyBase, when set (Source only), is a crash-consistent base for the
	// full pass: a claim restored from a VolumeSnapshot of ClaimName, mounted
	// by a reader pod on this node. Delta passes read the live volume.
	// +optional
	PreCopyBase *ReplicationBase `json:"preCopyBase,omitempty"`

	// Stage is set by the migration's controller: PreCopy while the workload
	// runs, Final once it is frozen.
	// +kubebuilder:default=PreCopy
	// +optional
	Stage ReplicationStage `json:"stage,omitempty"`

	// Abort stops the replication; the target's partial data is removed.
	// +optional
	Abort bool `json:"abort,omitempty"`
}

// VolumeReplicationStatus is what the agent reports.
type VolumeReplicationStatus struct {
	// ObservedGeneration is the spec generation the status reflects.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Phase of the replication.
	// +optional
	Phase VolumeReplicationPhase `json:"phase,omitempty"`

	// Endpoint is host:port where the target's receiver listens (Target).
	// +optional
	Endpoint string `json:"endpoint,omitempty"`

	// ServerName is the TLS server name (SNI) that routes a connection on
	// the shared endpoint to this receiver (Target). Empty when the
	// receiver has its own port (spec.listenPort).
	// +optional
	ServerName string `json:"serverName,omitempty"`

	// Round is the last completed pass: 1 the full pass, then one per delta
	// pass; the final pass counts as one more round. A restarted agent
	// resumes after it.
	// +optional
	Round int32 `json:"round,omitempty"`

	// BytesTotal is the size of the volume's file data.
	// +optional
	BytesTotal int64 `json:"bytesTotal,omitempty"`

	// BytesSent is the total sent over the wire by every pass so far,
	// including the pass in progress (updated at most every progress
	// interval of the agent while a pass runs).
	// +optional
	BytesSent int64 `json:"bytesSent,omitempty"`

	// Files is the number of files in the volume; FilesTransferred those
	// updated by the last pass.
	// +optional
	Files int64 `json:"files,omitempty"`
	// +optional
	FilesTransferred int64 `json:"filesTransferred,omitempty"`

	// LastDeltaBytes is the file data the last pass had to send (rsync's
	// literal data).
	// +optional
	LastDeltaBytes int64 `json:"lastDeltaBytes,omitempty"`

	// LastRoundDuration is the wall time of the last pass.
	// +optional
	LastRoundDuration *metav1.Duration `json:"lastRoundDuration,omitempty"`

	// LastPassTime is when the last pass ended. While the object waits in
	// PreCopied, the agent runs a further delta pass once this is older
	// than its keep-warm interval, so the final delta stays small.
	// +optional
	LastPassTime *metav1.Time `json:"lastPassTime,omitempty"`

	// RateBytesPerSecond is the best wire throughput observed.
	// +optional
	RateBytesPerSecond int64 `json:"rateBytesPerSecond,omitempty"`

	// EstimatedFinalDuration is the expected duration of the final delta
	// pass, extrapolated from the last pre-copy round.
	// +optional
	EstimatedFinalDuration *metav1.Duration `json:"estimatedFinalDuration,omitempty"`

	// FinalDuration is the measured duration of the final pass including
	// verification (the replication's share of the downtime).
	// +optional
	FinalDuration *metav1.Duration `json:"finalDuration,omitempty"`

	// Checksum is the result of the verification pass.
	// +optional
	Checksum ChecksumResult `json:"checksum,omitempty"`

	// Message explains a failure.
	// +kubebuilder:validation:MaxLength=4096
	// +optional
	Message string `json:"message,omitempty"`

	// StartTime and CompletionTime of the replication.
	// +optional
	StartTime *metav1.Time `json:"startTime,omitempty"`
	// +optional
	CompletionTime *metav1.Time `json:"completionTime,omitempty"`

	// Conditions: Converged, Verified, ReceiverReady, SenderReady, Failed.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// VolumeReplication asks the agent on spec.nodeName to replicate (Source) or
// receive (Target) one persistent volume of a live migration. The data goes
// agent to agent over mutual TLS with the migration's credentials.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Namespaced,shortName=volrep
// +kubebuilder:selectablefield:JSONPath=`.spec.nodeName`
// +kubebuilder:printcolumn:name="Role",type=string,JSONPath=`.spec.role`
// +kubebuilder:printcolumn:name="Claim",type=string,JSONPath=`.spec.claimName`
// +kubebuilder:printcolumn:name="Node",type=string,JSONPath=`.spec.nodeName`
// +kubebuilder:printcolumn:name="Stage",type=string,JSONPath=`.spec.stage`
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Round",type=integer,JSONPath=`.status.round`
// +kubebuilder:printcolumn:name="Sent",type=integer,JSONPath=`.status.bytesSent`,priority=1
// +kubebuilder:printcolumn:name="Delta",type=integer,JSONPath=`.status.lastDeltaBytes`,priority=1
// +kubebuilder:printcolumn:name="Checksum",type=string,JSONPath=`.status.checksum`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type VolumeReplication struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   VolumeReplicationSpec   `json:"spec"`
	Status VolumeReplicationStatus `json:"status,omitempty"`
}

// VolumeReplicationList is a list of VolumeReplication.
// +kubebuilder:object:root=true
type VolumeReplicationList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []VolumeReplication `json:"items"`
}

func init() {
	SchemeBuilder.Register(&VolumeReplication{}, &VolumeReplicationList{})
}
