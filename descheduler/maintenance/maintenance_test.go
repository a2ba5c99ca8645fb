package maintenance

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	clusterv1alpha1 "github.com/karmada-io/karmada/pkg/apis/cluster/v1alpha1"
	workv1alpha2 "github.com/karmada-io/karmada/pkg/apis/work/v1alpha2"
	"github.com/karmada-io/karmada/pkg/scheduler/framework"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
	"github.com/livemigrate/livemigrate/descheduler/placement"
	"github.com/livemigrate/livemigrate/descheduler/policy"
	"github.com/livemigrate/livemigrate/test/builder"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// world is a Karmada plane: clusters a (drained), b and c, and workloads
// on a.
type world struct {
	objs []client.Object
}

func (w *world) add(o ...client.Object) *world { w.objs = append(w.objs, o...); return w }

// workload adds a Deployment template with the annotations (k, v pairs)
// and its binding on clusters, with memory request mem.
func (w *world) workload(name, mem string, clusters []string, kv ...string) *world {
	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, Annotations: map[string]string{}}}
	for i := 0; i+1 < len(kv); i += 2 {
		d.Annotations[kv[i]] = kv[i+1]
	}
	b := builder.MakeBinding("ns", name).SingleCluster().Request("memory", mem).ScheduledOn(1, clusters...)
	return w.add(d, b.Obj())
}

func optIn(strategy string, kv ...string) []string {
	return append([]string{policy.AnnotationEvictionStrategy, strategy}, kv...)
}

func clusters(taint *corev1.Taint, extra ...*clusterv1alpha1.Cluster) []client.Object {
	a := builder.MakeCluster("a").Obj()
	if taint != nil {
		a.Spec.Taints = append(a.Spec.Taints, *taint)
	}
	out := []client.Object{builder.Ready(a, true), builder.Ready(builder.MakeCluster("b").Obj(), true)}
	for _, c := range extra {
		out = append(out, builder.Ready(c, true))
	}
	return out
}

var maintenanceTaint = &corev1.Taint{Key: DefaultTaintKey, Effect: corev1.TaintEffectNoSchedule}

func newReconciler(t *testing.T, w *world, cfg Config) (*Reconciler, client.Client, *events.FakeRecorder) {
	t.Helper()
	c := fake.NewClientBuilder().WithScheme(builder.Scheme()).WithObjects(w.objs...).WithStatusSubresource(&lmv1alpha1.LiveMigration{}).Build()
	if cfg.TaintKeys == nil {
		cfg.TaintKeys = []string{DefaultTaintKey}
	}
	rec := events.NewFakeRecorder(100)
	plugins := append(placement.SchedulerFilters(), &Filter{Keys: cfg.TaintKeys})
	r := &Reconciler{Client: c, Recorder: rec, Clock: clocktesting.NewFakeClock(t0), Policies: &policy.Resolver{Client: c},
		Picker: &placement.Picker{Client: c, Plugins: plugins}, Config: cfg}
	return r, c, rec
}

func reconcileCluster(t *testing.T, r *Reconciler, name string) {
	t.Helper()
	if _, err := r.Reconcile(context.Background(), reconcile.Request{NamespacedName: types.NamespacedName{Name: name}}); err != nil {
		t.Fatal(err)
	}
}

func migrations(t *testing.T, c client.Client) []lmv1alpha1.LiveMigration {
	t.Helper()
	var list lmv1alpha1.LiveMigrationList
	if err := c.List(context.Background(), &list); err != nil {
		t.Fatal(err)
	}
	return list.Items
}

