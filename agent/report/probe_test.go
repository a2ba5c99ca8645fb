package report

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/livemigrate/livemigrate/agent/kubelet"
)

type fakeCheckpointer struct {
	err       error
	host, pod string
	port      int
}

func (f *fakeCheckpointer) Checkpoint(_ context.Context, host string, port int, namespace, pod, container string, _ time.Duration) ([]string, error) {
	f.host, f.port, f.pod = host, port, pod
	if f.err == nil {
		return []string{"/x.tar"}, nil
	}
	return nil, f.err
}

// The probe asks the kubelet of the Node's InternalIP and kubelet port to
// checkpoint a pod that does not exist, and tells each answer apart.
func TestProbeCheckpointAPI(t *testing.T) {
	node := &corev1.Node{Status: corev1.NodeStatus{
		Addresses:       []corev1.NodeAddress{{Type: corev1.NodeHostName, Address: "n1"}, {Type: corev1.NodeInternalIP, Address: "192.0.2.7"}},
		DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: 10250}},
	}}
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"answers", &kubelet.Error{Reason: kubelet.ReasonPodNotFound, StatusCode: 404}, CheckpointAPIOK},
		{"feature off", &kubelet.Error{Reason: kubelet.ReasonFeatureDisabled, StatusCode: 404}, "ContainerCheckpoint feature gate"},
		{"forbidden", &kubelet.Error{Reason: kubelet.ReasonForbidden, StatusCode: 403}, "nodes/checkpoint"},
		{"unreachable", errors.New("dial tcp 192.0.2.7:10250: connect: connection refused"), "did not answer: dial tcp"},
		{"checkpointed", nil, "checkpointed a pod that does not exist"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeCheckpointer{err: tc.err}
			got := ProbeCheckpointAPI(f, "", 0, "livemigrate-system")(context.Background(), node)
			if !strings.Contains(got, tc.want) {
				t.Errorf("got %q, want it to contain %q", got, tc.want)
			}
			if f.host != "192.0.2.7" || f.port != 10250 || f.pod != ProbePod {
				t.Errorf("asked %s:%d for pod %s", f.host, f.port, f.pod)
			}
		})
	}
}
