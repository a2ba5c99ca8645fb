package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// CheckpointAction is what the agent is asked to do with a PodCheckpoint.
// +kubebuilder:validation:Enum=Checkpoint;Thaw;Release
type CheckpointAction string

const (
	// CheckpointActionCheckpoint freezes the pod, checkpoints its containers
	// and pushes the checkpoint images. The pod stays frozen afterwards.
	CheckpointActionCheckpoint CheckpointAction = "Checkpoint"
	// CheckpointActionThaw rolls back: it thaws the frozen pod so that it
	// continues where it stopped, and deletes the archives on the node.
	CheckpointActionThaw CheckpointAction = "Thaw"
	// CheckpointActionRelease ends a successful migration: the archives on
	// the node are deleted; the pod stays frozen until it is deleted.
	CheckpointActionRelease CheckpointAction = "Release"
)

// PodCheckpointPhase is the state the agent reports for a PodCheckpoint.
// +kubebuilder:validation:Enum=Pending;Frozen;Checkpointing;Pushing;Checkpointed;Thawed;Released;Failed
type PodCheckpointPhase string

const (
	PodCheckpointPending       PodCheckpointPhase = "Pending"
	PodCheckpointFrozen        PodCheckpointPhase = "Frozen"
	PodCheckpointCheckpointing PodCheckpointPhase = "Checkpointing"
	PodCheckpointPushing       PodCheckpointPhase = "Pushing"
	PodCheckpointCheckpointed  PodCheckpointPhase = "Checkpointed"
	PodCheckpointThawed        PodCheckpointPhase = "Thawed"
	PodCheckpointReleased      PodCheckpointPhase = "Released"
	PodCheckpointFailed        PodCheckpointPhase = "Failed"
)

// Condition types of a PodCheckpoint.
const (
	// ConditionFrozen is True while the agent holds the pod's cgroup frozen.
	ConditionFrozen = "Frozen"
	// ConditionCheckpointed is True once every container's archive was taken
	// and inspected.
	ConditionCheckpointed = "Checkpointed"
	// ConditionPushed is True once every checkpoint image is in the registry.
	ConditionPushed = "Pushed"
)

// CheckpointDestination is where checkpoint images are pushed.
type CheckpointDestination struct {
	// Repository is the repository prefix the images are pushed under, e.g.
	// "registry.example.com/livemigrate". The image of a container is
	// <repository>/<namespace>-<pod>-<container>:<migrationUID>.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=512
	Repository string `json:"repository"`

	// PushSecretRef names a kubernetes.io/dockerconfigjson Secret in the
	// PodCheckpoint's namespace holding the push credentials. Anonymous when
	// unset.
	// +optional
	PushSecretRef *corev1.LocalObjectReference `json:"pushSecretRef,omitempty"`

	// Insecure allows plain HTTP to the registry.
	// +optional
	Insecure bool `json:"insecure,omitempty"`
}

// PodCheckpointSpec is the request to freeze and checkpoint one pod.
// +kubebuilder:validation:XValidation:rule="self.nodeName == oldSelf.nodeName && self.podName == oldSelf.podName && self.migrationUID == oldSelf.migrationUID",message="nodeName, podName and migrationUID are immutable"
// +kubebuilder:validation:XValidation:rule="oldSelf.action == 'Checkpoint' || self.action == oldSelf.action",message="action may only leave Checkpoint, once"
type PodCheckpointSpec struct {
	// NodeName is the node the pod runs on; only that node's agent acts.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	NodeName string `json:"nodeName"`

	// PodName is the pod to checkpoint, in the PodCheckpoint's namespace.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	PodName string `json:"podName"`

	// PodUID guards against a pod of the same name replacing the one meant.
	// +optional
	PodUID string `json:"podUID,omitempty"`

	// Containers to checkpoint; all containers of the pod when empty.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	Containers []string `json:"containers,omitempty"`

	// MigrationUID is the UID of the migration this checkpoint belongs to.
	// Every operation is keyed by it.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=64
	MigrationUID string `json:"migrationUID"`

	// Destination is where the checkpoint images go.
	Destination CheckpointDestination `json:"destination"`

	// Action is what to do: Checkpoint, then either Thaw (rollback) or
	// Release (success).
	// +kubebuilder:default=Checkpoint
	// +optional
	Action CheckpointAction `json:"action,omitempty"`

	// TimeoutSeconds bounds each container's kubelet checkpoint call.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=3600
	// +kubebuilder:default=120
	// +optional
	TimeoutSeconds int32 `json:"timeoutSeconds,omitempty"`
}