func report(t *testing.T, c client.Client, cluster string) *Report {
	t.Helper()
	cl := &clusterv1alpha1.Cluster{}
	if err := c.Get(context.Background(), types.NamespacedName{Name: cluster}, cl); err != nil {
		t.Fatal(err)
	}
	rep, err := ReadReport(cl)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func states(rep *Report) map[string]State {
	m := map[string]State{}
	for _, w := range rep.Workloads {
		m[w.Name] = w.State
	}
	return m
}

func drained(t *testing.T, rec *events.FakeRecorder) []string {
	t.Helper()
	var out []string
	for {
		select {
		case e := <-rec.Events:
			out = append(out, e)
		default:
			return out
		}
	}
}

func TestDrainOrderBudgetAndReport(t *testing.T) {
	w := (&world{}).add(clusters(maintenanceTaint)...).
		workload("big", "1Gi", []string{"a"}, optIn("LiveMigrate")...).
		workload("small", "64Mi", []string{"a"}, optIn("LiveMigrate", policy.AnnotationDowntimeBudget, "3s")...).
		workload("urgent", "4Gi", []string{"a"}, optIn("LiveMigrateIfPossible", policy.AnnotationDrainPriority, "5")...).
		workload("plain", "64Mi", []string{"a"}).
		workload("opted-out", "64Mi", []string{"a"}, optIn("None")...).
		workload("typo", "64Mi", []string{"a"}, policy.AnnotationEvictionStrategy, "Live").
		workload("spread", "64Mi", []string{"a", "b"}, optIn("LiveMigrate")...).
		workload("elsewhere", "64Mi", []string{"b"}, optIn("LiveMigrate")...)
	r, c, rec := newReconciler(t, w, Config{MaxActive: 10, MaxActivePerCluster: 2})
	reconcileCluster(t, r, "a")

	lms := migrations(t, c)
	got := map[string]lmv1alpha1.LiveMigration{}
	for _, lm := range lms {
		got[lm.Spec.WorkloadRef.Name] = lm
	}
	if len(lms) != 2 || got["urgent"].Name == "" || got["small"].Name == "" {
		t.Fatalf("migrations for %v, want urgent (priority 5) and small (smallest downtime) within the per-cluster budget of 2", keys(got))
	}
	small := got["small"]
	if small.Labels[policy.LabelTrigger] != "maintenance" || small.Labels[policy.LabelDrainCluster] != "a" {
		t.Errorf("labels %v, want trigger=maintenance and drain-cluster=a", small.Labels)
	}
	if !strings.Contains(small.Annotations[policy.AnnotationReason], "cluster a is drained for maintenance (taint livemigrate.io/maintenance:NoSchedule)") {
		t.Errorf("reason %q", small.Annotations[policy.AnnotationReason])
	}
	if small.Spec.TargetCluster != "b" || small.Spec.DowntimeBudget == nil || small.Spec.DowntimeBudget.Duration != 3*time.Second {
		t.Errorf("spec = %+v, want target b and the policy's budget 3s", small.Spec)
	}
	if got["urgent"].Spec.DowntimeBudget != nil {
		t.Errorf("urgent has a budget %v, want the controller default (none set)", got["urgent"].Spec.DowntimeBudget)
	}

	rep := report(t, c, "a")
	want := map[string]State{"big": StateWaiting, "small": StateMigrating, "urgent": StateMigrating, "typo": StateInvalidPolicy, "spread": StateNotHandled}
	if diff := cmp.Diff(want, states(rep)); diff != "" {
		t.Errorf("report states (-want +got):\n%s", diff)
	}
	if rep.Remaining != 4 || rep.Done || rep.Taint != "livemigrate.io/maintenance:NoSchedule" {
		t.Errorf("report remaining %d done %v taint %q, want 4, false, the taint", rep.Remaining, rep.Done, rep.Taint)
	}
	evs := strings.Join(drained(t, rec), "\n")
	for _, e := range []string{"Normal DrainStarted", "Normal MaintenanceMigration", "Warning InvalidPolicy", "Warning MaintenanceNotHandled", "Warning DrainBlocked"} {
		if !strings.Contains(evs, e) {
			t.Errorf("events lack %q:\n%s", e, evs)
		}
	}

	// Again: nothing new (no duplicate migration, the budget is full).
	reconcileCluster(t, r, "a")
	if n := len(migrations(t, c)); n != 2 {
		t.Fatalf("%d migrations after a second reconcile, want 2", n)
	}
	if evs := drained(t, rec); len(evs) != 0 {
		t.Errorf("a reconcile without change emitted %v", evs)
	}

	// Rebinding: the binding names the target only while the migration
	// goes on. The drain is not done.
	urgent := got["urgent"]
	urgent.Status.Phase, urgent.Status.SourceCluster, urgent.Status.TargetCluster = lmv1alpha1.PhaseRestoring, "a", "b"
	if err := c.Status().Update(context.Background(), &urgent); err != nil {
		t.Fatal(err)
	}
	rebind(t, c, "urgent", "b")
	reconcileCluster(t, r, "a")
	rep = report(t, c, "a")
	if st := states(rep)["urgent"]; st != StateMigrating || rep.Done || rep.Remaining != 4 {
		t.Errorf("rebound workload: state %q, done %v, remaining %d; want Migrating, not done, 4", st, rep.Done, rep.Remaining)
	}

	// One finishes: the waiting one starts.
	lm := got["small"]
	lm.Status.Phase, lm.Status.SourceCluster, lm.Status.TargetCluster = lmv1alpha1.PhaseSucceeded, "a", "b"
	lm.Status.Downtime = &metav1.Duration{Duration: 800 * time.Millisecond}
	if err := c.Status().Update(context.Background(), &lm); err != nil {
		t.Fatal(err)
	}
	rebind(t, c, "small", "b")
	reconcileCluster(t, r, "a")
	if n := len(migrations(t, c)); n != 3 {
		t.Fatalf("%d migrations, want 3 (big started once small finished)", n)
	}
	rep = report(t, c, "a")
	want = map[string]State{"big": StateMigrating, "small": StateMoved, "urgent": StateMigrating, "typo": StateInvalidPolicy, "spread": StateNotHandled}
	if rep.Done {
		t.Error("drain done with migrations going on")
	}
	if diff := cmp.Diff(want, states(rep)); diff != "" {
		t.Errorf("report states (-want +got):\n%s", diff)
	}
	for _, w := range rep.Workloads {
		if w.Name == "small" && w.Reason != "to b, downtime 800ms" {
			t.Errorf("moved reason %q, want the target and downtime", w.Reason)
		}
	}
}

// rebind points the workload's binding at cluster, as a migration does.
func rebind(t *testing.T, c client.Client, name, cluster string) {
	t.Helper()
	rb := &workv1alpha2.ResourceBinding{}
	if err := c.Get(context.Background(), types.NamespacedName{Namespace: "ns", Name: name + "-deployment"}, rb); err != nil {
		t.Fatal(err)
	}
	rb.Spec.Clusters = []workv1alpha2.TargetCluster{{Name: cluster, Replicas: 1}}
	if err := c.Update(context.Background(), rb); err != nil {
		t.Fatal(err)
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestTaintKeys(t *testing.T) {
	custom := &corev1.Taint{Key: "example.com/patching", Effect: corev1.TaintEffectNoExecute}
	other := &corev1.Taint{Key: "example.com/other", Effect: corev1.TaintEffectNoSchedule}
	preferNo := &corev1.Taint{Key: DefaultTaintKey, Effect: corev1.TaintEffectPreferNoSchedule}
	cases := map[string]struct {
		taint *corev1.Taint
		keys  []string
		want  int
	}{
		"default key":                     {taint: maintenanceTaint, want: 1},
		"configured key":                  {taint: custom, keys: []string{"example.com/patching", "example.com/reboot"}, want: 1},
		"default key when another is set": {taint: maintenanceTaint, keys: []string{"example.com/patching"}, want: 0},
		"another key":                     {taint: other, want: 0},
		"PreferNoSchedule is not a drain": {taint: preferNo, want: 0},
		"no taint":                        {want: 0},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			w := (&world{}).add(clusters(tc.taint)...).workload("app", "64Mi", []string{"a"}, optIn("LiveMigrate")...)
			r, c, _ := newReconciler(t, w, Config{TaintKeys: tc.keys})
			reconcileCluster(t, r, "a")
			if n := len(migrations(t, c)); n != tc.want {
				t.Errorf("%d migrations, want %d", n, tc.want)
			}
			if rep := report(t, c, "a"); (rep != nil) != (tc.want > 0) {
				t.Errorf("report %+v, want one only while draining", rep)
			}
		})
	}
}

// TestTargets: never a cluster tainted for maintenance, nor one whose taint
// the workload does not tolerate, nor one its affinity excludes.
func TestTargets(t *testing.T) {
	drainingToo := builder.MakeCluster("c").Taint(DefaultTaintKey, "", corev1.TaintEffectNoSchedule).Obj()
	gpuOnly := builder.MakeCluster("d").Taint("gpu", "true", corev1.TaintEffectNoSchedule).Obj()
	w := (&world{}).add(clusters(maintenanceTaint, drainingToo, gpuOnly)...)
	w.add(&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "app", Annotations: map[string]string{policy.AnnotationEvictionStrategy: "LiveMigrate"}}})
	w.add(builder.MakeBinding("ns", "app").SingleCluster().ClusterNames("a", "c", "d").Toleration(DefaultTaintKey, corev1.TaintEffectNoSchedule).ScheduledOn(1, "a").Obj())
	r, c, _ := newReconciler(t, w, Config{})
	reconcileCluster(t, r, "a")
	rep := report(t, c, "a")
	if len(rep.Workloads) != 1 || rep.Workloads[0].State != StateBlocked {
		t.Fatalf("report %+v, want app blocked", rep.Workloads)
	}
	for _, want := range []string{"b: ClusterAffinity", "c: MaintenanceTaint: cluster is being drained for maintenance", "d: TaintToleration", "eviction strategy LiveMigrate never evicts"} {
		if !strings.Contains(rep.Workloads[0].Reason, want) {
			t.Errorf("reason %q lacks %q", rep.Workloads[0].Reason, want)
		}
	}
	if n := len(migrations(t, c)); n != 0 {
		t.Errorf("%d migrations, want none", n)
	}
}

