package selftest

import (
	"context"
	"fmt"
	"io"
	"net"
	"sort"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"

	clusterv1alpha1 "github.com/karmada-io/karmada/pkg/apis/cluster/v1alpha1"
	policyv1alpha1 "github.com/karmada-io/karmada/pkg/apis/policy/v1alpha1"

	"github.com/livemigrate/livemigrate/test/lab"
)

func TestMembersReadyWithCapacity(t *testing.T) {
	ctx := context.Background()
	clusters, err := testLab.Karmada.Karmada.ClusterV1alpha1().Clusters().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range clusters.Items {
		names = append(names, c.Name)
		if c.Spec.SyncMode != clusterv1alpha1.Push {
			t.Errorf("cluster %s sync mode = %s, want Push", c.Name, c.Spec.SyncMode)
		}
		m := testLab.Member(c.Name)
		if m == nil {
			t.Errorf("Karmada has a cluster %s the lab does not know", c.Name)
			continue
		}
		// Two nodes of the default capacity: 16 CPU allocatable in total.
		want := m.Spec.NodeCapacity.Cpu().MilliValue() * int64(m.Spec.Nodes)
		got := c.Status.ResourceSummary.Allocatable.Cpu().MilliValue()
		if got != want {
			t.Errorf("cluster %s allocatable CPU = %dm, want %dm", c.Name, got, want)
		}
	}
	sort.Strings(names)
	if diff := cmp.Diff([]string{"member1", "member2"}, names); diff != "" {
		t.Errorf("clusters (-want +got):\n%s", diff)
	}
}

func TestNodesReadyAndUntainted(t *testing.T) {
	for _, m := range testLab.Members {
		nodes, err := m.Client.CoreV1().Nodes().List(context.Background(), metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(nodes.Items) != m.Spec.Nodes {
			t.Errorf("%s has %d nodes, want %d", m.Name, len(nodes.Items), m.Spec.Nodes)
		}
		for _, n := range nodes.Items {
			if len(n.Spec.Taints) != 0 {
				t.Errorf("node %s has taints %v", n.Name, n.Spec.Taints)
			}
			ready := false
			for _, c := range n.Status.Conditions {
				ready = ready || (c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue)
			}
			if !ready {
				t.Errorf("node %s is not Ready", n.Name)
			}
		}
	}
}

func TestVersions(t *testing.T) {
	for _, c := range append([]*lab.Cluster{&testLab.Karmada.Cluster}, clustersOf(testLab.Members)...) {
		v, err := c.Client.Discovery().ServerVersion()
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff("v1.35.4", v.GitVersion); diff != "" {
			t.Errorf("%s apiserver version (-want +got):\n%s", c.Name, diff)
		}
	}
	cl, err := testLab.Karmada.Karmada.ClusterV1alpha1().Clusters().Get(context.Background(), "member1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff("v1.35.4", cl.Status.KubernetesVersion); diff != "" {
		t.Errorf("Karmada's view of member1's version (-want +got):\n%s", diff)
	}
}

func clustersOf(ms []*lab.Member) []*lab.Cluster {
	out := make([]*lab.Cluster, 0, len(ms))
	for _, m := range ms {
		out = append(out, &m.Cluster)
	}
	return out
}

// TestPropagation runs a Deployment through Karmada to a member where its
// pods run on kwok nodes, then deletes it and checks that the garbage
// collector of the Karmada plane removes its ResourceBinding.
func TestPropagation(t *testing.T) {
	ctx := context.Background()
	ns := "selftest-propagation"
	k := testLab.Karmada
	if _, err := k.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, schedulerName := range []string{lab.DefaultSchedulerName, lab.StockSchedulerName} {
		t.Run(schedulerName, func(t *testing.T) {
			name := "web-" + schedulerName
			dep := deployment(ns, name, 2)
			if _, err := k.Client.AppsV1().Deployments(ns).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			pp := &policyv1alpha1.PropagationPolicy{
				ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
				Spec: policyv1alpha1.PropagationSpec{
					ResourceSelectors: []policyv1alpha1.ResourceSelector{{APIVersion: "apps/v1", Kind: "Deployment", Name: name}},
					Placement: policyv1alpha1.Placement{
						ClusterAffinity: &policyv1alpha1.ClusterAffinity{ClusterNames: []string{"member2"}},
					},
					SchedulerName: schedulerName,
				},
			}
			if _, err := k.Karmada.PolicyV1alpha1().PropagationPolicies(ns).Create(ctx, pp, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			m := testLab.Member("member2")
			err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 90*time.Second, true, func(ctx context.Context) (bool, error) {
				pods, err := m.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + name})
				if err != nil {
					return false, nil
				}
				running := 0
				for _, p := range pods.Items {
					if p.Status.Phase == corev1.PodRunning && p.Spec.NodeName != "" {
						running++
					}
				}
				return running == 2, nil
			})
			if err != nil {
				t.Fatalf("pods of %s not Running in member2: %v", name, err)
			}
			if err := k.Client.AppsV1().Deployments(ns).Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
			err = wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
				rbs, err := k.Karmada.WorkV1alpha2().ResourceBindings(ns).List(ctx, metav1.ListOptions{})
				if err != nil {
					return false, nil
				}
				for _, rb := range rbs.Items {
					if rb.Spec.Resource.Name == name {
						return false, nil
					}
				}
				_, err = m.Client.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
				return err != nil, nil
			})
			if err != nil {
				t.Fatalf("deleting %s left its ResourceBinding or member workload behind: %v", name, err)
			}
		})
	}
}

func deployment(ns, name string, replicas int32) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name: "app", Image: "registry.example/app:1",
					Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
						corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("64Mi"),
					}},
				}}},
			},
		},
	}
}

// TestRelayBetweenMembers measures the round trip between member1 and
// member2 through the lab's relay.
func TestRelayBetweenMembers(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	addr, err := testLab.Relay("member1", "member2", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	want, err := testLab.ExpectedRTT("member1", "member2")
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var best time.Duration
	buf := make([]byte, 1)
	for i := range 6 {
		start := time.Now()
		if _, err := c.Write([]byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			t.Fatal(err)
		}
		if rtt := time.Since(start); i > 0 && (best == 0 || rtt < best) {
			best = rtt
		}
	}
	if best < want || best > want+20*time.Millisecond {
		t.Errorf("RTT member1↔member2 = %v, want %v (+20ms)", best, want)
	}
	fmt.Printf("measured RTT member1↔member2: %v (configured %v)\n", best, want)
}
