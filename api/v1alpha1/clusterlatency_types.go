package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ClusterLatencySpec is intentionally empty: what a prober measures comes from
// its own configuration file, and everything it measures lives in status.
type ClusterLatencySpec struct{}

// RTTMeasurement is the round-trip time measured from the object's cluster to
// one peer cluster or one named origin during the last probe round.
// +kubebuilder:validation:XValidation:rule="!has(self.p50) || !has(self.p90) || duration(self.p50) <= duration(self.p90)",message="p50 must not exceed p90"
type RTTMeasurement struct {
	// Name is the peer cluster's name (for peers) or the origin's name (for origins).
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +required
	Name string `json:"name"`

	// Address is the host:port that was probed.
	// +kubebuilder:validation:MaxLength=512
	// +optional
	Address string `json:"address,omitempty"`

	// P50 is the median round-trip time of the successful samples.
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('0s')",message="p50 must be a non-negative duration"
	// +optional
	P50 *metav1.Duration `json:"p50,omitempty"`

	// P90 is the 90th percentile round-trip time of the successful samples.
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('0s')",message="p90 must be a non-negative duration"
	// +optional
	P90 *metav1.Duration `json:"p90,omitempty"`

	// Samples is the number of successful samples the percentiles come from.
	// +kubebuilder:validation:Minimum=0
	// +optional
	Samples int32 `json:"samples,omitempty"`

	// Failures is the number of failed samples in the round.
	// +kubebuilder:validation:Minimum=0
	// +optional
	Failures int32 `json:"failures,omitempty"`

	// ObservedAt is when the round that produced this measurement ended.
	// +required
	ObservedAt metav1.Time `json:"observedAt"`

	// LastError is the last probe error of the round, if any (truncated).
	// +kubebuilder:validation:MaxLength=256
	// +optional
	LastError string `json:"lastError,omitempty"`
}

// ClusterLatencyStatus holds the RTTs measured by the cluster's prober.
type ClusterLatencyStatus struct {
	// Peers holds the RTT from this cluster to each peer member cluster.
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=1000
	// +optional
	Peers []RTTMeasurement `json:"peers,omitempty"`

	// Origins holds the RTT from this cluster to each named origin (e.g. a
	// user population's ingress point).
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=256
	// +optional
	Origins []RTTMeasurement `json:"origins,omitempty"`

	// LastProbeTime is when the prober last wrote this status.
	// +optional
	LastProbeTime *metav1.Time `json:"lastProbeTime,omitempty"`

	// Summary is a one-line digest of the p50s for people ("member2=25.4ms
	// member3=85.2ms | eu-users=11.2ms"), shown by kubectl get.
	// +kubebuilder:validation:MaxLength=1024
	// +optional
	Summary string `json:"summary,omitempty"`

	// ProberVersion identifies the prober build that wrote this status.
	// +kubebuilder:validation:MaxLength=64
	// +optional
	ProberVersion string `json:"proberVersion,omitempty"`
}

// ClusterLatency holds the measured round-trip times from one member cluster
// (its name is the member cluster's name) to its peer clusters and to named
// origins. It lives in the Karmada control plane; each cluster's
// livemigrate-prober writes its status and the scheduler's Latency plugin
// reads it.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=clat,categories=livemigrate
// +kubebuilder:printcolumn:name="Last-Probe",type=date,JSONPath=`.status.lastProbeTime`
// +kubebuilder:printcolumn:name="P50 (peers | origins)",type=string,JSONPath=`.status.summary`
// +kubebuilder:printcolumn:name="Prober",type=string,JSONPath=`.status.proberVersion`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:validation:XValidation:rule="!has(self.status) || !has(self.status.peers) || self.status.peers.all(p, p.name != self.metadata.name)",message="a cluster is not its own peer: status.peers must not name the ClusterLatency itself"
type ClusterLatency struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +optional
	Spec ClusterLatencySpec `json:"spec,omitempty"`
	// +optional
	Status ClusterLatencyStatus `json:"status,omitempty"`
}

// ClusterLatencyList is a list of ClusterLatency.
//
// +kubebuilder:object:root=true
type ClusterLatencyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ClusterLatency `json:"items"`
}

func init() {
	SchemeBuilder.Register(&ClusterLatency{}, &ClusterLatencyList{})
}
