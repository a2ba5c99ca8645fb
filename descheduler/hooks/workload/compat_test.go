package workload

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	dtesting "github.com/livemigrate/livemigrate/descheduler/internal/testing"
	"github.com/livemigrate/livemigrate/descheduler/migration"
)

func mkNode(name, arch, runtime string, ready bool) *corev1.Node {
	st := corev1.ConditionTrue
	if !ready {
		st = corev1.ConditionFalse
	}
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Status: corev1.NodeStatus{
		Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: st}},
		NodeInfo:   corev1.NodeSystemInfo{Architecture: arch, OperatingSystem: "linux", ContainerRuntimeVersion: runtime},
	}}
}

func TestCompatibility(t *testing.T) {
	src := fake.NewClientBuilder().WithScheme(dtesting.Scheme()).WithObjects(mkNode("s1", "amd64", "cri-o://1.30.0", true)).Build()
	cases := map[string]struct {
		target []client.Object
		want   string
	}{
		"same platform":          {target: []client.Object{mkNode("t1", "amd64", "cri-o://1.31.2", true)}},
		"unknown fields compare": {target: []client.Object{mkNode("t1", "", "", true)}},
		"other arch": {target: []client.Object{mkNode("t1", "arm64", "cri-o://1.30.0", true)},
			want: "pod db-0 runs on linux/amd64 cri-o (node s1); no Ready node of b matches (it has linux/arm64 cri-o)"},
		"other runtime": {target: []client.Object{mkNode("t1", "amd64", "containerd://2.0", true)},
			want: "it has linux/amd64 containerd"},
		"matching node not ready": {target: []client.Object{mkNode("t1", "amd64", "cri-o://1.30.0", false)},
			want: "no Ready schedulable node"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			dst := fake.NewClientBuilder().WithScheme(dtesting.Scheme()).WithObjects(tc.target...).Build()
			c := &Compatibility{Clients: clients{"a": src, "b": dst}}
			err := c.Check(context.Background(), migration.Migration{Source: "a", Target: "b"}, []migration.Pod{{Name: "db-0", Node: "s1"}})
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !migration.IsStepFailed(err) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want StepFailed with %q", err, tc.want)
			}
		})
	}
}
