package rebalance

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"
	"time"

	clusterv1alpha1 "github.com/karmada-io/karmada/pkg/apis/cluster/v1alpha1"
	workv1alpha2 "github.com/karmada-io/karmada/pkg/apis/work/v1alpha2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
	"github.com/livemigrate/livemigrate/descheduler/placement"
	"github.com/livemigrate/livemigrate/descheduler/policy"
	"github.com/livemigrate/livemigrate/plugins/capacity"
	"github.com/livemigrate/livemigrate/plugins/config"
	"github.com/livemigrate/livemigrate/test/builder"
)

// The simulated federation.
const (
	simClusters  = 50
	simWorkloads = 2000
	simRounds    = 200
	// simLoadStops is the round at which the load that cannot move changes
	// for the last time (a step on a tenth of the clusters).
	simLoadStops = 100
	// simSettleRounds is how many rounds after simLoadStops the federation
	// must be quiet: no move chosen and none in flight.
	simSettleRounds = 40
	simInterval     = 5 * time.Minute
)

type simWorkload struct {
	name     string
	cluster  string
	cpu, mem int64 // millicores, bytes, per replica
	replicas int32
	ann      map[string]string
	// lastEnd, lastFrom and lastTo describe its last finished migration.
	lastEnd          time.Time
	lastFrom, lastTo string
	migrating        *simMigration
	moves            int
}

type simMigration struct {
	lm       *lmv1alpha1.LiveMigration
	w        *simWorkload
	from, to string
	done     time.Time
	fails    bool
}

type simCluster struct {
	name          string
	cpu, mem      int64 // allocatable
	extCPU, extMe int64 // load that cannot move
}

type sim struct {
	t        *testing.T
	rng      *rand.Rand
	cfg      Config
	clusters []*simCluster
	byName   map[string]*simCluster
	work     []*simWorkload
	byKey    map[string]*simWorkload
	lms      []*lmv1alpha1.LiveMigration
	running  []*simMigration
	pairEnds map[string]time.Time // from/to → end of the latest rebalancing move
	now      time.Time

	moves, failed, violations int
}

func newSim(t *testing.T, seed uint64) *sim {
	s := &sim{t: t, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), byName: map[string]*simCluster{},
		byKey: map[string]*simWorkload{}, pairEnds: map[string]time.Time{}, now: t0,
		cfg: Config{Bands: Bands{High: 0.8, Low: 0.5}, Cooldown: time.Hour, MaxMoves: 10, Settle: time.Minute,
			MaxActive: 20, MaxActivePerCluster: 2, Bandwidth: 1 << 30}}
	for i := range simClusters {
		cores := int64(64 + 32*s.rng.IntN(7)) // 64 … 256 cores, 4Gi per core
		c := &simCluster{name: fmt.Sprintf("member-%02d", i), cpu: cores * 1000, mem: cores << 32}
		c.extCPU, c.extMe = c.cpu*int64(s.rng.IntN(25))/100, c.mem*int64(s.rng.IntN(25))/100
		s.clusters = append(s.clusters, c)
		s.byName[c.name] = c
	}
	// A fifth of the clusters draws three times the workloads: they start hot.
	weights := make([]int, simClusters)
	total := 0
	for i := range weights {
		weights[i] = 1
		if i%5 == 0 {
			weights[i] = 3
		}
		total += weights[i]
	}
	for i := range simWorkloads {
		w := &simWorkload{name: fmt.Sprintf("w%04d", i), replicas: int32(1 + s.rng.IntN(3)),
			cpu: int64(250 * (1 + s.rng.IntN(4))), mem: int64(256<<20) * int64(1+s.rng.IntN(20))}
		if i%50 == 0 { // a few large ones, 8 to 48 cores and little memory: one move can fill a receiver
			w.cpu, w.mem = int64(8000*(1+s.rng.IntN(2))), 512<<20
		}
		switch r := s.rng.IntN(10); {
		case r < 7:
			w.ann = map[string]string{policy.AnnotationEvictionStrategy: "LiveMigrate"}
			if s.rng.IntN(4) == 0 {
				w.ann[policy.AnnotationDowntimeBudget] = "3s"
			}
		case r < 8:
			w.ann = map[string]string{policy.AnnotationEvictionStrategy: "LiveMigrate", policy.AnnotationRebalance: "false"}
		default:
			w.ann = map[string]string{}
		}
		pick := s.rng.IntN(total)
		for j, wt := range weights {
			if pick < wt {
				w.cluster = s.clusters[j].name
				break
			}
			pick -= wt
		}
		s.work = append(s.work, w)
		s.byKey["StatefulSet/ns/"+w.name] = w
	}
	return s
}