// ContainerCheckpointStatus is what was checkpointed of one container.
type ContainerCheckpointStatus struct {
	// Name of the container.
	Name string `json:"name"`
	// ArchivePath is the archive on the node, while it exists.
	// +optional
	ArchivePath string `json:"archivePath,omitempty"`
	// ArchiveSizeBytes is the archive's size.
	// +optional
	ArchiveSizeBytes int64 `json:"archiveSizeBytes,omitempty"`
	// ContainerImage is the image the container ran, from the archive.
	// +optional
	ContainerImage string `json:"containerImage,omitempty"`
	// Runtime and RuntimeVersion name the runtime that took the checkpoint.
	// +optional
	Runtime string `json:"runtime,omitempty"`
	// +optional
	RuntimeVersion string `json:"runtimeVersion,omitempty"`
	// CRIUVersion is the CRIU version recorded in the archive.
	// +optional
	CRIUVersion string `json:"criuVersion,omitempty"`
	// Architecture is the CPU architecture recorded in the archive.
	// +optional
	Architecture string `json:"architecture,omitempty"`
	// Image is the pushed checkpoint image, by digest.
	// +optional
	Image string `json:"image,omitempty"`
	// Digest of the pushed checkpoint image's manifest.
	// +optional
	Digest string `json:"digest,omitempty"`
	// PushDuration is how long the push took.
	// +optional
	PushDuration *metav1.Duration `json:"pushDuration,omitempty"`
}

// PodCheckpointStatus is reported by the agent.
type PodCheckpointStatus struct {
	// +optional
	Phase PodCheckpointPhase `json:"phase,omitempty"`
	// ObservedGeneration is the generation last acted on.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// PodUID is the UID of the pod that was frozen.
	// +optional
	PodUID string `json:"podUID,omitempty"`
	// CgroupPath is the pod cgroup the agent froze.
	// +optional
	CgroupPath string `json:"cgroupPath,omitempty"`
	// FreezeStartTime is when the pod was frozen.
	// +optional
	FreezeStartTime *metav1.Time `json:"freezeStartTime,omitempty"`
	// FrozenAt is when the agent asked the pod's cgroup to freeze, the
	// instant its processes may stop, with sub-second precision: the
	// migration's downtime starts at the earliest FrozenAt of its pods.
	// +optional
	FrozenAt *metav1.MicroTime `json:"frozenAt,omitempty"`
	// CheckpointDuration is from the freeze to the last image pushed.
	// +optional
	CheckpointDuration *metav1.Duration `json:"checkpointDuration,omitempty"`
	// CompletionTime is when the current action finished.
	// +optional
	CompletionTime *metav1.Time `json:"completionTime,omitempty"`
	// Containers holds one entry per checkpointed container.
	// +optional
	// +listType=map
	// +listMapKey=name
	Containers []ContainerCheckpointStatus `json:"containers,omitempty"`
	// Conditions: Frozen, Checkpointed, Pushed.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// Message explains a failure.
	// +optional
	Message string `json:"message,omitempty"`
}

// PodCheckpoint asks the agent on spec.nodeName to freeze a pod, checkpoint
// its containers through the kubelet and push them as checkpoint images.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Namespaced,shortName=pcp
// +kubebuilder:selectablefield:JSONPath=`.spec.nodeName`
// +kubebuilder:printcolumn:name="Pod",type=string,JSONPath=`.spec.podName`
// +kubebuilder:printcolumn:name="Node",type=string,JSONPath=`.spec.nodeName`
// +kubebuilder:printcolumn:name="Action",type=string,JSONPath=`.spec.action`
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Duration",type=string,JSONPath=`.status.checkpointDuration`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type PodCheckpoint struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   PodCheckpointSpec   `json:"spec"`
	Status PodCheckpointStatus `json:"status,omitempty"`
}

// PodCheckpointList is a list of PodCheckpoints.
//
// +kubebuilder:object:root=true
type PodCheckpointList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []PodCheckpoint `json:"items"`
}

func init() {
	SchemeBuilder.Register(&PodCheckpoint{}, &PodCheckpointList{})
}
