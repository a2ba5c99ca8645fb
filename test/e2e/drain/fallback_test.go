package drain

import (
	"context"
	"strings"
	"testing"
	"time"

	workv1alpha2 "github.com/karmada-io/karmada/pkg/apis/work/v1alpha2"
	"k8s.io/apimachinery/pkg/types"

	"github.com/livemigrate/livemigrate/descheduler/maintenance"
	"github.com/livemigrate/livemigrate/descheduler/policy"
	"github.com/livemigrate/livemigrate/test/e2e/migration/scenario"
)

// TestNoFeasibleTarget drains member1 while every other member refuses new
// workloads (a NoSchedule taint nobody tolerates): no live migration can
// start. The LiveMigrateIfPossible workload falls back to Karmada's
// graceful eviction (member1 leaves its binding, with an eviction task,
// and karmada-scheduler re-creates it elsewhere once a member accepts
// it); the LiveMigrate one stays where it runs, and drain --wait exits
// non-zero naming it.
func TestNoFeasibleTarget(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	s := newSuite(t)
	ns := "e2e-no-target"
	for _, m := range []string{"member2", "member3"} {
		s.setTaint(ctx, m, hold, false)
	}
	held := true
	defer func() {
		if held {
			for _, m := range []string{"member2", "member3"} {
				s.setTaint(context.Background(), m, hold, true)
			}
		}
	}()
	if err := s.env.WaitSchedulable(ctx, "member1"); err != nil {
		t.Fatal(err)
	}
	maybe, err := s.env.DeployDeployment(ctx, ns, "maybe", 1, scenario.AppOptions{
		Annotations: map[string]string{policy.AnnotationEvictionStrategy: "LiveMigrateIfPossible"}})
	if err != nil {
		t.Fatal(err)
	}
	must, err := s.env.DeployDeployment(ctx, ns, "must", 1, scenario.AppOptions{
		Annotations: map[string]string{policy.AnnotationEvictionStrategy: "LiveMigrate"}})
	if err != nil {
		t.Fatal(err)
	}
	if maybe.Source != "member1" || must.Source != "member1" {
		t.Fatalf("placed in %s and %s, want member1", maybe.Source, must.Source)
	}

	out, err := s.kubectl(ctx, "drain", "member1", "--wait", "--timeout", "2m")
	if err == nil {
		t.Fatalf("drain --wait exited 0 with a LiveMigrate workload that cannot move:\n%s", out)
	}
	if !strings.Contains(out, "drain of member1 blocked: deployment/"+ns+"/must (blocked: no feasible target") {
		t.Errorf("drain --wait does not name the blocking workload:\n%s", out)
	}
	if strings.Contains(out, "blocked: deployment/"+ns+"/maybe") {
		t.Errorf("the LiveMigrateIfPossible workload is reported blocking:\n%s", out)
	}
	if !strings.Contains(out, "deployment/"+ns+"/maybe") || !strings.Contains(out, "evicted by Karmada") {
		t.Errorf("drain --wait does not show the workload handed to Karmada:\n%s", out)
	}
	if n := len(s.migrationsOf(ctx, "member1")); n != 2 {
		// The two of TestDrainMovesOptedInWorkloadsLive, none new.
		t.Errorf("%d migrations of member1's drains, want the earlier 2 and no new one", n)
	}

	// maybe was handed to Karmada's graceful eviction.
	rb := &workv1alpha2.ResourceBinding{}
	if err := s.k.Get(ctx, types.NamespacedName{Namespace: ns, Name: maybe.BindingName()}, rb); err != nil {
		t.Fatal(err)
	}
	if rb.Spec.TargetContains("member1") {
		t.Errorf("maybe's binding still places it in member1: %v", rb.Spec.Clusters)
	}
	found := false
	for _, task := range rb.Spec.GracefulEvictionTasks {
		if task.FromCluster == "member1" && task.Producer == maintenance.EvictionProducer {
			found = true
		}
	}
	if !found {
		t.Errorf("maybe's binding has no eviction task from member1 by %s: %+v", maintenance.EvictionProducer, rb.Spec.GracefulEvictionTasks)
	}
	// must stays, running.
	if got := s.clustersOf(ctx, ns, must.BindingName()); len(got) != 1 || got[0] != "member1" {
		t.Errorf("must is bound to %v, want member1", got)
	}
	if _, err := must.WaitRunning(ctx, "member1", 0); err != nil {
		t.Errorf("must no longer runs in member1: %v", err)
	}

	// Once member2 accepts workloads, Karmada re-creates maybe there (evict
	// and re-create: a fresh start, not a restore).
	s.setTaint(ctx, "member2", hold, true)
	wctx, wcancel := context.WithTimeout(ctx, 3*time.Minute)
	defer wcancel()
	p, err := maybe.WaitRunning(wctx, "member2", 0)
	if err != nil {
		t.Fatalf("Karmada did not re-create maybe in member2: %v", err)
	}
	if c, err := scenario.RestoredCounter(p); err != nil || c != 0 {
		t.Errorf("maybe in member2 resumed from counter %d (%v): want a fresh start by Karmada", c, err)
	}
	s.setTaint(ctx, "member3", hold, true)
	held = false
	if _, err := s.kubectl(ctx, "uncordon", "member1"); err != nil {
		t.Fatal(err)
	}
}
