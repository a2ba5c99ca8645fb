// Package v1alpha1 holds the livemigrate.io/v1alpha1 API served by the Karmada
// control plane: ClusterLatency (measured round-trip times between member
// clusters and named origins) and LiveMigration (one live migration of a
// workload between member clusters).
//
// +kubebuilder:object:generate=true
// +groupName=livemigrate.io
package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the group and version of this API.
	GroupVersion = schema.GroupVersion{Group: "livemigrate.io", Version: "v1alpha1"}

	// SchemeBuilder registers the types of this API with a runtime.Scheme.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme adds the types of this API to a runtime.Scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)
