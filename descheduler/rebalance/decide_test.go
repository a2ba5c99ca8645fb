package rebalance

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	clusterv1alpha1 "github.com/karmada-io/karmada/pkg/apis/cluster/v1alpha1"
	workv1alpha2 "github.com/karmada-io/karmada/pkg/apis/work/v1alpha2"
	"github.com/karmada-io/karmada/pkg/scheduler/framework"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
	"github.com/livemigrate/livemigrate/descheduler/placement"
	"github.com/livemigrate/livemigrate/descheduler/policy"
	"github.com/livemigrate/livemigrate/plugins/capacity"
	"github.com/livemigrate/livemigrate/plugins/config"
	"github.com/livemigrate/livemigrate/test/builder"
)

var t0 = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

func testConfig() Config {
	return Config{Bands: Bands{High: 0.8, Low: 0.5}, Cooldown: time.Hour, MaxMoves: 5, Settle: time.Minute,
		MaxActive: 10, MaxActivePerCluster: 2, Bandwidth: 100 << 20}
}

// fed is a federation under test: clusters of 100 CPU, 100Gi, 1000 pods.
type fed struct {
	objs     Objects
	policies map[string]map[string]string // template name → annotations
}

func newFed() *fed { return &fed{policies: map[string]map[string]string{}} }

// cluster adds a Ready cluster with cpu and memory in use (CPU cores, Gi).
func (f *fed) cluster(name string, cpu, memGi int) *fed {
	c := builder.MakeCluster(name).Allocatable("cpu", "100", "memory", "100Gi", "pods", "1000").
		Allocated("cpu", fmt.Sprint(cpu), "memory", fmt.Sprintf("%dGi", memGi), "pods", "10").Obj()
	f.objs.Clusters = append(f.objs.Clusters, *builder.Ready(c, true))
	return f
}

// workload adds a one-replica StatefulSet on cluster with the requests and
// the policy annotations (key, value pairs).
func (f *fed) workload(name, cluster string, cpu, memGi int, annotations ...string) *fed {
	rb := builder.MakeBinding("ns", name).Resource("apps/v1", "StatefulSet").SingleCluster().
		Request("cpu", fmt.Sprint(cpu), "memory", fmt.Sprintf("%dGi", memGi)).ScheduledOn(1, cluster).Obj()
	f.objs.Bindings = append(f.objs.Bindings, *rb)
	a := map[string]string{}
	for i := 0; i+1 < len(annotations); i += 2 {
		a[annotations[i]] = annotations[i+1]
	}
	f.policies[name] = a
	return f
}

func (f *fed) optedIn(name, cluster string, cpu, memGi int, annotations ...string) *fed {
	return f.workload(name, cluster, cpu, memGi, append([]string{policy.AnnotationEvictionStrategy, "LiveMigrate"}, annotations...)...)
}

// migration adds a finished (ended at end) or, with a zero end, running
// migration of the StatefulSet name.
func (f *fed) migration(name, workload, from, to string, trig policy.Trigger, end time.Time) *fed {
	w := builder.MakeLiveMigration("ns", name, workload).Kind("StatefulSet").Target(to).Clusters(from, to)
	if end.IsZero() {
		w.Phase(lmv1alpha1.PhasePreCopy, t0.Add(-time.Minute))
	} else {
		w.Phase(lmv1alpha1.PhaseSucceeded, end)
		w.Status.CompletionTime = &metav1.Time{Time: end}
	}
	w.Labels = map[string]string{policy.LabelTrigger: string(trig)}
	f.objs.Migrations = append(f.objs.Migrations, *w.Obj())
	return f
}

