package lab

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// memberControllers are the kube-controller-manager controllers of a member
// cluster: all but node IPAM (no pod network; the cloud ones are off without
// a cloud provider).
const memberControllers = "*,-node-ipam-controller"

// kwokStages are the kwok stage files (from the kwok module) that make
// nodes Ready with lease heartbeats and pods Running.
var kwokStages = []string{
	"kustomize/stage/node/fast/node-initialize.yaml",
	"kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
	"kustomize/stage/pod/fast/pod-ready.yaml",
	"kustomize/stage/pod/fast/pod-complete.yaml",
	"kustomize/stage/pod/fast/pod-delete.yaml",
}

// labelRuntime marks pods whose status the lab node runtime writes (the
// value of labnode.LabelRuntime); kwok's pod-ready stage skips them.
const labelRuntime = "lab.livemigrate.io/runtime"

// NodeLabelMember is put on every kwok node with the member's name.
const NodeLabelMember = "lab.livemigrate.io/member"

// startMember runs a member's controllers, scheduler and kwok, creates its
// nodes and waits until they are Ready and untainted.
func (l *Lab) startMember(ctx context.Context, m *Member) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return l.startKubeControllerManager(gctx, &m.Cluster, memberControllers) })
	g.Go(func() error { return l.startKubeScheduler(gctx, &m.Cluster) })
	g.Go(func() error { return l.startKwok(gctx, m) })
	g.Go(func() error { return l.createNodes(gctx, m) })
	g.Go(func() error {
		files, err := l.projectCRDs(true)
		if err != nil {
			return err
		}
		return installCRDs(gctx, &m.Cluster, files)
	})
	if err := g.Wait(); err != nil {
		return err
	}
	return l.waitNodesReady(ctx, m)
}

func (l *Lab) startKwok(_ context.Context, m *Member) error {
	kwokDir, err := kwokModuleDir()
	if err != nil {
		return err
	}
	paths := make([]string, 0, len(kwokStages))
	for _, s := range kwokStages {
		paths = append(paths, filepath.Join(kwokDir, s))
	}
	stages, err := readFiles(paths...)
	if err != nil {
		return err
	}
	if stages, err = kwokConfig(stages); err != nil {
		return err
	}
	cfg := filepath.Join(l.Dir, m.Name+"-kwok.yaml")
	if err := os.WriteFile(cfg, stages, 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", cfg, err)
	}
	port, err := l.port("kwok-" + m.Name)
	if err != nil {
		return err
	}
	args := []string{
		"--kubeconfig=" + m.Kubeconfig,
		"--config=" + cfg,
		"--manage-all-nodes=true",
		fmt.Sprintf("--server-address=127.0.0.1:%d", port),
		"--node-lease-duration-seconds=40",
		"--v=INFO",
	}
	_, err = l.sup.start("kwok-"+m.Name, l.bin("kwok"), args, nil)
	return err
}

// runtimePodDelete removes the object of a deleted pod of the lab node
// runtime when that runtime did not: at the end of its grace period
// (.metadata.deletionTimestamp), as the pod garbage collector would once
// the node is declared out of service. It acts only on pods whose runtime
// is down; a running one removes them as soon as their processes stopped.
var runtimePodDelete = `apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: lab-runtime-pod-delete
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
    - key: '.metadata.deletionTimestamp'
      operator: 'Exists'
    - key: '.metadata.labels."` + labelRuntime + `"'
      operator: 'Exists'
  delay:
    durationMilliseconds: 0
    durationFrom:
      expressionFrom: '.metadata.deletionTimestamp'
  next:
    delete: true
`

// kwokConfig adapts kwok's stages (kwokStages, concatenated) to the lab
// node runtime: its pods (labnode.LabelRuntime) get their status from it,
// Ready only once their processes run, and their objects are removed by it
// once their processes stopped, as a kubelet confirms a deletion only once
// the pod's containers stopped. kwok's stages leave those pods alone, but
// for the removal of a deleted pod whose runtime is down
// (runtimePodDelete).
func kwokConfig(stages []byte) ([]byte, error) {
	notRuntime := "    - key: '.metadata.labels.\"" + labelRuntime + "\"'\n      operator: 'DoesNotExist'\n"
	for _, g := range []struct{ stage, gate string }{
		{kwokStages[2], "    - key: '.metadata.deletionTimestamp'\n      operator: 'DoesNotExist'\n    - key: '.status.phase'\n      operator: 'In'\n      values:\n      - 'Pending'\n"},
		{kwokStages[4], "    - key: '.metadata.deletionTimestamp'\n      operator: 'Exists'\n  next:\n    delete: true\n"},
	} {
		if bytes.Count(stages, []byte(g.gate)) != 1 {
			return nil, fmt.Errorf("the kwok stage %s changed: cannot leave the lab node runtime's pods to it", g.stage)
		}
		stages = bytes.Replace(stages, []byte(g.gate), []byte(notRuntime+g.gate), 1)
	}
	if !bytes.HasSuffix(stages, []byte("\n")) {
		stages = append(stages, '\n')
	}
	return append(stages, []byte("---\n"+runtimePodDelete)...), nil
}

// createNodes creates the member's fake nodes with their capacity.
func (l *Lab) createNodes(ctx context.Context, m *Member) error {
	for i := 1; i <= m.Spec.Nodes; i++ {
		name := fmt.Sprintf("%s-node-%d", m.Name, i)
		node := &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{
				Name: name,
				Labels: map[string]string{
					"type":                   "kwok",
					"kubernetes.io/hostname": name,
					"kubernetes.io/os":       "linux",
					"kubernetes.io/arch":     "amd64",
					NodeLabelMember:          m.Name,
				},
				Annotations: map[string]string{"kwok.x-k8s.io/node": "fake"},
			},
			Status: corev1.NodeStatus{
				Capacity:    m.Spec.NodeCapacity.DeepCopy(),
				Allocatable: m.Spec.NodeCapacity.DeepCopy(),
				NodeInfo: corev1.NodeSystemInfo{
					Architecture: "amd64", OperatingSystem: "linux",
					KubeletVersion: "v1.35.4",
				},
			},
		}
		if _, err := m.Client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating node %s in %s: %w", name, m.Name, err)
		}
		m.Nodes = append(m.Nodes, name)
	}
	return nil
}

// waitNodesReady waits until every node is Ready and carries no taint (the
// node lifecycle controller removes the not-ready taint).
func (l *Lab) waitNodesReady(ctx context.Context, m *Member) error {
	return poll(ctx, "nodes of "+m.Name, func(ctx context.Context) (bool, string, error) {
		nodes, err := m.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err.Error(), nil
		}
		ready := 0
		for _, n := range nodes.Items {
			if nodeReady(&n) && len(n.Spec.Taints) == 0 {
				ready++
			}
		}
		return ready == m.Spec.Nodes, fmt.Sprintf("%d of %d nodes Ready and untainted", ready, m.Spec.Nodes), nil
	})
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
