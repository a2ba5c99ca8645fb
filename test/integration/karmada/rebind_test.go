package karmada

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"

	policyv1alpha1 "github.com/karmada-io/karmada/pkg/apis/policy/v1alpha1"
	workv1alpha2 "github.com/karmada-io/karmada/pkg/apis/work/v1alpha2"

	"github.com/livemigrate/livemigrate/test/lab"
)

const (
	pollInterval = 250 * time.Millisecond
	waitTimeout  = 90 * time.Second
)

// rebind places a one-replica Deployment on one of member1 and member2,
// then rebinds it to the other with a gracefulEvictionTasks entry from the
// source (producer livemigrate), the way a live migration does, and waits
// for the workload in the target.
func rebind(t *testing.T, ns, name string, suppressDeletion bool) (source, target *lab.Member) {
	t.Helper()
	ctx := context.Background()
	k := testLab.Karmada
	if _, err := k.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := k.Client.AppsV1().Deployments(ns).Create(ctx, statefulDeployment(ns, name), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := k.Karmada.PolicyV1alpha1().PropagationPolicies(ns).Create(ctx, singleClusterPolicy(ns, name, "member1", "member2"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	rbName := name + "-deployment"
	var rb *workv1alpha2.ResourceBinding
	waitFor(t, "the binding to be scheduled to one member", func(ctx context.Context) (bool, error) {
		got, err := k.Karmada.WorkV1alpha2().ResourceBindings(ns).Get(ctx, rbName, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		rb = got
		return len(got.Spec.Clusters) == 1, nil
	})
	source = testLab.Member(rb.Spec.Clusters[0].Name)
	target = testLab.Member("member1")
	if source.Name == "member1" {
		target = testLab.Member("member2")
	}
	waitFor(t, "the workload in the source "+source.Name, deploymentExists(source, ns, name, true))

	patch := map[string]any{"spec": map[string]any{
		"clusters": []workv1alpha2.TargetCluster{{Name: target.Name, Replicas: 1}},
		"gracefulEvictionTasks": []workv1alpha2.GracefulEvictionTask{{
			FromCluster:      source.Name,
			Replicas:         ptr.To[int32](1),
			Reason:           "LiveMigration",
			Message:          "live migration to " + target.Name,
			Producer:         "livemigrate",
			SuppressDeletion: ptr.To(suppressDeletion),
		}},
	}}
	patchBinding(t, ns, rbName, patch)
	waitFor(t, "the workload in the target "+target.Name, deploymentExists(target, ns, name, true))
	return source, target
}

// TestRebindWithSuppressedDeletion checks the Rebind step of a live
// migration: patching a ResourceBinding's spec.clusters to another member
// together with a gracefulEvictionTasks entry {suppressDeletion: true,
// producer: livemigrate} creates the workload in the target and keeps it in
// the source; removing the task deletes it from the source.
func TestRebindWithSuppressedDeletion(t *testing.T) {
	ctx := context.Background()
	k := testLab.Karmada
	ns, name := "rebind", "db"
	rbName := name + "-deployment"
	source, target := rebind(t, ns, name, true)
	// Karmada has acted on the new spec once it reports status from the
	// target; from then on the source must stay, as must the task.
	waitFor(t, "status aggregated from the target", func(ctx context.Context) (bool, error) {
		got, err := k.Karmada.WorkV1alpha2().ResourceBindings(ns).Get(ctx, rbName, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		for _, s := range got.Status.AggregatedStatus {
			if s.ClusterName == target.Name && s.Applied {
				return true, nil
			}
		}
		return false, nil
	})
	consistently(t, "the source workload and the eviction task to stay", 10*time.Second, func(ctx context.Context) error {
		if _, err := source.Client.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{}); err != nil {
			return fmt.Errorf("source workload: %w", err)
		}
		got, err := k.Karmada.WorkV1alpha2().ResourceBindings(ns).Get(ctx, rbName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if len(got.Spec.GracefulEvictionTasks) != 1 || got.Spec.GracefulEvictionTasks[0].FromCluster != source.Name {
			return fmt.Errorf("eviction tasks are now %+v", got.Spec.GracefulEvictionTasks)
		}
		if len(got.Spec.Clusters) != 1 || got.Spec.Clusters[0].Name != target.Name {
			return fmt.Errorf("clusters are now %+v", got.Spec.Clusters)
		}
		return nil
	})

	patchBinding(t, ns, rbName, map[string]any{"spec": map[string]any{"gracefulEvictionTasks": nil}})
	waitFor(t, "the workload to leave the source "+source.Name, deploymentExists(source, ns, name, false))
	if _, err := target.Client.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{}); err != nil {
		t.Errorf("the target's workload is gone too: %v", err)
	}
}

// TestRebindWithoutSuppressionDeletesSource is the control: the same
// rebind without suppressDeletion lets Karmada delete the source workload
// on its own once the target is healthy, which is what suppressDeletion is
// there to prevent.
func TestRebindWithoutSuppressionDeletesSource(t *testing.T) {
	ns, name := "rebind-unsuppressed", "db"
	source, target := rebind(t, ns, name, false)
	waitFor(t, "Karmada to delete the workload from the source "+source.Name, deploymentExists(source, ns, name, false))
	if _, err := target.Client.AppsV1().Deployments(ns).Get(context.Background(), name, metav1.GetOptions{}); err != nil {
		t.Errorf("the target's workload is gone too: %v", err)
	}
}

func patchBinding(t *testing.T, ns, name string, patch map[string]any) {
	t.Helper()
	raw, err := json.Marshal(patch)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := testLab.Karmada.Karmada.WorkV1alpha2().ResourceBindings(ns).Patch(context.Background(), name, types.MergePatchType, raw, metav1.PatchOptions{}); err != nil {
		t.Fatalf("patching ResourceBinding %s/%s: %v", ns, name, err)
	}
}

func deploymentExists(m *lab.Member, ns, name string, want bool) wait.ConditionWithContextFunc {
	return func(ctx context.Context) (bool, error) {
		_, err := m.Client.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return !want, nil
		}
		if err != nil {
			return false, nil
		}
		return want, nil
	}
}

func waitFor(t *testing.T, what string, cond wait.ConditionWithContextFunc) {
	t.Helper()
	if err := wait.PollUntilContextTimeout(context.Background(), pollInterval, waitTimeout, true, cond); err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

// consistently checks that cond holds on every poll during d.
func consistently(t *testing.T, what string, d time.Duration, cond func(context.Context) error) {
	t.Helper()
	deadline := time.Now().Add(d)
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		// Each check gets its own time, independent of the window's end.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := cond(ctx)
		cancel()
		if err != nil {
			t.Fatalf("expected %s: %v", what, err)
		}
		if time.Now().After(deadline) {
			return
		}
		<-tick.C
	}
}

func statefulDeployment(ns, name string) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Strategy: appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name: "db", Image: "registry.example/db:1",
					Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
						corev1.ResourceCPU: resource.MustParse("500m"), corev1.ResourceMemory: resource.MustParse("512Mi"),
					}},
				}}},
			},
		},
	}
}

// singleClusterPolicy places the workload, undivided, on exactly one of
// the given clusters.
func singleClusterPolicy(ns, name string, clusters ...string) *policyv1alpha1.PropagationPolicy {
	return &policyv1alpha1.PropagationPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: policyv1alpha1.PropagationSpec{
			ResourceSelectors: []policyv1alpha1.ResourceSelector{{APIVersion: "apps/v1", Kind: "Deployment", Name: name}},
			Placement: policyv1alpha1.Placement{
				ClusterAffinity: &policyv1alpha1.ClusterAffinity{ClusterNames: clusters},
				SpreadConstraints: []policyv1alpha1.SpreadConstraint{{
					SpreadByField: policyv1alpha1.SpreadByFieldCluster, MaxGroups: 1, MinGroups: 1,
				}},
				ReplicaScheduling: &policyv1alpha1.ReplicaSchedulingStrategy{
					ReplicaSchedulingType:     policyv1alpha1.ReplicaSchedulingTypeDivided,
					ReplicaDivisionPreference: policyv1alpha1.ReplicaDivisionPreferenceAggregated,
				},
			},
		},
	}
}