func TestFallback(t *testing.T) {
	failed := func(name, workload string) *lmv1alpha1.LiveMigration {
		lm := builder.MakeLiveMigration("ns", name, workload).Target("b").Obj()
		lm.Labels = map[string]string{policy.LabelDrainCluster: "a", policy.LabelTrigger: "maintenance"}
		lm.CreationTimestamp = metav1.NewTime(t0.Add(time.Minute))
		lm.Status.Phase = lmv1alpha1.PhaseFailed
		lm.Status.CompletionTime = &metav1.Time{Time: t0.Add(2 * time.Minute)}
		lm.Status.Failure = &lmv1alpha1.MigrationFailure{Phase: lmv1alpha1.PhaseRestoring, Reason: "RestoreFailed", Message: "ErrImagePull"}
		return lm
	}
	cases := map[string]struct {
		strategy  string
		noTarget  bool
		failedLM  bool
		wantState State
		evicted   bool
	}{
		"IfPossible without a feasible target is evicted by Karmada": {strategy: "LiveMigrateIfPossible", noTarget: true, wantState: StateEvicting, evicted: true},
		"LiveMigrate without a feasible target stays":                {strategy: "LiveMigrate", noTarget: true, wantState: StateBlocked},
		"IfPossible after a rollback is evicted by Karmada":          {strategy: "LiveMigrateIfPossible", failedLM: true, wantState: StateEvicting, evicted: true},
		"LiveMigrate after a rollback stays":                         {strategy: "LiveMigrate", failedLM: true, wantState: StateBlocked},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			var extra []*clusterv1alpha1.Cluster
			w := &world{}
			since := metav1.NewTime(t0)
			taint := &corev1.Taint{Key: DefaultTaintKey, Effect: corev1.TaintEffectNoSchedule, TimeAdded: &since}
			if tc.noTarget {
				// b is the only other cluster, and it is not Ready.
				a := builder.MakeCluster("a").Obj()
				a.Spec.Taints = []corev1.Taint{*taint}
				w.add(builder.Ready(a, true), builder.Ready(builder.MakeCluster("b").Obj(), false))
			} else {
				w.add(clusters(taint, extra...)...)
			}
			w.workload("app", "64Mi", []string{"a"}, optIn(tc.strategy)...)
			if tc.failedLM {
				w.add(failed("app-drain-1", "app"))
			}
			r, c, rec := newReconciler(t, w, Config{})
			r.Clock = clocktesting.NewFakeClock(t0.Add(3 * time.Minute))
			reconcileCluster(t, r, "a")
			rep := report(t, c, "a")
			if got := states(rep)["app"]; got != tc.wantState {
				t.Fatalf("state %q, want %q (report %+v)", got, tc.wantState, rep.Workloads)
			}
			rb := &workv1alpha2.ResourceBinding{}
			if err := c.Get(context.Background(), types.NamespacedName{Namespace: "ns", Name: "app-deployment"}, rb); err != nil {
				t.Fatal(err)
			}
			tasks := rb.Spec.GracefulEvictionTasks
			if tc.evicted {
				if len(rb.Spec.Clusters) != 0 || len(tasks) != 1 || tasks[0].FromCluster != "a" || tasks[0].Producer != EvictionProducer || tasks[0].SuppressDeletion != nil {
					t.Errorf("binding clusters %v tasks %+v, want a evicted gracefully by Karmada", rb.Spec.Clusters, tasks)
				}
				if !rep.Done {
					t.Errorf("drain not done with the only workload handed to Karmada")
				}
			} else {
				if len(rb.Spec.Clusters) != 1 || len(tasks) != 0 {
					t.Errorf("binding clusters %v tasks %+v, want it untouched", rb.Spec.Clusters, tasks)
				}
				if rep.Done || rep.Remaining != 1 {
					t.Errorf("report done=%v remaining=%d, want the blocked workload to keep the drain open", rep.Done, rep.Remaining)
				}
			}
			if n := len(migrations(t, c)); n != map[bool]int{true: 1, false: 0}[tc.failedLM] {
				t.Errorf("%d migrations, want no new one", n)
			}
			// A reconcile that reads the cluster from a cache older than
			// its report still reports the eviction (from the binding).
			cl := &clusterv1alpha1.Cluster{}
			if err := c.Get(context.Background(), types.NamespacedName{Name: "a"}, cl); err != nil {
				t.Fatal(err)
			}
			delete(cl.Annotations, ReportAnnotation)
			if err := c.Update(context.Background(), cl); err != nil {
				t.Fatal(err)
			}
			reconcileCluster(t, r, "a")
			if got := states(report(t, c, "a"))["app"]; got != tc.wantState {
				t.Errorf("state %q after a reconcile without the previous report, want %q", got, tc.wantState)
			}
			evs := strings.Join(drained(t, rec), "\n")
			wantEvent := map[State]string{StateEvicting: "Warning MaintenanceEviction", StateBlocked: "Warning MaintenanceBlocked"}[tc.wantState]
			if !strings.Contains(evs, wantEvent) {
				t.Errorf("events lack %q:\n%s", wantEvent, evs)
			}
		})
	}
}

