package binding

import (
	"testing"

	workv1alpha2 "github.com/karmada-io/karmada/pkg/apis/work/v1alpha2"
)

func TestRunsOn(t *testing.T) {
	spec := &workv1alpha2.ResourceBindingSpec{Clusters: []workv1alpha2.TargetCluster{{Name: "a", Replicas: 1}, {Name: "b"}}}
	for _, tc := range []struct {
		name string
		spec *workv1alpha2.ResourceBindingSpec
		want bool
	}{
		{name: "a", spec: spec, want: true},
		{name: "b", spec: spec, want: true},
		{name: "c", spec: spec, want: false},
		{name: "a", spec: &workv1alpha2.ResourceBindingSpec{}, want: false},
	} {
		if got := RunsOn(tc.spec, tc.name); got != tc.want {
			t.Errorf("RunsOn(%v, %q) = %v, want %v", tc.spec.Clusters, tc.name, got, tc.want)
		}
	}
}
