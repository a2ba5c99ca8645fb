package rebalance

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	clusterv1alpha1 "github.com/karmada-io/karmada/pkg/apis/cluster/v1alpha1"
	workv1alpha2 "github.com/karmada-io/karmada/pkg/apis/work/v1alpha2"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
	"github.com/livemigrate/livemigrate/descheduler/kubectl"
	"github.com/livemigrate/livemigrate/descheduler/policy"
	"github.com/livemigrate/livemigrate/plugins/capacity"
	"github.com/livemigrate/livemigrate/test/e2e/migration/scenario"
	"github.com/livemigrate/livemigrate/test/lab"
)

type suite struct {
	t   *testing.T
	env *scenario.Env
	k   client.Client // the Karmada plane, with Cluster types
	bin string
}

func newSuite(t *testing.T) *suite {
	t.Helper()
	root, err := lab.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	env, err := scenario.FromLab(testLab, filepath.Join(root, "bin"), &scenario.LogWriter{Log: t.Log}, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	k, err := client.New(env.Karmada.Config, client.Options{Scheme: kubectl.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	return &suite{t: t, env: env, k: k, bin: filepath.Join(root, "bin")}
}

// kubectl runs kubectl livemigrate against the Karmada plane and returns
// its output, which it also logs.
func (s *suite) kubectl(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(s.bin, "kubectl-livemigrate"), append([]string{"--kubeconfig=" + s.env.Karmada.Kubeconfig}, args...)...)
	out, err := cmd.CombinedOutput()
	s.t.Logf("$ kubectl livemigrate %s\n%s", strings.Join(args, " "), out)
	return string(out), err
}

// setTaint adds (or, with remove, removes) a taint on a member's Cluster.
func (s *suite) setTaint(ctx context.Context, cluster string, taint corev1.Taint, remove bool) {
	s.t.Helper()
	if err := scenario.SetClusterTaint(ctx, s.k, cluster, taint, remove); err != nil {
		s.t.Fatal(err)
	}
}

// utilization is a member's CPU utilization as Karmada reports it.
func (s *suite) utilization(ctx context.Context, cluster string) (float64, error) {
	c := &clusterv1alpha1.Cluster{}
	if err := s.k.Get(ctx, types.NamespacedName{Name: cluster}, c); err != nil {
		return 0, err
	}
	u := capacity.UsageOf(c)
	return u.Utilization(capacity.UsageCPU), nil
}

// fill runs n pods of 1 CPU each directly in a member (not through Karmada,
// not opted in: kwok runs them) and waits until Karmada's summary of the
// member shows more than above CPU utilization.
func (s *suite) fill(ctx context.Context, cluster string, n int32, above float64) {
	s.t.Helper()
	m := testLab.Member(cluster)
	if _, err := m.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "filler"}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		s.t.Fatal(err)
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
					Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1")}},
				}}},
			},
		},
	}
	if _, err := m.Client.AppsV1().Deployments("filler").Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		s.t.Fatal(err)
	}
	err := lab.Poll(ctx, cluster+"'s CPU utilization in Karmada above "+strconv.FormatFloat(above*100, 'f', 0, 64)+"%", time.Second,
		func(ctx context.Context) (bool, string, error) {
			u, err := s.utilization(ctx, cluster)
			if err != nil {
				return false, err.Error(), nil
			}
			return u > above, fmt.Sprintf("%.1f%%", u*100), nil
		})
	if err != nil {
		s.t.Fatal(err)
	}
}

// rounds is how many rebalancing rounds the descheduler ran in mode, from
// its metrics.
func rounds(ctx context.Context, mode string) (int, error) {
	in := testLab.Instance("livemigrate-descheduler")
	if in == nil {
		return 0, errors.New("the lab runs no descheduler")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+in.Addr("metrics")+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	n := 0
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "livemigrate_rebalance_rounds_total{") || !strings.Contains(line, `mode="`+mode+`"`) {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			return 0, fmt.Errorf("metric line %q: %w", line, err)
		}
		n += int(v)
	}
	return n, sc.Err()
}

// waitRounds waits until the descheduler ran at least n rounds in mode.
func (s *suite) waitRounds(ctx context.Context, mode string, n int) {
	s.t.Helper()
	err := lab.Poll(ctx, fmt.Sprintf("%d %s rebalancing rounds", n, mode), time.Second, func(ctx context.Context) (bool, string, error) {
		got, err := rounds(ctx, mode)
		if err != nil {
			return false, err.Error(), nil
		}
		return got >= n, fmt.Sprintf("%d rounds", got), nil
	})
	if err != nil {
		s.t.Fatal(err)
	}
}

