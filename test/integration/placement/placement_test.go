package placement

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"

	policyv1alpha1 "github.com/karmada-io/karmada/pkg/apis/policy/v1alpha1"

	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
	"github.com/livemigrate/livemigrate/plugins/latency"
	"github.com/livemigrate/livemigrate/test/lab"
)

const (
	pollInterval = 250 * time.Millisecond
	waitTimeout  = 2 * time.Minute
	namespace    = "placement"
	// maxRTT keeps member3 (82ms from eu-users) out for our scheduler.
	maxRTT = "50ms"
	// rttSlack is how much more than configured a measured RTT may be on a
	// loaded two-core machine; the relay's own tests check it closely.
	rttSlack = 30 * time.Millisecond
)

var clusterLatencyGVR = schema.GroupVersionResource{Group: "livemigrate.io", Version: "v1alpha1", Resource: "clusterlatencies"}

// TestPlacementByCapacityAndLatency places a stateful workload (one
// cluster, 2 CPU) that must be near eu-users within 50ms:
//
//   - member3 is too far (82ms): Latency filters it, although it has the
//     most free capacity;
//   - member1 (4ms, 8 CPU) beats member2 (22ms, 16 CPU): Latency prefers it
//     more than Capacity prefers member2;
//   - once member1 is full, the next one goes to member2.
//
// Without the latency annotations our scheduler picks member3 (most
// headroom). The stock karmada-scheduler, which knows neither latency nor
// headroom, puts both annotated workloads on member3, the member with the
// most free capacity.
func TestPlacementByCapacityAndLatency(t *testing.T) {
	ctx := context.Background()
	k := testLab.Karmada
	if _, err := k.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitForLatencies(t)

	place := func(t *testing.T, name, schedulerName string) string {
		t.Helper()
		createStatefulWorkload(t, name, schedulerName, true)
		return waitForPlacement(t, name)
	}

	t.Run("ours: near and fitting", func(t *testing.T) {
		if diff := cmp.Diff("member1", place(t, "db1", lab.DefaultSchedulerName)); diff != "" {
			t.Errorf("db1 placed (-want +got):\n%s", diff)
		}
	})
	t.Run("ours without latency annotations: most headroom", func(t *testing.T) {
		// Control: with nothing to be near, Capacity alone decides.
		createStatefulWorkload(t, "cache1", lab.DefaultSchedulerName, false)
		if diff := cmp.Diff("member3", waitForPlacement(t, "cache1")); diff != "" {
			t.Errorf("cache1 placed (-want +got):\n%s", diff)
		}
	})
	t.Run("stock: most capacity", func(t *testing.T) {
		if diff := cmp.Diff("member3", place(t, "stock-db1", lab.StockSchedulerName)); diff != "" {
			t.Errorf("stock-db1 placed (-want +got):\n%s", diff)
		}
	})

	// member1 fills up outside Karmada: 3 more pods of 2 CPU take its last
	// 6 of 8 CPU.
	fillMember(t, testLab.Member("member1"), 3, "2")

	t.Run("ours: member1 full, next nearest", func(t *testing.T) {
		if diff := cmp.Diff("member2", place(t, "db2", lab.DefaultSchedulerName)); diff != "" {
			t.Errorf("db2 placed (-want +got):\n%s", diff)
		}
	})
	t.Run("stock: still most capacity", func(t *testing.T) {
		if diff := cmp.Diff("member3", place(t, "stock-db2", lab.StockSchedulerName)); diff != "" {
			t.Errorf("stock-db2 placed (-want +got):\n%s", diff)
		}
	})
	// db1 stays where it is: a capacity change alone never moves a workload.
	if diff := cmp.Diff("member1", waitForPlacement(t, "db1")); diff != "" {
		t.Errorf("db1 after member1 filled up (-want +got):\n%s", diff)
	}
}

// waitForLatencies waits until every member's prober has measured every
// peer and eu-users through the relays, within the configured network's
// RTTs: never below them (that would mean a path around the relays), and at
// most rttSlack above (a loaded machine may need a later probe round).
func waitForLatencies(t *testing.T) {
	t.Helper()
	members := []string{"member1", "member2", "member3"}
	var got map[string]time.Duration
	var pending []string
	err := wait.PollUntilContextTimeout(context.Background(), pollInterval, waitTimeout, true, func(ctx context.Context) (bool, error) {
		got, pending = map[string]time.Duration{}, nil
		for _, m := range members {
			u, err := testLab.Karmada.Dynamic.Resource(clusterLatencyGVR).Get(ctx, m, metav1.GetOptions{})
			if err != nil {
				return false, nil
			}
			var cl lmv1alpha1.ClusterLatency
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &cl); err != nil {
				return false, err
			}
			for _, p := range append(cl.Status.Peers, cl.Status.Origins...) {
				if p.P50 == nil {
					continue
				}
				want, err := testLab.ExpectedRTT(m, p.Name)
				if err != nil {
					return false, err
				}
				rtt := p.P50.Duration
				if rtt < want {
					return false, fmt.Errorf("measured RTT %s->%s = %v, below the configured %v", m, p.Name, rtt, want)
				}
				if rtt > want+rttSlack {
					pending = append(pending, fmt.Sprintf("%s->%s = %v (configured %v)", m, p.Name, rtt, want))
				}
				got[m+"->"+p.Name] = rtt
			}
		}
		return len(got) == len(members)*len(members) && len(pending) == 0, nil
	})
	if err != nil {
		t.Fatalf("waiting for ClusterLatency measurements: %v (have %v; above the configured RTT + %v: %v)", err, got, rttSlack, pending)
	}
	for key, rtt := range got {
		t.Logf("measured RTT %s = %v", key, rtt)
	}
}