// TestBlockedRetry: a LiveMigrate workload whose drain migration failed is
// tried again after RetryAfter.
func TestBlockedRetry(t *testing.T) {
	lm := builder.MakeLiveMigration("ns", "app-drain-1", "app").Target("b").Obj()
	lm.Labels = map[string]string{policy.LabelDrainCluster: "a"}
	lm.CreationTimestamp = metav1.NewTime(t0)
	lm.Status.Phase = lmv1alpha1.PhaseFailed
	lm.Status.CompletionTime = &metav1.Time{Time: t0.Add(time.Minute)}
	w := (&world{}).add(clusters(maintenanceTaint)...).workload("app", "64Mi", []string{"a"}, optIn("LiveMigrate")...).add(lm)
	r, c, _ := newReconciler(t, w, Config{RetryAfter: 10 * time.Minute})
	clk := clocktesting.NewFakeClock(t0.Add(2 * time.Minute))
	r.Clock = clk
	reconcileCluster(t, r, "a")
	// The drain started after the failed migration: it is an earlier drain's.
	if n := len(migrations(t, c)); n != 2 {
		t.Fatalf("%d migrations, want a new one (the failed one belongs to an earlier drain)", n)
	}
}

func TestTaintRemovedStopsTheDrain(t *testing.T) {
	w := (&world{}).add(clusters(maintenanceTaint)...).
		workload("one", "64Mi", []string{"a"}, optIn("LiveMigrate")...).
		workload("two", "64Mi", []string{"a"}, optIn("LiveMigrate")...)
	r, c, rec := newReconciler(t, w, Config{MaxActivePerCluster: 1})
	reconcileCluster(t, r, "a")
	if n := len(migrations(t, c)); n != 1 {
		t.Fatalf("%d migrations, want 1", n)
	}
	cl := &clusterv1alpha1.Cluster{}
	if err := c.Get(context.Background(), types.NamespacedName{Name: "a"}, cl); err != nil {
		t.Fatal(err)
	}
	cl.Spec.Taints = nil
	if err := c.Update(context.Background(), cl); err != nil {
		t.Fatal(err)
	}
	// The running migration finishes: nothing new starts.
	lms := migrations(t, c)
	lms[0].Status.Phase = lmv1alpha1.PhaseSucceeded
	if err := c.Status().Update(context.Background(), &lms[0]); err != nil {
		t.Fatal(err)
	}
	drained(t, rec)
	reconcileCluster(t, r, "a")
	if n := len(migrations(t, c)); n != 1 {
		t.Errorf("%d migrations after the taint was removed, want still 1", n)
	}
	if rep := report(t, c, "a"); rep != nil {
		t.Errorf("report %+v kept after the taint was removed", rep)
	}
	if evs := strings.Join(drained(t, rec), "\n"); !strings.Contains(evs, "Normal DrainStopped") {
		t.Errorf("events %q lack DrainStopped", evs)
	}
}

