package draintaint

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	workv1alpha2 "github.com/karmada-io/karmada/pkg/apis/work/v1alpha2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
	"github.com/livemigrate/livemigrate/descheduler/kubectl"
	"github.com/livemigrate/livemigrate/descheduler/maintenance"
	"github.com/livemigrate/livemigrate/descheduler/policy"
	"github.com/livemigrate/livemigrate/test/e2e/migration/scenario"
	"github.com/livemigrate/livemigrate/test/lab"
)

type logWriter struct{ t *testing.T }

func (w logWriter) Write(p []byte) (int, error) {
	for _, l := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		w.t.Log(l)
	}
	return len(p), nil
}

var hold = scenario.HoldTaint

func setTaint(t *testing.T, ctx context.Context, k client.Client, cluster string, taint corev1.Taint, remove bool) {
	t.Helper()
	if err := scenario.SetClusterTaint(ctx, k, cluster, taint, remove); err != nil {
		t.Fatal(err)
	}
}

// TestNoExecuteWithKarmadaTaintEviction: member1 is tainted
// livemigrate.io/maintenance:NoExecute while Karmada's taint manager
// evicts what does not tolerate NoExecute taints. The opted-in StatefulSet,
// whose PropagationPolicy tolerates the maintenance taint for ten minutes,
// is moved live by the drain inside that window (the continuity checks
// pass: it was not re-created); the Deployment that is not opted in (no
// toleration) is evicted by Karmada's taint manager and re-created
// elsewhere, as without livemigrate.
func TestNoExecuteWithKarmadaTaintEviction(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	root, err := lab.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(root, "bin")
	env, err := scenario.FromLab(testLab, bin, logWriter{t}, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	k, err := client.New(env.Karmada.Config, client.Options{Scheme: kubectl.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	ns := "e2e-noexecute"
	for _, m := range []string{"member2", "member3"} {
		setTaint(t, ctx, k, m, hold, false)
	}
	if err := env.WaitSchedulable(ctx, "member1"); err != nil {
		t.Fatal(err)
	}
	window := []corev1.Toleration{{Key: maintenance.DefaultTaintKey, Operator: corev1.TolerationOpExists,
		Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptr.To[int64](600)}}
	db, err := env.Deploy(ctx, ns, "db", scenario.AppOptions{ClusterTolerations: window,
		Annotations: map[string]string{policy.AnnotationEvictionStrategy: "LiveMigrate"}})
	if err != nil {
		t.Fatal(err)
	}
	plain, err := env.DeployDeployment(ctx, ns, "plain", 1, scenario.AppOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if db.Source != "member1" || plain.Source != "member1" {
		t.Fatalf("placed in %s and %s, want member1", db.Source, plain.Source)
	}
	for _, m := range []string{"member2", "member3"} {
		setTaint(t, ctx, k, m, hold, true)
	}
	if _, err := db.WaitRunning(ctx, "member1", 300); err != nil {
		t.Fatal(err)
	}
	stop, err := db.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"--kubeconfig=" + env.Karmada.Kubeconfig, "drain", "member1", "--effect", "NoExecute", "--wait", "--timeout", "4m"}
	cmd := exec.CommandContext(ctx, filepath.Join(bin, "kubectl-livemigrate"), args...)
	cmd.Stdout, cmd.Stderr = logWriter{t}, logWriter{t}
	drainErr := cmd.Run()
	obs, err := stop(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if drainErr != nil {
		t.Fatalf("kubectl livemigrate drain member1 --effect NoExecute --wait: %v", drainErr)
	}
	if obs.Migration.Labels[policy.LabelDrainCluster] != "member1" {
		t.Errorf("db's newest migration %s is not the drain's: %v", obs.Migration.Name, obs.Migration.Labels)
	}
	res, errs := env.CheckSucceeded(ctx, db, obs)
	if len(errs) > 0 {
		t.Errorf("db: %d invariant violations:\n%v", len(errs), errors.Join(errs...))
	} else {
		t.Logf("db moved live: restored from counter %d; %s", res.RestoredFrom, res.Verified)
	}

	// plain: evicted by Karmada's taint manager and re-created (fresh).
	err = poll(ctx, 2*time.Minute, func() (bool, string) {
		rb := &workv1alpha2.ResourceBinding{}
		if err := k.Get(ctx, types.NamespacedName{Namespace: ns, Name: plain.BindingName()}, rb); err != nil {
			return false, err.Error()
		}
		return !rb.Spec.TargetContains("member1") && len(rb.Spec.Clusters) == 1, fmt.Sprintf("clusters %v, eviction tasks %+v", rb.Spec.Clusters, rb.Spec.GracefulEvictionTasks)
	})
	if err != nil {
		t.Fatalf("Karmada did not evict plain from member1: %v", err)
	}
	rb := &workv1alpha2.ResourceBinding{}
	if err := k.Get(ctx, types.NamespacedName{Namespace: ns, Name: plain.BindingName()}, rb); err != nil {
		t.Fatal(err)
	}
	target := rb.Spec.Clusters[0].Name
	p, err := plain.WaitRunning(ctx, target, 0)
	if err != nil {
		t.Fatalf("plain does not run in %s after Karmada's eviction: %v", target, err)
	}
	if c, err := scenario.RestoredCounter(p); err != nil || c != 0 {
		t.Errorf("plain in %s started from counter %d (%v): want a fresh start by Karmada", target, c, err)
	}
	var list lmv1alpha1.LiveMigrationList
	if err := k.List(ctx, &list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	var lms []string
	for _, lm := range list.Items {
		if lm.Spec.WorkloadRef.Name == "plain" {
			lms = append(lms, lm.Name)
		}
	}
	if len(lms) > 0 {
		t.Errorf("livemigrate migrated plain, which is not opted in: %v", lms)
	}
	setTaint(t, ctx, k, "member1", corev1.Taint{Key: maintenance.DefaultTaintKey}, true)
}

func poll(ctx context.Context, d time.Duration, f func() (bool, string)) error {
	deadline := time.Now().Add(d)
	last := ""
	for time.Now().Before(deadline) {
		ok, why := f()
		if ok {
			return nil
		}
		last = why
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	return fmt.Errorf("after %s: %s", d, last)
}
