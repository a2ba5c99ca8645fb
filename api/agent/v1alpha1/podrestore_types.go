package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Pod annotations set by the restore webhook.
const (
	// AnnotationRestore names the PodRestore a pod was restored from.
	AnnotationRestore = "agent.livemigrate.io/restore"
	// AnnotationRestoreCheckpoint names the checkpoint (source pod) consumed.
	AnnotationRestoreCheckpoint = "agent.livemigrate.io/restore-checkpoint"
	// AnnotationRestoreClaim is the claim key (pod name or admission UID).
	AnnotationRestoreClaim = "agent.livemigrate.io/restore-claim"
	// LabelRestoredFrom on a restored pod names its PodRestore, so the agent
	// can follow the pod.
	LabelRestoredFrom = "agent.livemigrate.io/restored-from"
	// LabelRestoreWebhook set to "disabled" on a namespace keeps the restore
	// webhook away from its pods.
	LabelRestoreWebhook = "agent.livemigrate.io/restore-webhook"
	// SchedulingGateCheckpointImage holds a pod that claimed a checkpoint
	// whose images are not pushed yet: the restore webhook adds it at the
	// pod's creation, and the restore controller removes it, in the same
	// update that points the containers at the checkpoint images, once the
	// PodRestore records them. A gated pod is neither scheduled nor run.
	SchedulingGateCheckpointImage = "agent.livemigrate.io/checkpoint-image"
)

// PodRestorePhase is the state of a PodRestore.
// +kubebuilder:validation:Enum=Pending;Restoring;Restored;Failed
type PodRestorePhase string

const (
	PodRestorePending   PodRestorePhase = "Pending"
	PodRestoreRestoring PodRestorePhase = "Restoring"
	PodRestoreRestored  PodRestorePhase = "Restored"
	PodRestoreFailed    PodRestorePhase = "Failed"
)

// RestoreClaimPhase follows the pod that consumed a checkpoint.
// +kubebuilder:validation:Enum=Claimed;Created;Running;Ready;Failed
type RestoreClaimPhase string

const (
	RestoreClaimClaimed RestoreClaimPhase = "Claimed"
	RestoreClaimCreated RestoreClaimPhase = "Created"
	RestoreClaimRunning RestoreClaimPhase = "Running"
	RestoreClaimReady   RestoreClaimPhase = "Ready"
	RestoreClaimFailed  RestoreClaimPhase = "Failed"
)

// WorkloadReference names the workload whose new pods restore.
type WorkloadReference struct {
	// APIVersion of the workload, e.g. apps/v1.
	// +kubebuilder:default="apps/v1"
	// +optional
	APIVersion string `json:"apiVersion,omitempty"`
	// Kind of the workload: StatefulSet, Deployment, ReplicaSet.
	// +kubebuilder:validation:Enum=StatefulSet;Deployment;ReplicaSet
	Kind string `json:"kind"`
	// Name of the workload, in the PodRestore's namespace.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
}

// ContainerImage maps a container to its checkpoint image.
// +kubebuilder:validation:XValidation:rule="!has(oldSelf.image) || (has(self.image) && self.image == oldSelf.image)",message="a checkpoint image, once recorded, is immutable"
type ContainerImage struct {
	// Name of the container in the pod template.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	Name string `json:"name"`
	// Image is the checkpoint image, preferably by digest. It is empty while
	// the checkpoint is being pushed: the pods claiming the checkpoint then
	// wait behind the SchedulingGateCheckpointImage scheduling gate until
	// it is recorded (once, never changed afterwards).
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=512
	// +optional
	Image string `json:"image,omitempty"`
}

