package integration

import (
	"context"
	"testing"
	"time"

	clusterv1alpha1 "github.com/karmada-io/karmada/pkg/apis/cluster/v1alpha1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
	"github.com/livemigrate/livemigrate/descheduler/maintenance"
	"github.com/livemigrate/livemigrate/descheduler/policy"
)

func setTaints(t *testing.T, ctx context.Context, name string, taints []corev1.Taint) {
	t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		c := &clusterv1alpha1.Cluster{}
		if err := k.Get(ctx, client.ObjectKey{Name: name}, c); err != nil {
			return err
		}
		c.Spec.Taints = taints
		return k.Update(ctx, c)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestMaintenanceDrain runs the maintenance trigger as the descheduler's
// binary does: a maintenance taint on cluster a makes it create a
// LiveMigration of the opted-in workload, labelled with the trigger, which
// moves it to b; the drain report on the Cluster says so, and goes away
// with the taint.
func TestMaintenanceDrain(t *testing.T) {
	need(t)
	ctx := context.Background()
	ns := "drain"
	workload(t, ctx, ns)
	d := &appsv1.Deployment{}
	if err := k.Get(ctx, client.ObjectKey{Namespace: ns, Name: "app"}, d); err != nil {
		t.Fatal(err)
	}
	d.Annotations = map[string]string{policy.AnnotationEvictionStrategy: "LiveMigrate", policy.AnnotationDowntimeBudget: "7s"}
	if err := k.Update(ctx, d); err != nil {
		t.Fatal(err)
	}
	setTaints(t, ctx, "a", []corev1.Taint{{Key: maintenance.DefaultTaintKey, Effect: corev1.TaintEffectNoSchedule}})
	defer setTaints(t, context.Background(), "a", nil)

	var lm *lmv1alpha1.LiveMigration
	deadline := time.Now().Add(60 * time.Second)
	for lm == nil && time.Now().Before(deadline) {
		var list lmv1alpha1.LiveMigrationList
		if err := k.List(ctx, &list, client.InNamespace(ns)); err != nil {
			t.Fatal(err)
		}
		if len(list.Items) > 1 {
			t.Fatalf("%d migrations of one workload", len(list.Items))
		}
		if len(list.Items) == 1 {
			lm = &list.Items[0]
		}
		time.Sleep(200 * time.Millisecond)
	}
	if lm == nil {
		t.Fatal("the drain of a created no LiveMigration")
	}
	if lm.Labels[policy.LabelTrigger] != "maintenance" || lm.Labels[policy.LabelDrainCluster] != "a" || lm.Spec.TargetCluster != "b" ||
		lm.Spec.DowntimeBudget == nil || lm.Spec.DowntimeBudget.Duration != 7*time.Second {
		t.Errorf("LiveMigration %s: labels %v, target %q, budget %v; want trigger=maintenance, drain-cluster=a, b, 7s",
			lm.Name, lm.Labels, lm.Spec.TargetCluster, lm.Spec.DowntimeBudget)
	}
	waitPhase(t, ctx, ns, lm.Name, lmv1alpha1.PhaseSucceeded)

	var rep *maintenance.Report
	deadline = time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		c := &clusterv1alpha1.Cluster{}
		if err := k.Get(ctx, client.ObjectKey{Name: "a"}, c); err != nil {
			t.Fatal(err)
		}
		var err error
		if rep, err = maintenance.ReadReport(c); err != nil {
			t.Fatal(err)
		}
		if rep != nil && rep.Done {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if rep == nil || !rep.Done {
		t.Fatalf("drain report %+v, want done", rep)
	}
	moved := false
	for _, w := range rep.Workloads {
		if w.Namespace == ns && w.Name == "app" && w.State == maintenance.StateMoved && w.LiveMigration == lm.Name {
			moved = true
		}
	}
	if !moved {
		t.Errorf("the report does not show app moved by %s: %+v", lm.Name, rep.Workloads)
	}

	setTaints(t, ctx, "a", nil)
	deadline = time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		c := &clusterv1alpha1.Cluster{}
		if err := k.Get(ctx, client.ObjectKey{Name: "a"}, c); err != nil {
			t.Fatal(err)
		}
		if _, ok := c.Annotations[maintenance.ReportAnnotation]; !ok {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Error("the drain report is still on cluster a after the taint was removed")
}
