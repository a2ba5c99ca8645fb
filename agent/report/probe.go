package report

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/livemigrate/livemigrate/agent/kubelet"
)

// Checkpointer is the kubelet client's checkpoint call.
type Checkpointer interface {
	Checkpoint(ctx context.Context, host string, port int, namespace, pod, container string, timeout time.Duration) ([]string, error)
}

// ProbePod is the pod the probe asks the kubelet to checkpoint; it never
// exists, so nothing is ever checkpointed.
const ProbePod = "livemigrate-checkpoint-api-probe"

// ProbeCheckpointAPI asks the node's kubelet (host, or the Node's
// InternalIP; port, or the Node's kubelet port) to checkpoint a pod that
// does not exist: a kubelet with the API and the agent authorized answers
// "pod does not exist". Anything else says what to fix.
func ProbeCheckpointAPI(c Checkpointer, host string, port int, namespace string) func(context.Context, *corev1.Node) string {
	return func(ctx context.Context, node *corev1.Node) string {
		h, p := host, port
		if h == "" {
			for _, a := range node.Status.Addresses {
				if a.Type == corev1.NodeInternalIP {
					h = a.Address
					break
				}
			}
		}
		if p == 0 {
			p = int(node.Status.DaemonEndpoints.KubeletEndpoint.Port)
		}
		if h == "" {
			return "the node has no InternalIP to reach its kubelet at"
		}
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		_, err := c.Checkpoint(ctx, h, p, namespace, ProbePod, "probe", 0)
		switch kubelet.ReasonOf(err) {
		case kubelet.ReasonPodNotFound, kubelet.ReasonContainerNotFound:
			return CheckpointAPIOK
		case kubelet.ReasonFeatureDisabled:
			return "the kubelet has no checkpoint API: enable its ContainerCheckpoint feature gate (on by default since 1.30)"
		case kubelet.ReasonUnauthorized, kubelet.ReasonForbidden:
			return fmt.Sprintf("the kubelet refused the agent (%v): it needs create on nodes/checkpoint and the kubelet's webhook authorization", err)
		}
		if err == nil {
			return "the kubelet checkpointed a pod that does not exist"
		}
		return fmt.Sprintf("the kubelet's checkpoint API did not answer: %v", err)
	}
}

// ProbeRegistries returns a probe of each registry (host[:port]) the node
// pushes checkpoint images to or pulls them from: GET /v2/, over plain
// HTTP for the hosts in insecure, else HTTPS with the client's roots. A
// registry answers 200, or 401 when it wants credentials (the push
// Secret's); anything else says what is wrong.
func ProbeRegistries(hc *http.Client, hosts, insecure []string) func(context.Context) map[string]string {
	return func(ctx context.Context) map[string]string {
		out := map[string]string{}
		for _, h := range hosts {
			out[h] = probeRegistry(ctx, hc, h, slices.Contains(insecure, h))
		}
		return out
	}
}

func probeRegistry(ctx context.Context, hc *http.Client, host string, insecure bool) string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	scheme := "https"
	if insecure {
		scheme = "http"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme+"://"+host+"/v2/", nil)
	if err != nil {
		return fmt.Sprintf("not a registry host: %v", err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Sprintf("unreachable: %v", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusUnauthorized {
		return RegistryOK
	}
	return fmt.Sprintf("GET %s://%s/v2/ answered %s, not a registry's 200 or 401", scheme, host, resp.Status)
}