func TestFreeSlots(t *testing.T) {
	mk := func(name, source, target string, phase lmv1alpha1.LiveMigrationPhase, drain string) lmv1alpha1.LiveMigration {
		lm := builder.MakeLiveMigration("ns", name, name).Clusters(source, target).Obj()
		lm.Status.Phase = phase
		if drain != "" {
			lm.Labels = map[string]string{policy.LabelDrainCluster: drain}
		}
		return *lm
	}
	all := []lmv1alpha1.LiveMigration{
		mk("running-out", "a", "b", lmv1alpha1.PhasePreCopy, ""),
		mk("running-in", "c", "a", lmv1alpha1.PhaseRestoring, ""),
		mk("pending-drain", "", "", lmv1alpha1.PhasePending, "a"),
		mk("elsewhere", "c", "b", lmv1alpha1.PhasePlanning, ""),
		mk("done", "a", "b", lmv1alpha1.PhaseSucceeded, "a"),
		mk("failed", "a", "b", lmv1alpha1.PhaseFailed, "a"),
	}
	cases := map[string]struct {
		max, per, want int
	}{
		"unlimited":                  {0, 0, -1},
		"per cluster counts 3 on a":  {0, 5, 2},
		"per cluster full":           {0, 3, 0},
		"global counts 4 active":     {6, 0, 2},
		"the tighter of the two":     {5, 4, 1},
		"over the limit is not less": {2, 1, 0},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			if got := FreeSlots(all, "a", tc.max, tc.per); got != tc.want {
				t.Errorf("FreeSlots = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestOrder(t *testing.T) {
	mk := func(name string, prio int32, est time.Duration) *Candidate {
		return &Candidate{Binding: builder.MakeBinding("ns", name).Obj(), Policy: &policy.Policy{DrainPriority: prio}, Estimate: est}
	}
	cands := []*Candidate{mk("a", 0, 3*time.Second), mk("b", 0, time.Second), mk("c", 10, 9*time.Second), mk("d", -1, 0), mk("e", 0, time.Second)}
	Order(cands)
	var got []string
	for _, c := range cands {
		got = append(got, c.Binding.Spec.Resource.Name)
	}
	if diff := cmp.Diff([]string{"c", "b", "e", "a", "d"}, got); diff != "" {
		t.Errorf("order (-want +got):\n%s", diff)
	}
}

func TestEstimateDowntime(t *testing.T) {
	rb := builder.MakeBinding("ns", "x").Request("memory", "100Mi").Replicas(2).Obj()
	if got := EstimateDowntime(rb, 1<<30, 100<<20); got != 2*time.Second {
		t.Errorf("estimate %v, want 2s (2 × 100Mi at 100Mi/s)", got)
	}
	if got := EstimateDowntime(builder.MakeBinding("ns", "y").Obj(), 50<<20, 100<<20); got != 500*time.Millisecond {
		t.Errorf("estimate without a request %v, want the fallback's 500ms", got)
	}
}

var _ framework.FilterPlugin = &Filter{}

// TestNoExecuteWithoutToleration warns that Karmada's taint eviction may
// beat the live move of a workload that does not tolerate a NoExecute
// maintenance taint, and does not for one that does.
func TestNoExecuteWithoutToleration(t *testing.T) {
	noExec := &corev1.Taint{Key: DefaultTaintKey, Effect: corev1.TaintEffectNoExecute}
	w := (&world{}).add(clusters(noExec)...).workload("bare", "64Mi", []string{"a"}, optIn("LiveMigrate")...)
	w.add(&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "tolerant", Annotations: map[string]string{policy.AnnotationEvictionStrategy: "LiveMigrate"}}})
	w.add(builder.MakeBinding("ns", "tolerant").SingleCluster().Toleration(DefaultTaintKey, corev1.TaintEffectNoExecute).ScheduledOn(1, "a").Obj())
	r, c, rec := newReconciler(t, w, Config{MaxActivePerCluster: 1})
	reconcileCluster(t, r, "a")
	warnings := map[string]string{}
	for _, wr := range report(t, c, "a").Workloads {
		warnings[wr.Name] = wr.Warning
	}
	if !strings.Contains(warnings["bare"], "Karmada evicts and re-creates it before it can move live") {
		t.Errorf("bare's warning %q", warnings["bare"])
	}
	if warnings["tolerant"] != "" {
		t.Errorf("tolerant's warning %q, want none", warnings["tolerant"])
	}
	evs := strings.Join(drained(t, rec), "\n")
	if strings.Count(evs, "MaintenanceEvictionRace") != 1 {
		t.Errorf("want one MaintenanceEvictionRace event:\n%s", evs)
	}
	reconcileCluster(t, r, "a")
	if evs := strings.Join(drained(t, rec), "\n"); strings.Contains(evs, "MaintenanceEvictionRace") {
		t.Errorf("the warning was repeated:\n%s", evs)
	}
}