func (w *simWorkload) total() (cpu, mem int64) {
	return w.cpu * int64(w.replicas), w.mem * int64(w.replicas)
}

// used is what the cluster really holds: the load that cannot move, the
// workloads bound to it, and those migrating into it (restored there before
// they leave the source).
func (s *sim) used(c *simCluster) (cpu, mem, pods int64) {
	cpu, mem = c.extCPU, c.extMe
	for _, w := range s.work {
		on := w.cluster == c.name || (w.migrating != nil && w.migrating.to == c.name)
		if on {
			wc, wm := w.total()
			cpu, mem, pods = cpu+wc, mem+wm, pods+int64(w.replicas)
		}
	}
	return cpu, mem, pods
}

func (s *sim) objects(round int) *Objects {
	objs := &Objects{}
	for _, lm := range s.lms {
		objs.Migrations = append(objs.Migrations, *lm)
	}
	for _, c := range s.clusters {
		cpu, mem, pods := s.used(c)
		cl := builder.MakeCluster(c.name).ResourceVersion(fmt.Sprint(round)).Obj()
		cl.Status.ResourceSummary = &clusterv1alpha1.ResourceSummary{
			Allocatable: corev1.ResourceList{corev1.ResourceCPU: *resource.NewMilliQuantity(c.cpu, resource.DecimalSI),
				corev1.ResourceMemory: *resource.NewQuantity(c.mem, resource.BinarySI), corev1.ResourcePods: *resource.NewQuantity(5000, resource.DecimalSI)},
			Allocated: corev1.ResourceList{corev1.ResourceCPU: *resource.NewMilliQuantity(cpu, resource.DecimalSI),
				corev1.ResourceMemory: *resource.NewQuantity(mem, resource.BinarySI), corev1.ResourcePods: *resource.NewQuantity(pods, resource.DecimalSI)},
		}
		objs.Clusters = append(objs.Clusters, *builder.Ready(cl, true))
	}
	for _, w := range s.work {
		rb := builder.MakeBinding("ns", w.name).Resource("apps/v1", "StatefulSet").SingleCluster().Replicas(w.replicas).
			ScheduledOn(w.replicas, w.cluster).Obj()
		rb.Spec.ReplicaRequirements = &workv1alpha2.ReplicaRequirements{ResourceRequest: corev1.ResourceList{
			corev1.ResourceCPU: *resource.NewMilliQuantity(w.cpu, resource.DecimalSI), corev1.ResourceMemory: *resource.NewQuantity(w.mem, resource.BinarySI)}}
		objs.Bindings = append(objs.Bindings, *rb)
	}
	return objs
}

func (s *sim) sizing() Sizing {
	return Sizing{
		Policy: func(_ context.Context, rb *workv1alpha2.ResourceBinding) (*policy.Policy, error) {
			w := s.byKey[Key(rb)]
			return policy.Resolve(policy.Layer{Source: policy.Source{Level: policy.LevelTemplate, Kind: "StatefulSet", Namespace: "ns", Name: w.name},
				Annotations: w.ann}), nil
		},
		VolumeBytes: func(_ context.Context, rb *workv1alpha2.ResourceBinding) (int64, error) {
			return int64(rb.Spec.Replicas) << 30, nil
		},
		DefaultBudget: 10 * time.Second, DefaultCheckpointEstimate: 256 << 20,
	}
}