func (s *suite) migrations(ctx context.Context, ns string) []lmv1alpha1.LiveMigration {
	s.t.Helper()
	var list lmv1alpha1.LiveMigrationList
	if err := s.k.List(ctx, &list, client.InNamespace(ns)); err != nil {
		s.t.Fatal(err)
	}
	return list.Items
}

func (s *suite) clustersOf(ctx context.Context, a *scenario.App) []string {
	s.t.Helper()
	rb := &workv1alpha2.ResourceBinding{}
	if err := s.k.Get(ctx, types.NamespacedName{Namespace: a.Namespace, Name: a.BindingName()}, rb); err != nil {
		s.t.Fatal(err)
	}
	var out []string
	for _, c := range rb.Spec.Clusters {
		out = append(out, c.Name)
	}
	return out
}

// events returns the notes of the events with reason about the workload.
func (s *suite) events(ctx context.Context, ns, name, reason string) []string {
	s.t.Helper()
	var list eventsv1.EventList
	if err := s.k.List(ctx, &list, client.InNamespace(ns)); err != nil {
		s.t.Fatal(err)
	}
	var out []string
	for _, e := range list.Items {
		if e.Reason == reason && e.Regarding.Name == name {
			out = append(out, e.Note)
		}
	}
	return out
}

var hold = scenario.HoldTaint

// plannedTarget is the target a plan --rebalance output gives the workload.
func plannedTarget(out, workload string) string {
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && f[0] == workload && strings.Contains(line, " chosen: ") {
			return f[2]
		}
	}
	return ""
}

