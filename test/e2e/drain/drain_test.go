package drain

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clusterv1alpha1 "github.com/karmada-io/karmada/pkg/apis/cluster/v1alpha1"
	policyv1alpha1 "github.com/karmada-io/karmada/pkg/apis/policy/v1alpha1"
	workv1alpha2 "github.com/karmada-io/karmada/pkg/apis/work/v1alpha2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
	"github.com/livemigrate/livemigrate/descheduler/kubectl"
	"github.com/livemigrate/livemigrate/descheduler/maintenance"
	"github.com/livemigrate/livemigrate/descheduler/policy"
	"github.com/livemigrate/livemigrate/test/e2e/migration/scenario"
	"github.com/livemigrate/livemigrate/test/lab"
)

// logWriter sends a command's output to the test log, line by line, and
// keeps it.
type logWriter struct {
	scenario.LogWriter
	all strings.Builder
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.all.Write(p)
	return w.LogWriter.Write(p)
}

type suite struct {
	t   *testing.T
	env *scenario.Env
	k   client.Client // the Karmada plane, with Cluster types
	bin string
	out *logWriter
}

func newSuite(t *testing.T) *suite {
	t.Helper()
	root, err := lab.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	out := &logWriter{LogWriter: scenario.LogWriter{Log: t.Log}}
	env, err := scenario.FromLab(testLab, filepath.Join(root, "bin"), out, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	k, err := client.New(env.Karmada.Config, client.Options{Scheme: kubectl.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	return &suite{t: t, env: env, k: k, bin: filepath.Join(root, "bin"), out: out}
}

// kubectl runs kubectl livemigrate against the Karmada plane.
func (s *suite) kubectl(ctx context.Context, args ...string) (string, error) {
	s.out.all.Reset()
	args = append([]string{"--kubeconfig=" + s.env.Karmada.Kubeconfig}, args...)
	fmt.Fprintf(s.out, "$ kubectl livemigrate %s\n", strings.Join(args[1:], " "))
	cmd := exec.CommandContext(ctx, filepath.Join(s.bin, "kubectl-livemigrate"), args...)
	cmd.Stdout, cmd.Stderr = s.out, s.out
	err := cmd.Run()
	return s.out.all.String(), err
}

// setTaint adds (or, with remove, removes) a taint on a member's Cluster.
func (s *suite) setTaint(ctx context.Context, cluster string, taint corev1.Taint, remove bool) {
	s.t.Helper()
	if err := scenario.SetClusterTaint(ctx, s.k, cluster, taint, remove); err != nil {
		s.t.Fatal(err)
	}
}

func (s *suite) taints(ctx context.Context, cluster string) []corev1.Taint {
	s.t.Helper()
	c := &clusterv1alpha1.Cluster{}
	if err := s.k.Get(ctx, types.NamespacedName{Name: cluster}, c); err != nil {
		s.t.Fatal(err)
	}
	return c.Spec.Taints
}

func (s *suite) migrationsOf(ctx context.Context, drainCluster string) []lmv1alpha1.LiveMigration {
	s.t.Helper()
	var list lmv1alpha1.LiveMigrationList
	if err := s.k.List(ctx, &list, client.MatchingLabels{policy.LabelDrainCluster: drainCluster}); err != nil {
		s.t.Fatal(err)
	}
	return list.Items
}

func (s *suite) clustersOf(ctx context.Context, ns, binding string) []string {
	s.t.Helper()
	rb := &workv1alpha2.ResourceBinding{}
	if err := s.k.Get(ctx, types.NamespacedName{Namespace: ns, Name: binding}, rb); err != nil {
		s.t.Fatal(err)
	}
	var out []string
	for _, c := range rb.Spec.Clusters {
		out = append(out, c.Name)
	}
	return out
}

func check(t *testing.T, what string, errs []error) {
	t.Helper()
	if len(errs) > 0 {
		t.Errorf("%s: %d invariant violations:\n%v", what, len(errs), errors.Join(errs...))
	}
}

// admittedAt is when a migration left Pending (the concurrency budget
// admitted it).
func admittedAt(lm *lmv1alpha1.LiveMigration) time.Time {
	for _, tr := range lm.Status.PhaseTransitions {
		if tr.Phase == lmv1alpha1.PhasePlanning {
			return tr.EnteredAt.Time
		}
	}
	return time.Time{}
}

var hold = scenario.HoldTaint

// TestDrainMovesOptedInWorkloadsLive is the drain walk-through: member1 runs
// an opted-in StatefulSet writing to its volume, a two-replica Deployment
// opted in by its PropagationPolicy and a Deployment that is not opted in.
// kubectl livemigrate drain member1 --wait moves the first two live, one at
// a time (per-cluster budget 1), with every invariant of a manual move,
// and leaves the third where it is; uncordon removes the taint.
func TestDrainMovesOptedInWorkloadsLive(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	s := newSuite(t)
	ns := "e2e-drain"

	// Karmada places everything in member1: the other members are held
	// until the workloads run (Karmada does not reschedule when a taint
	// goes away).
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
	cache, err := s.env.DeployDeployment(ctx, ns, "cache", 2, scenario.AppOptions{})
	if err != nil {
		t.Fatal(err)
	}
	plain, err := s.env.DeployDeployment(ctx, ns, "plain", 1, scenario.AppOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []*scenario.App{db, cache, plain} {
		if a.Source != "member1" {
			t.Fatalf("%s placed in %s, want member1", a.Name, a.Source)
		}
	}
	// cache is opted in by its PropagationPolicy, not its template.
	pp := &policyv1alpha1.PropagationPolicy{}
	if err := s.k.Get(ctx, types.NamespacedName{Namespace: ns, Name: "cache"}, pp); err != nil {
		t.Fatal(err)
	}
	patch := client.MergeFrom(pp.DeepCopy())
	pp.Annotations = map[string]string{policy.AnnotationEvictionStrategy: "LiveMigrateIfPossible"}
	if err := s.k.Patch(ctx, pp, patch); err != nil {
		t.Fatal(err)
	}
	if out, err := s.kubectl(ctx, "-n", ns, "policy", "deployment/cache"); err != nil || !strings.Contains(out, "LiveMigrateIfPossible") ||
		!strings.Contains(out, "PropagationPolicy "+ns+"/cache") {
		t.Fatalf("kubectl livemigrate policy deployment/cache: %v\n%s", err, out)
	}
	for _, m := range []string{"member2", "member3"} {
		s.setTaint(ctx, m, hold, true)
	}
	if _, err := db.WaitRunning(ctx, "member1", 300); err != nil {
		t.Fatal(err)
	}

	stopDB, err := db.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	stopCache, err := cache.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out, drainErr := s.kubectl(ctx, "drain", "member1", "--wait", "--timeout", "5m")
	dbObs, err := stopDB(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cacheObs, err := stopCache(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if drainErr != nil {
		t.Fatalf("kubectl livemigrate drain member1 --wait: %v", drainErr)
	}
	for _, want := range []string{"cluster/member1 tainted livemigrate.io/maintenance:NoSchedule", "statefulset/" + ns + "/db", "deployment/" + ns + "/cache",
		"deployment/" + ns + "/plain", "not opted in", "moved", "cluster/member1 drained"} {
		if !strings.Contains(out, want) {
			t.Errorf("drain output lacks %q", want)
		}
	}

	// Both moved live, by migrations of the drain.
	for _, obs := range []*scenario.Observation{dbObs, cacheObs} {
		lm := obs.Migration
		if lm.Labels[policy.LabelTrigger] != "maintenance" || lm.Labels[policy.LabelDrainCluster] != "member1" || lm.Annotations[policy.AnnotationReason] == "" {
			t.Errorf("LiveMigration %s labels %v annotations %v, want trigger=maintenance, drain-cluster=member1 and a reason", lm.Name, lm.Labels, lm.Annotations)
		}
		t.Logf("%s\n%s", lm.Name, scenario.Timeline(lm))
	}
	if b := dbObs.Migration.Spec.DowntimeBudget; b == nil || b.Duration != 20*time.Second {
		t.Errorf("db's migration budget %v, want the template's 20s", b)
	}
	res, errs := s.env.CheckSucceeded(ctx, db, dbObs)
	check(t, "db", errs)
	if res != nil {
		t.Logf("db restored from counter %d; %s", res.RestoredFrom, res.Verified)
	}
	check(t, "cache", s.env.CheckDeploymentSucceeded(ctx, cache, cacheObs))

	// Never two migrations out of member1 at once.
	lms := s.migrationsOf(ctx, "member1")
	if len(lms) != 2 {
		t.Fatalf("%d migrations of the drain, want 2", len(lms))
	}
	a, b := &lms[0], &lms[1]
	if admittedAt(b).Before(admittedAt(a)) {
		a, b = b, a
	}
	if a.Status.CompletionTime == nil || admittedAt(b).IsZero() || admittedAt(b).Before(a.Status.CompletionTime.Time) {
		t.Errorf("migrations overlap: %s admitted %s, completed %v; %s admitted %s", a.Name, admittedAt(a), a.Status.CompletionTime, b.Name, admittedAt(b))
	}

	// The workload that is not opted in stays.
	if got := s.clustersOf(ctx, ns, plain.BindingName()); len(got) != 1 || got[0] != "member1" {
		t.Errorf("plain is bound to %v, want member1 only", got)
	}
	if _, err := plain.WaitRunning(ctx, "member1", 0); err != nil {
		t.Errorf("plain no longer runs in member1: %v", err)
	}

	if _, err := s.kubectl(ctx, "uncordon", "member1"); err != nil {
		t.Fatal(err)
	}
	for _, tt := range s.taints(ctx, "member1") {
		if tt.Key == maintenance.DefaultTaintKey {
			t.Errorf("member1 still has %v after uncordon", tt)
		}
	}
}

// TestTaintKeys: a taint with any other key drains nothing; one with a key
// given by --maintenance-taint-keys (not the default) drains (every
// opted-in workload on member3, the ones the first drain moved there
// included).
func TestTaintKeys(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	s := newSuite(t)
	ns := "e2e-taint-keys"
	for _, m := range []string{"member1", "member2"} {
		s.setTaint(ctx, m, hold, false)
	}
	if err := s.env.WaitSchedulable(ctx, "member3"); err != nil {
		t.Fatal(err)
	}
	app, err := s.env.DeployDeployment(ctx, ns, "web", 1, scenario.AppOptions{
		Annotations: map[string]string{policy.AnnotationEvictionStrategy: "LiveMigrate"}})
	if err != nil {
		t.Fatal(err)
	}
	// member1 stays held until the end, so that everything the drain of
	// member3 moves goes to member2.
	s.setTaint(ctx, "member2", hold, true)
	defer s.setTaint(context.Background(), "member1", hold, true)
	if app.Source != "member3" {
		t.Fatalf("placed in %s, want member3", app.Source)
	}

	other := corev1.Taint{Key: "lab.livemigrate.io/other", Effect: corev1.TaintEffectNoSchedule}
	s.setTaint(ctx, "member3", other, false)
	// Several of the trigger's resync periods (5 poll intervals).
	time.Sleep(20 * lab.DeschedulerPollInterval)
	if lms := s.migrationsOf(ctx, "member3"); len(lms) != 0 {
		t.Errorf("a taint with another key started %d migrations", len(lms))
	}
	s.setTaint(ctx, "member3", other, true)

	stop, err := app.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := s.kubectl(ctx, "drain", "member3", "--key", rebootKey, "--wait", "--timeout", "4m"); err != nil {
		t.Fatalf("drain with the configured key: %v\n%s", err, out)
	}
	obs, err := stop(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if obs.Migration.Labels[policy.LabelDrainCluster] != "member3" {
		t.Errorf("the newest migration %s is not the drain's (labels %v)", obs.Migration.Name, obs.Migration.Labels)
	}
	check(t, "web", s.env.CheckDeploymentSucceeded(ctx, app, obs))
	if _, err := s.kubectl(ctx, "uncordon", "member3", "--key", rebootKey); err != nil {
		t.Fatal(err)
	}
}