// finish ends the migrations due by now.
func (s *sim) finish() {
	var still []*simMigration
	for _, m := range s.running {
		if m.done.After(s.now) {
			still = append(still, m)
			continue
		}
		st := &m.lm.Status
		st.CompletionTime = &metav1.Time{Time: m.done}
		if m.fails {
			st.Phase = lmv1alpha1.PhaseFailed
			s.failed++
		} else {
			st.Phase = lmv1alpha1.PhaseSucceeded
			m.w.cluster = m.to
		}
		st.PhaseTransitions = append(st.PhaseTransitions, lmv1alpha1.PhaseTransition{Phase: st.Phase, EnteredAt: metav1.NewMicroTime(m.done)})
		m.w.migrating, m.w.lastEnd, m.w.lastFrom, m.w.lastTo = nil, m.done, m.from, m.to
		if policy.TriggerOf(m.lm.Labels) == policy.TriggerRebalance && !m.fails {
			s.pairEnds[m.from+"/"+m.to] = m.done
		}
	}
	s.running = still
}

// drift moves the load that cannot move by up to ±4 % of each cluster,
// within 0–35 %.
func (s *sim) drift() {
	for _, c := range s.clusters {
		c.extCPU = clamp(c.extCPU+c.cpu*int64(s.rng.IntN(9)-4)/100, 0, c.cpu*35/100)
		c.extMe = clamp(c.extMe+c.mem*int64(s.rng.IntN(9)-4)/100, 0, c.mem*35/100)
	}
}

// step is the last load change: the load that cannot move jumps to 55 %
// of CPU on every tenth cluster (from member-03), making most of them
// sources, and goes away on every tenth from member-07, making receivers,
// so that the rounds after it must rebalance and then settle.
func (s *sim) step() {
	for i := 3; i < simClusters; i += 10 {
		s.clusters[i].extCPU = s.clusters[i].cpu * 55 / 100
	}
	for i := 7; i < simClusters; i += 10 {
		s.clusters[i].extCPU, s.clusters[i].extMe = 0, 0
	}
}

func clamp(v, lo, hi int64) int64 { return min(max(v, lo), hi) }

// check asserts the properties of one chosen move against the simulated truth.
func (s *sim) check(d Decision) {
	w := s.byKey[d.Workload.Key()]
	fail := func(format string, args ...any) {
		s.violations++
		s.t.Errorf("%s: move of %s %s→%s: %s", s.now.Format("15:04"), w.name, d.Source, d.Target, fmt.Sprintf(format, args...))
	}
	if w.migrating != nil {
		fail("it is migrating already")
	}
	if !w.lastEnd.IsZero() && s.now.Sub(w.lastEnd) < s.cfg.Cooldown {
		fail("moved again %s after its last migration ended, within the cooldown %s", s.now.Sub(w.lastEnd), s.cfg.Cooldown)
		if w.lastFrom == d.Target && w.lastTo == d.Source {
			fail("A→B→A: back to %s within the cooldown", d.Target)
		}
	}
	if end, ok := s.pairEnds[d.Target+"/"+d.Source]; ok && s.now.Sub(end) < s.cfg.Cooldown {
		fail("load moved %s→%s %s ago: a move back within the cooldown", d.Target, d.Source, s.now.Sub(end))
	}
	for _, m := range s.running {
		if policy.TriggerOf(m.lm.Labels) == policy.TriggerRebalance && m.from == d.Target && m.to == d.Source {
			fail("a move %s→%s is still running", d.Target, d.Source)
		}
	}
	if w.ann[policy.AnnotationEvictionStrategy] != "LiveMigrate" || w.ann[policy.AnnotationRebalance] == "false" {
		fail("the workload is not opted in to rebalancing: %v", w.ann)
	}
	tgt := s.byName[d.Target]
	cpu, mem, _ := s.used(tgt)
	wc, wm := w.total()
	if float64(cpu+wc) > s.cfg.Bands.High*float64(tgt.cpu) || float64(mem+wm) > s.cfg.Bands.High*float64(tgt.mem) {
		fail("the receiver ends above the high band: cpu %s, memory %s", Percent(float64(cpu+wc)/float64(tgt.cpu)), Percent(float64(mem+wm)/float64(tgt.mem)))
	}
}