func (f *fed) sizing() Sizing {
	return Sizing{
		Policy: func(_ context.Context, rb *workv1alpha2.ResourceBinding) (*policy.Policy, error) {
			return policy.Resolve(policy.Layer{Source: policy.Source{Level: policy.LevelTemplate, Kind: rb.Spec.Resource.Kind, Namespace: rb.Namespace,
				Name: rb.Spec.Resource.Name}, Annotations: f.policies[rb.Spec.Resource.Name]}), nil
		},
		DefaultBudget: time.Minute, DefaultCheckpointEstimate: 256 << 20,
	}
}

func (f *fed) env(t *testing.T, extra ...framework.Plugin) *PluginEnv {
	t.Helper()
	cp, err := capacity.New(&config.CapacityArgs{})
	if err != nil {
		t.Fatal(err)
	}
	plugins := append(append(placement.SchedulerFilters(), cp), extra...)
	return NewPluginEnv(context.Background(), plugins, &f.objs, 10, 100<<20)
}

func (f *fed) decide(t *testing.T, cfg Config, now time.Time, extra ...framework.Plugin) *Plan {
	t.Helper()
	in, err := Snapshot(context.Background(), &f.objs, cfg, f.sizing(), now)
	if err != nil {
		t.Fatal(err)
	}
	return Decide(in, cfg, f.env(t, extra...))
}

// outcomes maps each decided workload to its outcome and target.
func outcomes(p *Plan) map[string]string {
	out := map[string]string{}
	for _, d := range p.Decisions {
		v := string(d.Outcome)
		if d.Outcome == OutcomeChosen {
			v += "→" + d.Target
		}
		out[d.Workload.Name] = v
	}
	return out
}

func wantOutcomes(t *testing.T, p *Plan, want map[string]string) {
	t.Helper()
	got := outcomes(p)
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: got %q, want %q", k, got[k], v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("decisions %v, want exactly %v", got, want)
	}
	if t.Failed() {
		for _, d := range p.Decisions {
			t.Logf("%s %s→%s benefit %.3f cost %.2f %s: %s", d.Workload.Name, d.Source, d.Target, d.Benefit, d.Cost, d.Outcome, d.Reason)
		}
	}
}

func TestClassify(t *testing.T) {
	b := Bands{High: 0.8, Low: 0.5}
	cases := []struct {
		name     string
		cpu, mem int
		ready    bool
		want     Class
	}{
		{"source by cpu", 85, 10, true, ClassSource},
		{"source by memory", 10, 81, true, ClassSource},
		{"receiver", 49, 20, true, ClassReceiver},
		{"between: one resource at the low band", 50, 10, true, ClassBetween},
		{"at the high band is not a source", 80, 80, true, ClassBetween},
		{"not ready", 95, 95, false, ClassUnknown},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFed().cluster("c", tc.cpu, tc.mem)
			c := Cluster{Name: "c", Ready: tc.ready, Usage: capacity.UsageOf(&f.objs.Clusters[0])}
			if got := c.Classify(b); got != tc.want {
				t.Errorf("Classify = %s, want %s", got, tc.want)
			}
		})
	}
	if (&Cluster{Ready: true}).Classify(b) != ClassUnknown {
		t.Error("a cluster without a resource summary must be Unknown")
	}
}

func TestBandsValidate(t *testing.T) {
	for _, b := range []Bands{{High: 0.5, Low: 0.5}, {High: 1.2, Low: 0.5}, {High: 0.8, Low: 0}} {
		if err := b.Validate(); err == nil {
			t.Errorf("%+v: want an error", b)
		}
	}
	if err := (Bands{High: 0.8, Low: 0.5}).Validate(); err != nil {
		t.Error(err)
	}
}

func TestIdleWithoutSourceOrReceiver(t *testing.T) {
	p := newFed().cluster("a", 70, 70).cluster("b", 30, 30).optedIn("db", "a", 10, 10).decide(t, testConfig(), t0)
	if !strings.Contains(p.Idle, "no cluster is above the high band") || len(p.Decisions) != 0 {
		t.Errorf("no source: idle %q, decisions %v", p.Idle, outcomes(p))
	}
	p = newFed().cluster("a", 90, 70).cluster("b", 60, 30).optedIn("db", "a", 10, 10).decide(t, testConfig(), t0)
	if !strings.Contains(p.Idle, "no cluster is below the low band") || len(p.Decisions) != 0 {
		t.Errorf("no receiver: idle %q, decisions %v", p.Idle, outcomes(p))
	}
}

