package placement

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	clusterv1alpha1 "github.com/karmada-io/karmada/pkg/apis/cluster/v1alpha1"
	policyv1alpha1 "github.com/karmada-io/karmada/pkg/apis/policy/v1alpha1"
	workv1alpha2 "github.com/karmada-io/karmada/pkg/apis/work/v1alpha2"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
	"github.com/livemigrate/livemigrate/descheduler/kubectl"
	"github.com/livemigrate/livemigrate/descheduler/policy"
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

// poll calls f every 250ms until it is done, failing the test with f's
// last word at the deadline.
func (s *suite) poll(ctx context.Context, timeout time.Duration, what string, f func() (bool, string)) {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	last := ""
	for {
		done, why := f()
		if done {
			return
		}
		if why != last {
			s.t.Logf("waiting for %s: %s", what, why)
			last = why
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			s.t.Fatalf("timed out after %s waiting for %s: %s", timeout, what, why)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func (s *suite) binding(ctx context.Context, ns, name string) *workv1alpha2.ResourceBinding {
	s.t.Helper()
	rb := &workv1alpha2.ResourceBinding{}
	if err := s.k.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, rb); err != nil {
		s.t.Fatal(err)
	}
	return rb
}

func clusterNames(rb *workv1alpha2.ResourceBinding) []string {
	var out []string
	for _, c := range rb.Spec.Clusters {
		out = append(out, c.Name)
	}
	return out
}

// waitOptedIn waits until the descheduler labelled the workload's binding
// livemigrate.io/opted-in: from then on, a placement change is held.
func (s *suite) waitOptedIn(ctx context.Context, a *scenario.App) {
	s.t.Helper()
	s.poll(ctx, time.Minute, "the opt-in label on "+a.BindingName(), func() (bool, string) {
		rb := s.binding(ctx, a.Namespace, a.BindingName())
		return rb.Labels[policy.LabelOptedIn] == "true", fmt.Sprintf("labels %v", rb.Labels)
	})
}

// setAffinity replaces the cluster affinity of the PropagationPolicy name.
func (s *suite) setAffinity(ctx context.Context, ns, name string, affinity *policyv1alpha1.ClusterAffinity) {
	s.t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		pp := &policyv1alpha1.PropagationPolicy{}
		if err := s.k.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, pp); err != nil {
			return err
		}
		pp.Spec.Placement.ClusterAffinity = affinity
		return s.k.Update(ctx, pp)
	})
	if err != nil {
		s.t.Fatalf("editing PropagationPolicy %s/%s: %v", ns, name, err)
	}
	s.t.Logf("PropagationPolicy %s/%s: cluster affinity %+v", ns, name, *affinity)
}

// setClusterLabel sets (value non-empty) or removes a label of a Cluster.
func (s *suite) setClusterLabel(ctx context.Context, cluster, key, value string) {
	s.t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		c := &clusterv1alpha1.Cluster{}
		if err := s.k.Get(ctx, types.NamespacedName{Name: cluster}, c); err != nil {
			return err
		}
		if c.Labels == nil {
			c.Labels = map[string]string{}
		}
		if value == "" {
			delete(c.Labels, key)
		} else {
			c.Labels[key] = value
		}
		return s.k.Update(ctx, c)
	})
	if err != nil {
		s.t.Fatalf("labelling cluster %s: %v", cluster, err)
	}
}

// placementMigration waits for the LiveMigration the placement trigger
// created for the workload to succeed, and returns it.
func (s *suite) placementMigration(ctx context.Context, a *scenario.App, timeout time.Duration) *lmv1alpha1.LiveMigration {
	s.t.Helper()
	var lm *lmv1alpha1.LiveMigration
	s.poll(ctx, timeout, "the placement LiveMigration of "+a.Name+" to succeed", func() (bool, string) {
		var list lmv1alpha1.LiveMigrationList
		if err := s.k.List(ctx, &list, client.InNamespace(a.Namespace), client.MatchingLabels{policy.LabelTrigger: string(policy.TriggerPlacement)}); err != nil {
			return false, err.Error()
		}
		var why []string
		for i := range list.Items {
			m := &list.Items[i]
			if m.Spec.WorkloadRef.Name != a.Name {
				continue
			}
			if m.Status.Phase == lmv1alpha1.PhaseFailed {
				s.t.Fatalf("LiveMigration %s failed: %+v\n%s", m.Name, m.Status.Failure, scenario.Timeline(m))
			}
			if m.Status.Phase == lmv1alpha1.PhaseSucceeded {
				lm = m
				return true, ""
			}
			why = append(why, m.Name+" "+string(m.Status.Phase))
		}
		rb := s.binding(ctx, a.Namespace, a.BindingName())
		return false, fmt.Sprintf("migrations %v; binding on %v, held %q", why, clusterNames(rb), rb.Annotations[policy.AnnotationScheduledClusters])
	})
	return lm
}