// start creates the LiveMigration of a chosen move; it ends 1 to 3 rounds
// later, one in twenty rolls back.
func (s *sim) start(d Decision) {
	w := s.byKey[d.Workload.Key()]
	lm := builder.MakeLiveMigration("ns", fmt.Sprintf("%s-%d", w.name, w.moves), w.name).Kind("StatefulSet").Target(d.Target).
		Clusters(d.Source, d.Target).Phase(lmv1alpha1.PhasePreCopy, s.now).Obj()
	lm.Labels = map[string]string{policy.LabelTrigger: string(policy.TriggerRebalance)}
	lm.CreationTimestamp = metav1.Time{Time: s.now}
	s.lms = append(s.lms, lm)
	m := &simMigration{lm: lm, w: w, from: d.Source, to: d.Target, done: s.now.Add(time.Duration(1+s.rng.IntN(3)) * simInterval), fails: s.rng.IntN(20) == 0}
	w.migrating, w.moves = m, w.moves+1
	s.moves++
	s.running = append(s.running, m)
}

func (s *sim) env(objs *Objects) *PluginEnv {
	cp, err := capacity.New(&config.CapacityArgs{})
	if err != nil {
		s.t.Fatal(err)
	}
	return NewPluginEnv(context.Background(), append(placement.SchedulerFilters(), cp), objs, 10, s.cfg.Bandwidth)
}

func (s *sim) sources(p *Plan) []string {
	var out []string
	for _, c := range p.Clusters {
		if c.Class == ClassSource {
			out = append(out, c.Name)
		}
	}
	return out
}