func TestMovesToTheEmptiestReceiverWithReason(t *testing.T) {
	f := newFed().cluster("a", 90, 50).cluster("b", 40, 40).cluster("c", 20, 20).cluster("mid", 60, 60).
		optedIn("db", "a", 15, 4).workload("web", "a", 30, 4)
	p := f.decide(t, testConfig(), t0)
	wantOutcomes(t, p, map[string]string{"db": "chosen→c"})
	d := p.Chosen()[0]
	if d.Benefit < 0.099 || d.Benefit > 0.101 {
		t.Errorf("benefit %.3f, want 0.10 (90%% down to the 80%% band, capped)", d.Benefit)
	}
	for _, want := range []string{"a is above the high band (80.0%)", "cpu 90.0%", "expected cpu 75.0%", "c: cpu 20.0%", "expected cpu 35.0%"} {
		if !strings.Contains(d.Reason, want) {
			t.Errorf("reason %q does not say %q", d.Reason, want)
		}
	}
}

func TestReceiverStaysBelowTheHighBand(t *testing.T) {
	// b has room below the low band but not for 35 more CPU below 80 %.
	f := newFed().cluster("a", 95, 10).cluster("b", 49, 10).optedIn("big", "a", 35, 1)
	wantOutcomes(t, f.decide(t, testConfig(), t0), map[string]string{"big": string(OutcomeReceiversFull)})
	// The second move into b would push it above the band: only one goes.
	f = newFed().cluster("a", 99, 10).cluster("b", 45, 10).optedIn("w1", "a", 20, 1).optedIn("w2", "a", 20, 1)
	p := f.decide(t, Config{Bands: Bands{High: 0.8, Low: 0.5}, Cooldown: time.Hour, MaxMoves: 5}, t0)
	if n := len(p.Chosen()); n != 1 {
		t.Fatalf("chosen %d moves, want 1: %v", n, outcomes(p))
	}
	if d := p.Chosen()[0]; d.TargetAfter[capacity.UsageCPU] > 0.8 {
		t.Errorf("target after the move at %s", Percent(d.TargetAfter[capacity.UsageCPU]))
	}
}

func TestStopsOnceTheSourceIsRelieved(t *testing.T) {
	f := newFed().cluster("a", 85, 10).cluster("b", 10, 10).cluster("c", 10, 10).
		optedIn("w1", "a", 10, 1).optedIn("w2", "a", 10, 2)
	wantOutcomes(t, f.decide(t, testConfig(), t0), map[string]string{"w1": "chosen→b", "w2": string(OutcomeSourceRelieved)})
}

func TestPicksByBenefitPerCost(t *testing.T) {
	// Same benefit (both bring a from 90 % to 80 %), different memory to move.
	f := newFed().cluster("a", 90, 40).cluster("b", 10, 10).
		optedIn("heavy", "a", 10, 30).optedIn("light", "a", 10, 1)
	cfg := testConfig()
	cfg.MaxMoves = 1
	p := f.decide(t, cfg, t0)
	wantOutcomes(t, p, map[string]string{"light": "chosen→b", "heavy": string(OutcomeSourceRelieved)})
	var light, heavy Decision
	for _, d := range p.Decisions {
		if d.Workload.Name == "light" {
			light = d
		} else {
			heavy = d
		}
	}
	if !(light.Cost < heavy.Cost) || light.Downtime <= 0 || light.Bytes != 1<<30 {
		t.Errorf("light cost %.2f (downtime %s, bytes %d), heavy cost %.2f", light.Cost, light.Downtime, light.Bytes, heavy.Cost)
	}
}

