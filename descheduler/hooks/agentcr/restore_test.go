package agentcr

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	agentv1alpha1 "github.com/livemigrate/livemigrate/api/agent/v1alpha1"
	"github.com/livemigrate/livemigrate/test/builder"
)

// Status names the target nodes the restore depends on that are not Ready:
// the node the PodRestore pins the pods to and the nodes of the workload's
// scheduled pods; a pod being deleted, or of another workload, does not count.
func TestRestoreStatusReportsUnreadyNodes(t *testing.T) {
	node := func(name string, ready corev1.ConditionStatus) *corev1.Node {
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
		if ready != "" {
			n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: ready}}
		}
		return n
	}
	pod := func(name, app, nodeName string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, Labels: map[string]string{"app": app},
			Annotations: map[string]string{agentv1alpha1.AnnotationRestore: "db-01234567", agentv1alpha1.AnnotationRestoreCheckpoint: "db-0"}},
			Spec: corev1.PodSpec{NodeName: nodeName, SchedulingGates: []corev1.PodSchedulingGate{{Name: agentv1alpha1.SchedulingGateCheckpointImage}}}}
	}
	sts := &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "db"},
		Spec: appsv1.StatefulSetSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}}}}
	pr := builder.MakePodRestore("ns", "db-01234567", "0123456789abcdef", "StatefulSet", "db").Node("pinned").
		Checkpoint("db-0", nil, "db", "").Obj()
	cases := []struct {
		name string
		objs []client.Object
		want []string
	}{
		{"all ready", []client.Object{node("pinned", corev1.ConditionTrue), node("n1", corev1.ConditionTrue), pod("db-0", "db", "n1")}, nil},
		{"pod's node unknown", []client.Object{node("pinned", corev1.ConditionTrue), node("n1", corev1.ConditionUnknown), pod("db-0", "db", "n1")}, []string{"n1"}},
		{"pinned node not ready, pod not scheduled", []client.Object{node("pinned", corev1.ConditionFalse), pod("db-0", "db", "")}, []string{"pinned"}},
		{"pod's node deleted", []client.Object{node("pinned", corev1.ConditionTrue), pod("db-0", "db", "gone")}, []string{"gone"}},
		{"other workload's node", []client.Object{node("pinned", corev1.ConditionTrue), node("n2", corev1.ConditionFalse), pod("web-0", "web", "n2")}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dst := member(append(tc.objs, sts, pr.DeepCopy())...)
			h := &Restore{Clients: clients{"b": dst}}
			rs, err := h.Status(context.Background(), mig)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, rs.UnreadyNodes); diff != "" {
				t.Errorf("unready nodes (-want +got):\n%s", diff)
			}
		})
	}
}