func (s *suite) kubectl(ctx context.Context, args ...string) (string, error) {
	args = append([]string{"--kubeconfig=" + s.env.Karmada.Kubeconfig}, args...)
	out, err := exec.CommandContext(ctx, filepath.Join(s.bin, "kubectl-livemigrate"), args...).CombinedOutput()
	s.t.Logf("$ kubectl livemigrate %s\n%s", strings.Join(args[1:], " "), out)
	return string(out), err
}

// checkMoved checks the placement migration and the invariants of the move.
func (s *suite) checkMoved(ctx context.Context, a *scenario.App, obs *scenario.Observation, lm *lmv1alpha1.LiveMigration, from, to string) {
	s.t.Helper()
	if obs.Migration == nil || obs.Migration.Name != lm.Name {
		s.t.Fatalf("the observed migration is %v, want %s", obs.Migration, lm.Name)
	}
	if lm.Spec.TargetCluster != to || lm.Status.SourceCluster != from {
		s.t.Errorf("LiveMigration %s: %s → %s, want %s → %s", lm.Name, lm.Status.SourceCluster, lm.Spec.TargetCluster, from, to)
	}
	if why := lm.Annotations[policy.AnnotationReason]; !strings.Contains(why, "placed the workload on "+to+" instead of "+from) {
		s.t.Errorf("LiveMigration %s reason %q does not say the placement moved it", lm.Name, why)
	}
	s.t.Logf("%s\n%s", lm.Name, scenario.Timeline(lm))
	res, errs := s.env.CheckSucceeded(ctx, a, obs)
	for _, err := range errs {
		s.t.Errorf("%s: %v", a.Name, err)
	}
	if res != nil {
		s.t.Logf("%s restored from counter %d; %s", a.Name, res.RestoredFrom, res.Verified)
	}
	out, err := s.kubectl(ctx, "-n", a.Namespace, "status", lm.Name)
	if err != nil || !strings.Contains(out, "Trigger:    placement") || !strings.Contains(out, "Reason:     the placement changed") {
		s.t.Errorf("kubectl livemigrate status %s does not show the placement trigger and reason: %v", lm.Name, err)
	}
}

var optedIn = map[string]string{policy.AnnotationEvictionStrategy: "LiveMigrate", policy.AnnotationDowntimeBudget: "20s"}