// createStatefulWorkload creates a 1-replica Deployment of 2 CPU and a
// policy that keeps it in one cluster, near eu-users if nearUsers.
func createStatefulWorkload(t *testing.T, name, schedulerName string, nearUsers bool) {
	t.Helper()
	ctx := context.Background()
	k := testLab.Karmada
	labels := map[string]string{"app": name}
	var annotations map[string]string
	if nearUsers {
		annotations = map[string]string{latency.AnnotationNear: "origin:eu-users", latency.AnnotationMaxRTT: maxRTT}
	}
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: labels, Annotations: annotations},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Strategy: appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name: "db", Image: "registry.example/db:1",
					Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
						corev1.ResourceCPU: resource.MustParse("2"), corev1.ResourceMemory: resource.MustParse("4Gi"),
					}},
				}}},
			},
		},
	}
	if _, err := k.Client.AppsV1().Deployments(namespace).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pp := &policyv1alpha1.PropagationPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
		Spec: policyv1alpha1.PropagationSpec{
			ResourceSelectors: []policyv1alpha1.ResourceSelector{{APIVersion: "apps/v1", Kind: "Deployment", Name: name}},
			Placement: policyv1alpha1.Placement{
				SpreadConstraints: []policyv1alpha1.SpreadConstraint{{
					SpreadByField: policyv1alpha1.SpreadByFieldCluster, MaxGroups: 1, MinGroups: 1,
				}},
				ReplicaScheduling: &policyv1alpha1.ReplicaSchedulingStrategy{
					ReplicaSchedulingType:     policyv1alpha1.ReplicaSchedulingTypeDivided,
					ReplicaDivisionPreference: policyv1alpha1.ReplicaDivisionPreferenceAggregated,
				},
			},
			SchedulerName: schedulerName,
		},
	}
	if _, err := k.Karmada.PolicyV1alpha1().PropagationPolicies(namespace).Create(ctx, pp, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// waitForPlacement returns the cluster a workload's binding is scheduled
// to, once its pod runs there.
func waitForPlacement(t *testing.T, name string) string {
	t.Helper()
	var cluster string
	err := wait.PollUntilContextTimeout(context.Background(), pollInterval, waitTimeout, true, func(ctx context.Context) (bool, error) {
		rb, err := testLab.Karmada.Karmada.WorkV1alpha2().ResourceBindings(namespace).Get(ctx, name+"-deployment", metav1.GetOptions{})
		if err != nil || len(rb.Spec.Clusters) != 1 {
			return false, nil
		}
		cluster = rb.Spec.Clusters[0].Name
		return podRunning(ctx, testLab.Member(cluster), namespace, "app="+name), nil
	})
	if err != nil {
		t.Fatalf("waiting for %s to be placed and running: %v (binding says %q)", name, err, cluster)
	}
	return cluster
}

func podRunning(ctx context.Context, m *lab.Member, ns, selector string) bool {
	pods, err := m.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return false
	}
	for _, p := range pods.Items {
		if p.Status.Phase == corev1.PodRunning {
			return true
		}
	}
	return false
}

// fillMember runs n pods requesting cpu each directly in a member, and
// waits until Karmada's view of the member counts them as allocated.
func fillMember(t *testing.T, m *lab.Member, n int32, cpu string) {
	t.Helper()
	ctx := context.Background()
	before, err := testLab.Karmada.Karmada.ClusterV1alpha1().Clusters().Get(ctx, m.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	allocatedBefore := before.Status.ResourceSummary.Allocated.Cpu().MilliValue()
	if _, err := m.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "filler"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	labels := map[string]string{"app": "filler"}
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "filler", Namespace: "filler"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(n),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name: "filler", Image: "registry.example/filler:1",
					Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu)}},
				}}},
			},
		},
	}
	if _, err := m.Client.AppsV1().Deployments("filler").Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	perPod := resource.MustParse(cpu)
	want := allocatedBefore + int64(n)*perPod.MilliValue()
	err = wait.PollUntilContextTimeout(ctx, pollInterval, waitTimeout, true, func(ctx context.Context) (bool, error) {
		c, err := testLab.Karmada.Karmada.ClusterV1alpha1().Clusters().Get(ctx, m.Name, metav1.GetOptions{})
		if err != nil || c.Status.ResourceSummary == nil {
			return false, nil
		}
		return c.Status.ResourceSummary.Allocated.Cpu().MilliValue() >= want, nil
	})
	if err != nil {
		t.Fatalf("waiting for Karmada to see %s's CPU allocated reach %dm: %v", m.Name, want, err)
	}
}
