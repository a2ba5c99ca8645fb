// Package binding holds what the scheduler plugins read from a Karmada
// ResourceBinding the same way.
package binding

import (
	workv1alpha2 "github.com/karmada-io/karmada/pkg/apis/work/v1alpha2"
)

// RunsOn reports whether the binding is already scheduled to the cluster
// named name (one of spec.clusters).
func RunsOn(spec *workv1alpha2.ResourceBindingSpec, name string) bool {
	for i := range spec.Clusters {
		if spec.Clusters[i].Name == name {
			return true
		}
	}
	return false
}