// TestRebalanceMovesOptedInWorkloadLive loads member1 above the high band
// with pods that are not opted in while member2 and member3 are below the
// low band. In DryRun nothing moves and the plan (events, kubectl
// livemigrate plan --rebalance) names the opted-in StatefulSet and the
// emptier member; in Auto that StatefulSet moves live there within one
// round, with memory and log continuity; nothing moves in the next three
// rounds; the StatefulSet with livemigrate.io/rebalance: "false" never moves.
func TestRebalanceMovesOptedInWorkloadLive(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	s := newSuite(t)
	ns := "e2e-rebalance"

	// Both StatefulSets land in member1: the others are held meanwhile.
	for _, m := range []string{"member2", "member3"} {
		s.setTaint(ctx, m, hold, false)
	}
	if err := s.env.WaitSchedulable(ctx, "member1"); err != nil {
		t.Fatal(err)
	}
	db, err := s.env.Deploy(ctx, ns, "db", scenario.AppOptions{
		Annotations: map[string]string{policy.AnnotationEvictionStrategy: "LiveMigrate", policy.AnnotationDowntimeBudget: "20s"}})
	if err != nil {
		t.Fatal(err)
	}
	keep, err := s.env.Deploy(ctx, ns, "keep", scenario.AppOptions{
		Annotations: map[string]string{policy.AnnotationEvictionStrategy: "LiveMigrate", policy.AnnotationRebalance: "false"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []*scenario.App{db, keep} {
		if a.Source != "member1" {
			t.Fatalf("%s placed in %s, want member1", a.Name, a.Source)
		}
	}
	for _, m := range []string{"member2", "member3"} {
		s.setTaint(ctx, m, hold, true)
	}
	// 14 CPU of 16 requested by pods that are not opted in: above 80 %.
	s.fill(ctx, "member1", 14, 0.8)
	for _, m := range []string{"member2", "member3"} {
		u, err := s.utilization(ctx, m)
		if err != nil {
			t.Fatal(err)
		}
		if u >= 0.5 {
			t.Fatalf("%s at %.1f%% CPU, want below the low band", m, u*100)
		}
	}
	if _, err := db.WaitRunning(ctx, "member1", 300); err != nil {
		t.Fatal(err)
	}

	// DryRun: two rounds that see the load decide the move and make none.
	r0, err := rounds(ctx, "DryRun")
	if err != nil {
		t.Fatal(err)
	}
	s.waitRounds(ctx, "DryRun", r0+2)
	planned := s.events(ctx, ns, "db", "RebalancePlanned")
	if len(planned) == 0 {
		t.Fatalf("no RebalancePlanned event on db after two DryRun rounds")
	}
	t.Logf("DryRun: %s", planned[0])
	if lms := s.migrations(ctx, ns); len(lms) != 0 {
		t.Fatalf("DryRun created %d LiveMigrations", len(lms))
	}
	if ev := s.events(ctx, ns, "keep", "RebalancePlanned"); len(ev) != 0 {
		t.Errorf("DryRun planned to move keep: %v", ev)
	}
	out, err := s.kubectl(ctx, "plan", "--rebalance")
	if err != nil {
		t.Fatalf("kubectl livemigrate plan --rebalance: %v", err)
	}
	target := plannedTarget(out, "statefulset/"+ns+"/db")
	if target != "member2" && target != "member3" {
		t.Fatalf("plan --rebalance does not choose db for member2 or member3:\n%s", out)
	}
	if !strings.Contains(planned[0], "would live-migrate to "+target+":") {
		t.Errorf("the DryRun round planned %q, plan --rebalance chose %s", planned[0], target)
	}
	for _, want := range []string{"member1          Source", "statefulset/" + ns + "/keep", "rebalance_disabled"} {
		if !strings.Contains(out, want) {
			t.Errorf("plan --rebalance output lacks %q", want)
		}
	}

	// Auto: the descheduler restarts with --rebalance-mode=Auto.
	stop, err := db.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	desched := testLab.Instance("livemigrate-descheduler")
	if err := testLab.Kill(desched); err != nil {
		t.Fatal(err)
	}
	testLab.SetDeschedulerArgs(deschedulerArgs("Auto")...)
	defer testLab.SetDeschedulerArgs(deschedulerArgs("DryRun")...)
	if err := testLab.Restart(ctx, desched); err != nil {
		t.Fatal(err)
	}
	restarted := time.Now() // ready: its rounds start

	var lm *lmv1alpha1.LiveMigration
	err = lab.Poll(ctx, "db's rebalancing live migration to end", time.Second, func(ctx context.Context) (bool, string, error) {
		lms := s.migrations(ctx, ns)
		if len(lms) == 0 {
			return false, "no LiveMigration yet", nil
		}
		lm = &lms[0]
		return lm.Status.Phase.IsTerminal(), fmt.Sprintf("%d LiveMigrations, %s in %s", len(lms), lm.Name, lm.Status.Phase), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	obs, err := stop(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s\n%s", lm.Name, scenario.Timeline(lm))
	if lm.Spec.WorkloadRef.Name != "db" || lm.Status.Phase != lmv1alpha1.PhaseSucceeded || lm.Status.TargetCluster != target {
		t.Fatalf("LiveMigration %s of %s ended %s in %q, want db Succeeded into %s (%v)", lm.Name, lm.Spec.WorkloadRef.Name, lm.Status.Phase,
			lm.Status.TargetCluster, target, lm.Status.Failure)
	}
	// Within one round: the first Auto round runs one interval after the
	// descheduler is ready (with room for a loaded machine).
	if created := lm.CreationTimestamp.Time; created.Sub(restarted) > interval+30*time.Second {
		t.Errorf("the LiveMigration was created %s after the restart, more than one round (%s)", created.Sub(restarted).Round(time.Second), interval)
	}
	if lm.Labels[policy.LabelTrigger] != "rebalance" {
		t.Errorf("labels %v, want %s=rebalance", lm.Labels, policy.LabelTrigger)
	}
	reason := lm.Annotations[policy.AnnotationReason]
	for _, want := range []string{"load rebalancing: member1 is above the high band (80.0%)", target + ": cpu", "expected cpu"} {
		if !strings.Contains(reason, want) {
			t.Errorf("reason %q lacks %q", reason, want)
		}
	}
	if b := lm.Spec.DowntimeBudget; b == nil || b.Duration != 20*time.Second {
		t.Errorf("budget %v, want the template's 20s", b)
	}
	res, errs := s.env.CheckSucceeded(ctx, db, obs)
	if len(errs) > 0 {
		t.Errorf("db: %d invariant violations:\n%v", len(errs), errors.Join(errs...))
	}
	if res != nil {
		t.Logf("db restored from counter %d; %s", res.RestoredFrom, res.Verified)
	}
	if ev := s.events(ctx, ns, "db", "RebalanceMigration"); len(ev) == 0 {
		t.Errorf("no RebalanceMigration event on db")
	}

	// Nothing moves in the next three rounds: member1 stays above the band
	// (its load cannot move), db is in its cooldown, keep is not to move.
	r1, err := rounds(ctx, "Auto")
	if err != nil {
		t.Fatal(err)
	}
	s.waitRounds(ctx, "Auto", r1+3)
	if lms := s.migrations(ctx, ns); len(lms) != 1 {
		for _, l := range lms {
			t.Logf("LiveMigration %s of %s to %s: %s", l.Name, l.Spec.WorkloadRef.Name, l.Status.TargetCluster, l.Annotations[policy.AnnotationReason])
		}
		t.Errorf("%d LiveMigrations after three more rounds, want 1", len(lms))
	}
	if got := s.clustersOf(ctx, db); len(got) != 1 || got[0] != target {
		t.Errorf("db is bound to %v, want %s", got, target)
	}
	if got := s.clustersOf(ctx, keep); len(got) != 1 || got[0] != "member1" {
		t.Errorf("keep is bound to %v, want member1", got)
	}
	if _, err := keep.WaitRunning(ctx, "member1", 0); err != nil {
		t.Errorf("keep no longer runs in member1: %v", err)
	}
}