// TestPolicyEditMovesLive: the cluster affinity of an opted-in StatefulSet
// writing to its volume is edited from member1 to member2: it moves live,
// by a LiveMigration labelled trigger=placement; a Deployment that is not
// opted in, given the same edit, is re-created by Karmada (its counter
// starts again from 0).
func TestPolicyEditMovesLive(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	s := newSuite(t)
	ns := "e2e-placement-edit"
	db, err := s.env.Deploy(ctx, ns, "db", scenario.AppOptions{Cluster: "member1", Annotations: optedIn})
	if err != nil {
		t.Fatal(err)
	}
	plain, err := s.env.DeployDeployment(ctx, ns, "plain", 1, scenario.AppOptions{Cluster: "member1"})
	if err != nil {
		t.Fatal(err)
	}
	s.waitOptedIn(ctx, db)
	if _, err := db.WaitRunning(ctx, "member1", 300); err != nil {
		t.Fatal(err)
	}
	before, err := plain.WaitRunning(ctx, "member1", 300)
	if err != nil {
		t.Fatal(err)
	}
	if rb := s.binding(ctx, ns, plain.BindingName()); rb.Labels[policy.LabelOptedIn] != "" {
		t.Fatalf("the binding of plain is labelled %v", rb.Labels)
	}

	stop, err := db.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	to2 := &policyv1alpha1.ClusterAffinity{ClusterNames: []string{"member2"}}
	s.setAffinity(ctx, ns, "db", to2)
	s.setAffinity(ctx, ns, "plain", to2)
	lm := s.placementMigration(ctx, db, 5*time.Minute)
	obs, err := stop(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if why := lm.Annotations[policy.AnnotationReason]; !strings.Contains(why, "PropagationPolicy "+ns+"/db") {
		t.Errorf("reason %q does not name the PropagationPolicy", why)
	}
	s.checkMoved(ctx, db, obs, lm, "member1", "member2")

	// Not opted in: Karmada re-created it in member2, from scratch.
	after, err := plain.WaitRunning(ctx, "member2", 0)
	if err != nil {
		t.Fatal(err)
	}
	if from, err := scenario.RestoredCounter(after); err != nil || from != 0 {
		t.Errorf("plain in member2 started from counter %d (%v), want 0: re-created, not moved (it had counted past 300 in member1, pod %s)", from, err, before.Name)
	}
	var list lmv1alpha1.LiveMigrationList
	if err := s.k.List(ctx, &list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	for _, m := range list.Items {
		if m.Spec.WorkloadRef.Name == "plain" {
			t.Errorf("LiveMigration %s moves plain, which is not opted in", m.Name)
		}
	}
}

// waitScheduledByLabel waits until karmada-scheduler places a probe
// selecting clusters by the label key=value on exactly want: it has seen
// the clusters' labels.
func (s *suite) waitScheduledByLabel(ctx context.Context, key, value string, want ...string) {
	s.t.Helper()
	slices.Sort(want)
	for attempt := 0; ; attempt++ {
		name := fmt.Sprintf("placement-label-probe-%d", attempt)
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name}}
		pp := &policyv1alpha1.PropagationPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
			Spec: policyv1alpha1.PropagationSpec{
				ResourceSelectors: []policyv1alpha1.ResourceSelector{{APIVersion: "v1", Kind: "ConfigMap", Name: name}},
				Placement: policyv1alpha1.Placement{ClusterAffinity: &policyv1alpha1.ClusterAffinity{
					LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{key: value}}}},
			}}
		for _, o := range []client.Object{pp, cm} {
			if err := s.k.Create(ctx, o); err != nil {
				s.t.Fatal(err)
			}
		}
		var got []string
		s.poll(ctx, time.Minute, "the label probe to be scheduled", func() (bool, string) {
			rb := &workv1alpha2.ResourceBinding{}
			if err := s.k.Get(ctx, types.NamespacedName{Namespace: "default", Name: name + "-configmap"}, rb); err != nil {
				return false, err.Error()
			}
			c := meta.FindStatusCondition(rb.Status.Conditions, workv1alpha2.Scheduled)
			if c == nil {
				return false, "not scheduled yet"
			}
			got = clusterNames(rb)
			slices.Sort(got)
			return true, ""
		})
		for _, o := range []client.Object{cm, pp} {
			if err := s.k.Delete(ctx, o); err != nil && !apierrors.IsNotFound(err) {
				s.t.Fatal(err)
			}
		}
		if slices.Equal(got, want) {
			return
		}
		s.t.Logf("karmada-scheduler placed the label probe in %v, want %v: trying again", got, want)
		if ctx.Err() != nil {
			s.t.Fatal(ctx.Err())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestRelabelMovesLive: the opted-in StatefulSet's policy selects clusters
// by a label only member1 has; re-labelling member1 so that it no longer
// matches (and member2 so that it does) moves the workload live to
// member2 (karmada-scheduler alone would leave it).
func TestRelabelMovesLive(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	s := newSuite(t)
	ns := "e2e-placement-relabel"
	const key = "e2e.livemigrate.io/placement"
	defer func() {
		for _, m := range []string{"member1", "member2"} {
			s.setClusterLabel(context.Background(), m, key, "")
		}
	}()
	s.setClusterLabel(ctx, "member1", key, "db")
	db, err := s.env.Deploy(ctx, ns, "db", scenario.AppOptions{Cluster: "member1", Annotations: optedIn})
	if err != nil {
		t.Fatal(err)
	}
	s.waitOptedIn(ctx, db)
	if _, err := db.WaitRunning(ctx, "member1", 300); err != nil {
		t.Fatal(err)
	}
	// The policy now selects by the label, which member1 still has: the
	// new scheduling result is member1 and nothing moves.
	s.setAffinity(ctx, ns, "db", &policyv1alpha1.ClusterAffinity{LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{key: "db"}}})
	s.poll(ctx, 2*time.Minute, "karmada-scheduler to schedule the label selector", func() (bool, string) {
		rb := s.binding(ctx, ns, db.BindingName())
		applied := rb.Annotations["policy.karmada.io/applied-placement"]
		return strings.Contains(applied, key) && rb.Status.SchedulerObservedGeneration == rb.Generation,
			fmt.Sprintf("applied placement %s, observed generation %d of %d", applied, rb.Status.SchedulerObservedGeneration, rb.Generation)
	})
	if rb := s.binding(ctx, ns, db.BindingName()); !slices.Equal(clusterNames(rb), []string{"member1"}) || rb.Annotations[policy.AnnotationScheduledClusters] != "" {
		t.Fatalf("after a placement edit that still fits member1: clusters %v, held %q; want member1, none", clusterNames(rb), rb.Annotations[policy.AnnotationScheduledClusters])
	}

	s.setClusterLabel(ctx, "member2", key, "db")
	s.waitScheduledByLabel(ctx, key, "db", "member1", "member2")
	stop, err := db.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s.setClusterLabel(ctx, "member1", key, "")
	lm := s.placementMigration(ctx, db, 5*time.Minute)
	obs, err := stop(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s.checkMoved(ctx, db, obs, lm, "member1", "member2")
}

// TestDeschedulerDownRecreatesNothing: with the descheduler (and so the
// placement webhook) stopped, an edit of the opted-in StatefulSet's cluster
// affinity re-creates nothing — karmada-scheduler's write is refused and
// the binding's Scheduled condition says why — and once the descheduler
// is back the workload moves live.
func TestDeschedulerDownRecreatesNothing(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	s := newSuite(t)
	ns := "e2e-placement-down"
	db, err := s.env.Deploy(ctx, ns, "db", scenario.AppOptions{Cluster: "member1", Annotations: optedIn})
	if err != nil {
		t.Fatal(err)
	}
	s.waitOptedIn(ctx, db)
	if _, err := db.WaitRunning(ctx, "member1", 300); err != nil {
		t.Fatal(err)
	}
	desched := testLab.Instance("livemigrate-descheduler")
	if desched == nil {
		t.Fatal("the lab runs no descheduler")
	}
	if err := testLab.Kill(desched); err != nil {
		t.Fatal(err)
	}
	restarted := false
	defer func() {
		if !restarted {
			if err := testLab.Restart(context.Background(), desched); err != nil {
				t.Errorf("restarting the descheduler: %v", err)
			}
		}
	}()
	stop, err := db.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s.setAffinity(ctx, ns, "db", &policyv1alpha1.ClusterAffinity{ClusterNames: []string{"member2"}})
	s.poll(ctx, 2*time.Minute, "karmada-scheduler's write to be refused", func() (bool, string) {
		rb := s.binding(ctx, ns, db.BindingName())
		c := meta.FindStatusCondition(rb.Status.Conditions, workv1alpha2.Scheduled)
		if c == nil {
			return false, "no Scheduled condition"
		}
		return c.Status == metav1.ConditionFalse && strings.Contains(c.Message, "placement.livemigrate.io"),
			fmt.Sprintf("Scheduled=%s %s: %s", c.Status, c.Reason, c.Message)
	})
	rb := s.binding(ctx, ns, db.BindingName())
	if got := clusterNames(rb); !slices.Equal(got, []string{"member1"}) {
		t.Fatalf("binding on %v with the descheduler down, want member1", got)
	}
	// Nothing was created in member2, and the app still counts in member1.
	pods, err := s.env.Members["member2"].Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(pods.Items) != 0 {
		t.Errorf("%d pods in member2 with the descheduler down, want none", len(pods.Items))
	}
	if _, err := db.WaitRunning(ctx, "member1", 600); err != nil {
		t.Fatalf("db does not run on in member1: %v", err)
	}

	if err := testLab.Restart(ctx, desched); err != nil {
		t.Fatal(err)
	}
	restarted = true
	lm := s.placementMigration(ctx, db, 5*time.Minute)
	obs, err := stop(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s.checkMoved(ctx, db, obs, lm, "member1", "member2")
}
