// Package v1alpha1 holds the agent.livemigrate.io/v1alpha1 API installed in
// every member cluster: the requests the livemigrate-agent on a named node
// acts on (PodCheckpoint, PodRestore, VolumeReplication) and reports on in
// their status.
//
// +kubebuilder:object:generate=true
// +groupName=agent.livemigrate.io
package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the group and version of this API.
	GroupVersion = schema.GroupVersion{Group: "agent.livemigrate.io", Version: "v1alpha1"}

	// SchemeBuilder registers the types of this API with a runtime.Scheme.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme adds the types of this API to a runtime.Scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)