func TestMaxMovesPerRoundAndConcurrencyBudget(t *testing.T) {
	f := newFed().cluster("a", 99, 10).cluster("b", 0, 0).cluster("c", 0, 0)
	for i := range 4 {
		f.optedIn(fmt.Sprintf("w%d", i), "a", 5, 1)
	}
	cfg := testConfig()
	cfg.MaxMoves, cfg.MaxActivePerCluster = 2, 0
	p := f.decide(t, cfg, t0)
	wantOutcomes(t, p, map[string]string{"w0": "chosen→b", "w1": "chosen→c", "w2": string(OutcomeMaxMoves), "w3": string(OutcomeMaxMoves)})

	cfg.MaxMoves, cfg.MaxActivePerCluster = 5, 2
	f.migration("other", "elsewhere", "a", "b", policy.TriggerManual, time.Time{})
	p = f.decide(t, cfg, t0)
	// a's running migration and w0 fill a's budget of 2.
	wantOutcomes(t, p, map[string]string{"w0": "chosen→b", "w1": string(OutcomeConcurrency), "w2": string(OutcomeConcurrency), "w3": string(OutcomeConcurrency)})
}

func TestPolicyAndHistoryMakeWorkloadsIneligible(t *testing.T) {
	f := newFed().cluster("a", 95, 10).cluster("b", 10, 10).
		optedIn("off", "a", 5, 1, policy.AnnotationRebalance, "false").
		workload("notin", "a", 5, 1).
		workload("bad", "a", 5, 1, policy.AnnotationEvictionStrategy, "Live").
		optedIn("cool", "a", 5, 1).
		optedIn("busy", "a", 5, 1).
		optedIn("ready", "a", 5, 1)
	f.migration("cool-1", "cool", "b", "a", policy.TriggerMaintenance, t0.Add(-59*time.Minute)).
		migration("busy-1", "busy", "a", "b", policy.TriggerManual, time.Time{})
	p := f.decide(t, testConfig(), t0)
	wantOutcomes(t, p, map[string]string{
		"off": string(OutcomeRebalanceOff), "bad": string(OutcomeInvalidPolicy), "cool": string(OutcomeCooldown),
		"busy": string(OutcomeMigrating), "ready": "chosen→b",
	})
	// After the cooldown the workload may move again.
	p = f.decide(t, testConfig(), t0.Add(2*time.Minute))
	if got := outcomes(p)["cool"]; got != "chosen→b" {
		t.Errorf("after the cooldown: %s", got)
	}
}

func TestNoMoveBackAlongARecentRebalancingPair(t *testing.T) {
	// Load went from b to a 30 minutes ago; now a is hot and b the only
	// receiver: the round must not send load back.
	f := newFed().cluster("a", 90, 10).cluster("b", 10, 10).optedIn("w", "a", 10, 1).
		migration("x-1", "x", "b", "a", policy.TriggerRebalance, t0.Add(-30*time.Minute))
	p := f.decide(t, testConfig(), t0)
	wantOutcomes(t, p, map[string]string{"w": string(OutcomeNoTarget)})
	if r := p.Decisions[0].Reason; !strings.Contains(r, "b: load moved from it to a within the cooldown") {
		t.Errorf("reason %q", r)
	}
	// A manual or maintenance move does not block the way back.
	f.objs.Migrations[0].Labels[policy.LabelTrigger] = string(policy.TriggerMaintenance)
	wantOutcomes(t, f.decide(t, testConfig(), t0), map[string]string{"w": "chosen→b"})
}