// RestoreCheckpoint is one checkpointed source pod.
// +kubebuilder:validation:XValidation:rule="has(self.ordinal) == has(oldSelf.ordinal) && (!has(self.ordinal) || self.ordinal == oldSelf.ordinal) && self.containers.map(c, c.name) == oldSelf.containers.map(c, c.name)",message="a checkpoint's ordinal and containers are immutable (only their images may be recorded)"
type RestoreCheckpoint struct {
	// Name identifies the checkpoint, usually the source pod's name.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
	// Ordinal is the StatefulSet ordinal of the source pod; the target pod
	// with the same ordinal consumes it.
	// +kubebuilder:validation:Minimum=0
	// +optional
	Ordinal *int32 `json:"ordinal,omitempty"`
	// Containers are the checkpoint images of the pod's containers.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	// +listType=map
	// +listMapKey=name
	Containers []ContainerImage `json:"containers"`
}

// PodRestoreSpec asks the target cluster to restore a workload's new pods
// from checkpoint images.
// +kubebuilder:validation:XValidation:rule="self.migrationUID == oldSelf.migrationUID && self.workload == oldSelf.workload && self.checkpoints.map(c, c.name) == oldSelf.checkpoints.map(c, c.name)",message="migrationUID, workload and the set of checkpoints are immutable (only their images may be recorded)"
type PodRestoreSpec struct {
	// NodeName, when set, pins the restored pods to that node (for the
	// architecture and CRIU version the checkpoint was checked against).
	// +kubebuilder:validation:MaxLength=253
	// +optional
	NodeName string `json:"nodeName,omitempty"`
	// MigrationUID is the UID of the migration.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=64
	MigrationUID string `json:"migrationUID"`
	// Workload whose pods restore.
	Workload WorkloadReference `json:"workload"`
	// Checkpoints, each consumed by exactly one new pod.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=256
	// +listType=map
	// +listMapKey=name
	Checkpoints []RestoreCheckpoint `json:"checkpoints"`
}

// RestoreClaim records which pod consumed a checkpoint.
type RestoreClaim struct {
	// Checkpoint is the RestoreCheckpoint's name.
	Checkpoint string `json:"checkpoint"`
	// Key identifies the claimer: the pod's name when it has one (a
	// StatefulSet pod), else the admission request UID.
	Key string `json:"key"`
	// PodName is the claiming pod's name once known.
	// +optional
	PodName string `json:"podName,omitempty"`
	// PodUID is the claiming pod's UID once seen.
	// +optional
	PodUID string `json:"podUID,omitempty"`
	// Phase follows the pod.
	// +optional
	Phase RestoreClaimPhase `json:"phase,omitempty"`
	// Message says why the claim failed: the pod failed, or one of its
	// containers could not start from the checkpoint image (the kubelet's
	// waiting reason and message) or exited after the restore.
	// +kubebuilder:validation:MaxLength=1024
	// +optional
	Message string `json:"message,omitempty"`
	// ClaimTime is when the webhook claimed the checkpoint.
	ClaimTime metav1.Time `json:"claimTime"`
	// ReadyTime is when the pod first became Ready.
	// +optional
	ReadyTime *metav1.Time `json:"readyTime,omitempty"`
}

// PodRestoreStatus is reported by the webhook (claims) and the agent.
type PodRestoreStatus struct {
	// +optional
	Phase PodRestorePhase `json:"phase,omitempty"`
	// Claims hold one entry per consumed checkpoint.
	// +optional
	// +listType=map
	// +listMapKey=checkpoint
	Claims []RestoreClaim `json:"claims,omitempty"`
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// +optional
	Message string `json:"message,omitempty"`
}

// PodRestore makes the next pods of a workload in this cluster start from
// checkpoint images.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Namespaced,shortName=prs
// +kubebuilder:printcolumn:name="Kind",type=string,JSONPath=`.spec.workload.kind`
// +kubebuilder:printcolumn:name="Workload",type=string,JSONPath=`.spec.workload.name`
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type PodRestore struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   PodRestoreSpec   `json:"spec"`
	Status PodRestoreStatus `json:"status,omitempty"`
}

// PodRestoreList is a list of PodRestores.
//
// +kubebuilder:object:root=true
type PodRestoreList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []PodRestore `json:"items"`
}

func init() {
	SchemeBuilder.Register(&PodRestore{}, &PodRestoreList{})
}