// TestSimulatedFederation runs the decision the controller runs (Snapshot,
// Decide, PluginEnv with Karmada's filters and the Capacity plugin) over a
// simulated federation of 50 clusters and 2,000 workloads for 200 rounds.
func TestSimulatedFederation(t *testing.T) {
	s := newSim(t, 7)
	var (
		initialSources, sourcesAtStop int
		quietFrom                     = -1
		last                          *Plan
		chosenAfterStop               int
		byOutcome                     = map[Outcome]int{}
	)
	start := time.Now()
	for round := range simRounds {
		s.now = t0.Add(time.Duration(round) * simInterval)
		s.finish()
		switch {
		case round < simLoadStops:
			s.drift()
		case round == simLoadStops:
			s.step()
		}
		objs := s.objects(round)
		in, err := Snapshot(context.Background(), objs, s.cfg, s.sizing(), s.now)
		if err != nil {
			t.Fatal(err)
		}
		plan := Decide(in, s.cfg, s.env(objs))
		for _, d := range plan.Decisions {
			byOutcome[d.Outcome]++
		}
		switch round {
		case 0:
			initialSources = len(s.sources(plan))
		case simLoadStops:
			sourcesAtStop = len(s.sources(plan))
			if sourcesAtStop == 0 {
				t.Fatalf("the last load change made no source: the rounds after it test nothing")
			}
		}
		chosen := plan.Chosen()
		for _, d := range chosen {
			s.check(d)
			s.start(d)
		}
		if round >= simLoadStops {
			chosenAfterStop += len(chosen)
			if len(chosen) == 0 && len(s.running) == 0 {
				if quietFrom < 0 {
					quietFrom = round
				}
			} else {
				quietFrom = -1
			}
		}
		last = plan
	}
	elapsed := time.Since(start)

	perWorkload := 0
	for _, w := range s.work {
		perWorkload = max(perWorkload, w.moves)
	}
	// Bounds: a workload moves at most once per cooldown plus its shortest
	// migration (one round); a round chooses at most MaxMoves.
	maxPerWorkload := 1 + int(time.Duration(simRounds)*simInterval/(s.cfg.Cooldown+simInterval))
	if perWorkload > maxPerWorkload {
		t.Errorf("a workload moved %d times, more than the bound %d", perWorkload, maxPerWorkload)
	}
	if s.moves > simRounds*s.cfg.MaxMoves {
		t.Errorf("%d moves, more than %d rounds × %d", s.moves, simRounds, s.cfg.MaxMoves)
	}
	if s.moves == 0 {
		t.Fatalf("nothing moved: the federation starts with %d sources", initialSources)
	}

	// After the load stopped changing the federation must become quiet
	// within simSettleRounds: no move chosen and none running.
	if quietFrom < 0 || quietFrom > simLoadStops+simSettleRounds {
		t.Errorf("not quiet within %d rounds after the load stopped changing (quiet from round %d)", simSettleRounds, quietFrom)
	}
	// Every cluster still above the high band says why nothing moves off it.
	why := map[string]map[Outcome]int{}
	for _, d := range last.Decisions {
		if why[d.Source] == nil {
			why[d.Source] = map[Outcome]int{}
		}
		why[d.Source][d.Outcome]++
	}
	left := s.sources(last)
	var explained []string
	for _, c := range left {
		reasons := why[c]
		if reasons[OutcomeChosen] > 0 {
			t.Errorf("%s is still a source and a move off it was chosen in the last round", c)
		}
		var parts []string
		for o, n := range reasons {
			parts = append(parts, fmt.Sprintf("%d %s", n, o))
		}
		sort.Strings(parts)
		if len(parts) == 0 {
			if last.Idle != "" {
				parts = []string{last.Idle}
			} else {
				parts = []string{"no opted-in workload on it"}
			}
		}
		explained = append(explained, c+": "+strings.Join(parts, ", "))
	}
	receivers := 0
	for _, c := range last.Clusters {
		if c.Class == ClassReceiver {
			receivers++
		}
	}
	// Any remaining source must be one no eligible workload can leave.
	for _, c := range left {
		for o := range why[c] {
			if o == OutcomeCooldown || o == OutcomeMigrating || o == OutcomeMaxMoves || o == OutcomeConcurrency {
				t.Errorf("%s is still a source with candidates waiting (%s) after the federation was quiet", c, o)
			}
		}
	}

	var outs []string
	for o, n := range byOutcome {
		outs = append(outs, fmt.Sprintf("%s=%d", o, n))
	}
	sort.Strings(outs)
	t.Logf("federation: %d clusters, %d workloads, %d rounds of %s, load changes until round %d; decided in %s",
		simClusters, simWorkloads, simRounds, simInterval, simLoadStops, elapsed.Round(time.Millisecond))
	t.Logf("moves: %d (%d rolled back), %d after the load stopped changing; at most %d per workload (bound %d), bound on the total %d",
		s.moves, s.failed, chosenAfterStop, perWorkload, maxPerWorkload, simRounds*s.cfg.MaxMoves)
	t.Logf("sources: %d at round 0, %d when the load stopped changing, %d at the end; receivers at the end: %d; quiet from round %d (bound %d)",
		initialSources, sourcesAtStop, len(left), receivers, quietFrom, simLoadStops+simSettleRounds)
	t.Logf("decisions over all rounds: %s", strings.Join(outs, " "))
	t.Logf("violations: %d (a move within the cooldown, A→B→A, a receiver pushed above the high band, a workload not opted in)", s.violations)
	for _, e := range explained {
		t.Logf("still above the high band at the end: %s", e)
	}
}