func TestRecentMovesCountUntilTheSummariesShowThem(t *testing.T) {
	// A move into b of 25 CPU just ended: b's summary still shows 20 %, but
	// with it b is at 45 %, and another 40 would cross the band.
	f := newFed().cluster("a", 99, 10).cluster("b", 20, 10).optedIn("w", "a", 40, 1).
		optedIn("moved", "b", 25, 1).
		migration("moved-1", "moved", "c", "b", policy.TriggerManual, t0.Add(-10*time.Second))
	cfg := testConfig()
	wantOutcomes(t, f.decide(t, cfg, t0), map[string]string{"w": string(OutcomeReceiversFull)})
	// Once the settle time has passed the summary is trusted.
	wantOutcomes(t, f.decide(t, cfg, t0.Add(time.Minute)), map[string]string{"w": "chosen→b"})
}

// reject is a Filter plugin rejecting named clusters.
type reject map[string]string

func (reject) Name() string { return "Reject" }
func (r reject) Filter(_ context.Context, _ *workv1alpha2.ResourceBindingSpec, _ *workv1alpha2.ResourceBindingStatus, c *clusterv1alpha1.Cluster) *framework.Result {
	if why, ok := r[c.Name]; ok {
		return framework.NewResult(framework.Unschedulable, why)
	}
	return framework.NewResult(framework.Success)
}

func TestTargetsPassTheFilterPluginsAndTheDowntimeBudget(t *testing.T) {
	f := newFed().cluster("a", 90, 10).cluster("b", 10, 10).cluster("c", 20, 20).optedIn("w", "a", 10, 1)
	wantOutcomes(t, f.decide(t, testConfig(), t0, reject{"b": "too far"}), map[string]string{"w": "chosen→c"})
	p := f.decide(t, testConfig(), t0, reject{"b": "too far", "c": "tainted"})
	wantOutcomes(t, p, map[string]string{"w": string(OutcomeNoTarget)})
	if r := p.Decisions[0].Reason; !strings.Contains(r, "b: Reject: too far") || !strings.Contains(r, "c: Reject: tainted") {
		t.Errorf("reason %q", r)
	}
	// The Capacity plugin's own Filter: b is tainted by Karmada's TaintToleration.
	f.objs.Clusters[1].Spec.Taints = []corev1.Taint{{Key: "dedicated", Effect: corev1.TaintEffectNoSchedule}}
	wantOutcomes(t, f.decide(t, testConfig(), t0), map[string]string{"w": "chosen→c"})

	// 1Gi at 100Mi/s is ~10 s: over a 2 s budget.
	f = newFed().cluster("a", 90, 10).cluster("b", 10, 10).optedIn("w", "a", 10, 1, policy.AnnotationDowntimeBudget, "2s")
	p = f.decide(t, testConfig(), t0)
	wantOutcomes(t, p, map[string]string{"w": string(OutcomeOverBudget)})
	if r := p.Decisions[0].Reason; !strings.Contains(r, "exceeds the downtime budget 2s") {
		t.Errorf("reason %q", r)
	}
}

func TestDowntimeLearnsFromMigrationsIntoTheTarget(t *testing.T) {
	f := newFed().cluster("a", 90, 10).cluster("b", 10, 10).optedIn("w", "a", 10, 1)
	w := builder.MakeLiveMigration("ns", "past", "x").Clusters("z", "b").
		Phase(lmv1alpha1.PhaseCheckpointing, t0.Add(-3*time.Hour)).Phase(lmv1alpha1.PhaseTransfer, t0.Add(-3*time.Hour+3*time.Second)).
		Phase(lmv1alpha1.PhaseSucceeded, t0.Add(-3*time.Hour+4*time.Second))
	w.Status.CompletionTime = &metav1.Time{Time: t0.Add(-3 * time.Hour)}
	w.Status.Bytes.Memory = 1 << 20
	f.objs.Migrations = append(f.objs.Migrations, *w.Obj())
	d := f.decide(t, testConfig(), t0).Chosen()[0]
	// 1Gi at 100Mi/s = 10.24 s, plus the 3 s learned checkpointing.
	if want := 10240*time.Millisecond + 3*time.Second; d.Downtime != want {
		t.Errorf("downtime %s, want %s", d.Downtime, want)
	}
}
