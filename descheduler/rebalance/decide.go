package rebalance

import (
	"fmt"
	"sort"
	"strings"
	"time"

	workv1alpha2 "github.com/karmada-io/karmada/pkg/apis/work/v1alpha2"

	"github.com/livemigrate/livemigrate/descheduler/policy"
	"github.com/livemigrate/livemigrate/plugins/capacity"
)

// Amounts are CPU (millicores), memory (bytes) and pods, indexed as
// capacity.Usage.
type Amounts [capacity.UsageResources]int64

// Bands are the utilization bands, as fractions (0.8 is 80 %).
type Bands struct {
	// High: a cluster above it on any resource is a source.
	High float64
	// Low: a cluster below it on every resource is a receiver.
	Low float64
}

// Validate checks 0 < Low < High ≤ 1.
func (b Bands) Validate() error {
	if !(b.Low > 0 && b.Low < b.High && b.High <= 1) {
		return fmt.Errorf("the bands must satisfy 0 < low < high ≤ 100 %%, got low %s and high %s", Percent(b.Low), Percent(b.High))
	}
	return nil
}

// DefaultSettle is the descheduler's Config.Settle: several times Karmada's
// default refresh of a cluster's resource summary (10 s).
const DefaultSettle = time.Minute

// Config is what a round decides with.
type Config struct {
	Bands Bands
	// Cooldown: a workload is not moved within this long of the end of any
	// migration of it, and load is not moved from B to A within this long
	// of a rebalancing move from A to B.
	Cooldown time.Duration
	// MaxMoves bounds the moves of one round.
	MaxMoves int
	// Settle is how long after a migration ended its move is still added
	// to its clusters' figures, in case their resource summaries do not
	// show it yet (Karmada refreshes them every 10 s by default).
	Settle time.Duration
	// MaxActive and MaxActivePerCluster are the migration controller's
	// concurrency budget (0: unlimited), counting unfinished migrations.
	MaxActive, MaxActivePerCluster int
	// Bandwidth (bytes/s) turns the bytes a move sends into its cost in
	// seconds of link time.
	Bandwidth int64
}

// Class is where a cluster stands against the bands.
type Class string

const (
	ClassSource   Class = "Source"
	ClassReceiver Class = "Receiver"
	ClassBetween  Class = "Between"
	// ClassUnknown: the cluster reports no resource summary or is not
	// Ready; it is neither a source nor a receiver.
	ClassUnknown Class = "Unknown"
)

// Cluster is one member cluster's figures in a round.
type Cluster struct {
	Name  string
	Ready bool
	Usage capacity.Usage
}

// Utilization of resource i with the extra amounts added.
func (c *Cluster) utilization(i int, extra int64) float64 {
	u := c.Usage
	u.InUse[i] = max(u.InUse[i]+extra, 0)
	return u.Utilization(i)
}

// Utilizations returns the cluster's utilization of CPU, memory and pods.
func (c *Cluster) Utilizations() [capacity.UsageResources]float64 {
	var out [capacity.UsageResources]float64
	for i := range out {
		out[i] = c.Usage.Utilization(i)
	}
	return out
}

// Classify places the cluster against the bands.
func (c *Cluster) Classify(b Bands) Class {
	if !c.Ready || !c.Usage.Known {
		return ClassUnknown
	}
	receiver := true
	for i := range c.Usage.Allocatable {
		if c.Usage.Allocatable[i] <= 0 {
			continue
		}
		u := c.Usage.Utilization(i)
		if u > b.High {
			return ClassSource
		}
		if u >= b.Low {
			receiver = false
		}
	}
	if receiver {
		return ClassReceiver
	}
	return ClassBetween
}

// Workload is a workload bound to a source cluster.
type Workload struct {
	// Kind, Namespace and Name of the resource template.
	Kind, Namespace, Name string
	Binding               *workv1alpha2.ResourceBinding
	Cluster               string
	// Requests of all its replicas, pods included.
	Requests Amounts
	// MemoryBytes (the checkpoints) and VolumeBytes (the claims) a move sends.
	MemoryBytes, VolumeBytes int64
	// Budget is its downtime budget, and Policy its resolved policy.
	Budget time.Duration
	Policy *policy.Policy
	// Ineligible says why it may not move this round ("" when it may), and
	// Detail explains it.
	Ineligible Outcome
	Detail     string
}

// Key is Kind/namespace/name.
func (w *Workload) Key() string { return w.Kind + "/" + w.Namespace + "/" + w.Name }

// Move is a migration the round takes into account: unfinished (End zero)
// or ended within the cooldown.
type Move struct {
	Workload string // Kind/namespace/name
	From, To string
	// End is when it ended; zero while it runs.
	End time.Time
	// Rebalance is set for the moves of this trigger.
	Rebalance bool
	// Succeeded is set for a move that ended with the workload on To.
	Succeeded bool
	Requests  Amounts
}

// Input is a snapshot of the federation.
type Input struct {
	Now      time.Time
	Clusters []Cluster
	// Workloads bound to the sources (Snapshot leaves out the others).
	Workloads []*Workload
	// Moves: the unfinished migrations and those ended within the cooldown.
	Moves []Move
}

// Env runs what a decision asks of the rest of the descheduler.
type Env interface {
	// Filter returns why w may not go to target ("" when it may): the
	// scheduler's Filter plugins as the placement of a migration runs them.
	Filter(w *Workload, target *Cluster) string
	// Downtime is the LiveMigration's downtime estimate of moving w to target.
	Downtime(w *Workload, target string) time.Duration
}

// Outcome is what a round decided for a candidate; the values are the
// bounded outcome label of livemigrate_rebalance_decisions_total.
type Outcome string

const (
	OutcomeChosen         Outcome = "chosen"
	OutcomeNotOptedIn     Outcome = "not_opted_in"
	OutcomeRebalanceOff   Outcome = "rebalance_disabled"
	OutcomeInvalidPolicy  Outcome = "invalid_policy"
	OutcomeNotHandled     Outcome = "not_handled"
	OutcomeMigrating      Outcome = "migrating"
	OutcomeCooldown       Outcome = "cooldown"
	OutcomeNoTarget       Outcome = "no_target"
	OutcomeOverBudget     Outcome = "over_downtime_budget"
	OutcomeSourceRelieved Outcome = "source_relieved"
	OutcomeMaxMoves       Outcome = "max_moves"
	OutcomeConcurrency    Outcome = "concurrency_budget"
	OutcomeReceiversFull  Outcome = "receivers_full"
	OutcomeNoBenefit      Outcome = "no_benefit"
)

// Outcomes lists every outcome, for metrics.
var Outcomes = []Outcome{OutcomeChosen, OutcomeRebalanceOff, OutcomeInvalidPolicy, OutcomeNotHandled,
	OutcomeMigrating, OutcomeCooldown, OutcomeNoTarget, OutcomeOverBudget, OutcomeSourceRelieved, OutcomeMaxMoves,
	OutcomeConcurrency, OutcomeReceiversFull, OutcomeNoBenefit}

// Decision is the round's verdict on one candidate.
type Decision struct {
	Workload *Workload
	Source   string
	// Target is the chosen receiver (Outcome chosen), else the receiver the
	// cost was estimated for, if any.
	Target string
	// Benefit: how many utilization points (0.05 = 5 %) the move takes off
	// its source, summed over the source's resources above the high band
	// and counted down to the band.
	Benefit float64
	// Downtime estimate and Bytes sent (memory + volumes); Cost is the
	// downtime plus the bytes' time on the link, in seconds.
	Downtime time.Duration
	Bytes    int64
	Cost     float64
	Outcome  Outcome
	// Reason explains the outcome.
	Reason string
	// Utilization of the source and the target before and after the move
	// (with the moves chosen before it in the round).
	SourceBefore, SourceAfter, TargetBefore, TargetAfter [capacity.UsageResources]float64
}

// Ratio is the benefit per cost the candidates are ranked by.
func (d *Decision) Ratio() float64 { return d.Benefit / max(d.Cost, 0.001) }

// ClusterState is a cluster's class in a round.
type ClusterState struct {
	Name        string
	Class       Class
	Utilization [capacity.UsageResources]float64
}

// Plan is the outcome of a round.
type Plan struct {
	Clusters []ClusterState
	// Idle says why the round does nothing at all ("" when it considered
	// candidates).
	Idle string
	// Decisions, the chosen ones first in the order chosen, then the rest
	// by benefit per cost.
	Decisions []Decision
}

// Chosen returns the chosen moves.
func (p *Plan) Chosen() []Decision {
	var out []Decision
	for _, d := range p.Decisions {
		if d.Outcome == OutcomeChosen {
			out = append(out, d)
		}
	}
	return out
}

// Percent renders a fraction as a percentage.
func Percent(f float64) string { return fmt.Sprintf("%.1f%%", f*100) }

// FormatUtilization renders CPU, memory and pods utilization.
func FormatUtilization(u [capacity.UsageResources]float64) string {
	parts := make([]string, len(u))
	for i, v := range u {
		parts[i] = string(capacity.UsageNames[i]) + " " + Percent(v)
	}
	return strings.Join(parts, ", ")
}

// round is the mutable state of one Decide call.
type round struct {
	cfg      Config
	in       *Input
	env      Env
	clusters map[string]*Cluster
	// extra is what the round's chosen moves (and the moves that may not
	// show in the summaries yet) add to (receivers) or take from (sources)
	// each cluster.
	extra     map[string]*Amounts
	receivers []*Cluster
	// recentPairs holds "from/to" of the rebalancing moves within the cooldown.
	recentPairs map[string]bool
	active      int
	activeOn    map[string]int
}

func (r *round) add(cluster string, a Amounts, sign int64) {
	e := r.extra[cluster]
	if e == nil {
		e = &Amounts{}
		r.extra[cluster] = e
	}
	for i := range a {
		e[i] += sign * a[i]
	}
}

func (r *round) util(c *Cluster) [capacity.UsageResources]float64 {
	var out [capacity.UsageResources]float64
	e := r.extra[c.Name]
	for i := range out {
		var x int64
		if e != nil {
			x = e[i]
		}
		out[i] = c.utilization(i, x)
	}
	return out
}

func (r *round) utilWith(c *Cluster, a Amounts, sign int64) [capacity.UsageResources]float64 {
	var out [capacity.UsageResources]float64
	e := r.extra[c.Name]
	for i := range out {
		x := sign * a[i]
		if e != nil {
			x += e[i]
		}
		out[i] = c.utilization(i, x)
	}
	return out
}

// aboveHigh reports whether any reported resource is above the high band.
func (r *round) aboveHigh(c *Cluster, u [capacity.UsageResources]float64) bool {
	for i, v := range u {
		if c.Usage.Allocatable[i] > 0 && v > r.cfg.Bands.High {
			return true
		}
	}
	return false
}

// newRound indexes the clusters and moves and classifies the clusters,
// counting the moves their summaries may not show yet.
func newRound(in *Input, cfg Config, env Env) (*round, *Plan, map[string]bool) {
	r := &round{cfg: cfg, in: in, env: env, clusters: map[string]*Cluster{}, extra: map[string]*Amounts{},
		recentPairs: map[string]bool{}, activeOn: map[string]int{}}
	for i := range in.Clusters {
		r.clusters[in.Clusters[i].Name] = &in.Clusters[i]
	}
	// Moves that may not show in the summaries yet count as done: the
	// target holds the workload, the source no longer does. Both err on
	// the side of fewer moves (a receiver looks fuller, a source emptier).
	for _, m := range in.Moves {
		if m.End.IsZero() {
			r.active++
			r.activeOn[m.From]++
			if m.To != "" && m.To != m.From {
				r.activeOn[m.To]++
			}
		}
		if m.End.IsZero() || (m.Succeeded && in.Now.Sub(m.End) < cfg.Settle) {
			if m.To != "" && m.From != "" {
				r.add(m.To, m.Requests, 1)
				r.add(m.From, m.Requests, -1)
			}
		}
		if m.Rebalance && m.To != "" && (m.End.IsZero() || in.Now.Sub(m.End) < cfg.Cooldown) {
			r.recentPairs[m.From+"/"+m.To] = true
		}
	}
	plan := &Plan{}
	sources := map[string]bool{}
	for i := range in.Clusters {
		c := &in.Clusters[i]
		shown := *c
		if e := r.extra[c.Name]; e != nil {
			for j := range shown.Usage.InUse {
				shown.Usage.InUse[j] = max(shown.Usage.InUse[j]+e[j], 0)
			}
		}
		cls := shown.Classify(cfg.Bands)
		plan.Clusters = append(plan.Clusters, ClusterState{Name: c.Name, Class: cls, Utilization: shown.Utilizations()})
		switch cls {
		case ClassSource:
			sources[c.Name] = true
		case ClassReceiver:
			r.receivers = append(r.receivers, c)
		}
	}
	sort.Slice(plan.Clusters, func(i, j int) bool { return plan.Clusters[i].Name < plan.Clusters[j].Name })
	return r, plan, sources
}

// Decide runs one round: it classifies the clusters and, when there are
// both sources and receivers, picks the moves by benefit per cost.
func Decide(in *Input, cfg Config, env Env) *Plan {
	r, plan, sources := newRound(in, cfg, env)
	switch {
	case len(sources) == 0:
		plan.Idle = "no cluster is above the high band (" + Percent(cfg.Bands.High) + ")"
		return plan
	case len(r.receivers) == 0:
		plan.Idle = "no cluster is below the low band (" + Percent(cfg.Bands.Low) + ") on every resource to receive load"
		return plan
	}

	var ranked []*Decision
	for _, w := range in.Workloads {
		if !sources[w.Cluster] {
			continue
		}
		src := r.clusters[w.Cluster]
		d := &Decision{Workload: w, Source: w.Cluster, Bytes: w.MemoryBytes + w.VolumeBytes}
		d.SourceBefore = r.util(src)
		if w.Ineligible != "" {
			d.Outcome, d.Reason = w.Ineligible, w.Detail
			plan.Decisions = append(plan.Decisions, *d)
			continue
		}
		d.Benefit = r.benefit(src, d.SourceBefore, w.Requests)
		if d.Benefit <= 0 {
			d.Outcome, d.Reason = OutcomeNoBenefit, "requests nothing the source is short of"
			plan.Decisions = append(plan.Decisions, *d)
			continue
		}
		// Rank with the estimate into the emptiest receiver; the chosen
		// target's own estimate is checked against the budget below.
		d.Target = r.emptiest().Name
		r.cost(d)
		ranked = append(ranked, d)
	}
	sort.SliceStable(ranked, func(i, j int) bool {
		a, b := ranked[i], ranked[j]
		if ra, rb := a.Ratio(), b.Ratio(); ra != rb {
			return ra > rb
		}
		return a.Workload.Key() < b.Workload.Key()
	})

	moves := 0
	var chosen, rest []Decision
	for _, d := range ranked {
		src := r.clusters[d.Source]
		d.SourceBefore = r.util(src)
		switch {
		case !r.aboveHigh(src, d.SourceBefore):
			d.Outcome, d.Reason = OutcomeSourceRelieved, "the moves chosen before it bring "+d.Source+" below the high band"
		case cfg.MaxMoves > 0 && moves >= cfg.MaxMoves:
			d.Outcome, d.Reason = OutcomeMaxMoves, fmt.Sprintf("the round already chose %d moves (--rebalance-max-moves-per-round)", cfg.MaxMoves)
		case !r.budgetAllows(d.Source):
			d.Outcome, d.Reason = OutcomeConcurrency, "the concurrency budget (--max-active-migrations, --max-active-migrations-per-cluster) has no room on "+d.Source
		default:
			r.place(d)
		}
		if d.Outcome == OutcomeChosen {
			moves++
			r.active++
			r.activeOn[d.Source]++
			r.activeOn[d.Target]++
			r.add(d.Source, d.Workload.Requests, -1)
			r.add(d.Target, d.Workload.Requests, 1)
			chosen = append(chosen, *d)
		} else {
			rest = append(rest, *d)
		}
	}
	plan.Decisions = append(append(chosen, rest...), plan.Decisions...)
	return plan
}

// benefit is the utilization the move takes off src on each resource above
// the high band, counted down to the band.
func (r *round) benefit(src *Cluster, before [capacity.UsageResources]float64, req Amounts) float64 {
	var b float64
	for i, u := range before {
		alloc := src.Usage.Allocatable[i]
		if alloc <= 0 || u <= r.cfg.Bands.High || req[i] <= 0 {
			continue
		}
		b += min(float64(req[i])/float64(alloc), u-r.cfg.Bands.High)
	}
	return b
}

func (r *round) cost(d *Decision) {
	d.Downtime = r.env.Downtime(d.Workload, d.Target)
	d.Cost = d.Downtime.Seconds()
	if r.cfg.Bandwidth > 0 {
		d.Cost += float64(d.Bytes) / float64(r.cfg.Bandwidth)
	}
}

// emptiest is the receiver with the lowest highest utilization.
func (r *round) emptiest() *Cluster {
	var best *Cluster
	bestU := 0.0
	for _, c := range r.receivers {
		u := maxOf(r.util(c))
		if best == nil || u < bestU || (u == bestU && c.Name < best.Name) {
			best, bestU = c, u
		}
	}
	return best
}

func maxOf(u [capacity.UsageResources]float64) float64 {
	m := u[0]
	for _, v := range u[1:] {
		m = max(m, v)
	}
	return m
}

func (r *round) budgetAllows(cluster string) bool {
	if r.cfg.MaxActive > 0 && r.active >= r.cfg.MaxActive {
		return false
	}
	return r.cfg.MaxActivePerCluster <= 0 || r.activeOn[cluster] < r.cfg.MaxActivePerCluster
}

// place picks the receiver of d: the emptiest one after the move that
// stays below the high band with the workload, is not a pair the trigger
// moved load over the other way within the cooldown, has room in the
// concurrency budget, passes the Filter plugins and keeps the estimate
// within the workload's downtime budget.
func (r *round) place(d *Decision) {
	type option struct {
		c     *Cluster
		after [capacity.UsageResources]float64
	}
	var opts []option
	var why []string
	full := 0
	for _, c := range r.receivers {
		after := r.utilWith(c, d.Workload.Requests, 1)
		if r.aboveHigh(c, after) {
			full++
			why = append(why, c.Name+": would be above the high band ("+FormatUtilization(after)+")")
			continue
		}
		opts = append(opts, option{c, after})
	}
	sort.SliceStable(opts, func(i, j int) bool {
		a, b := maxOf(opts[i].after), maxOf(opts[j].after)
		if a != b {
			return a < b
		}
		return opts[i].c.Name < opts[j].c.Name
	})
	overBudget := false
	for _, o := range opts {
		name := o.c.Name
		switch {
		case r.recentPairs[name+"/"+d.Source]:
			why = append(why, name+": load moved from it to "+d.Source+" within the cooldown")
			continue
		case !r.budgetAllows(name):
			why = append(why, name+": no room in the concurrency budget")
			continue
		}
		if name != d.Target {
			d.Target = name
			r.cost(d)
		}
		if b := d.Workload.Budget; b > 0 && d.Downtime > b {
			overBudget = true
			why = append(why, fmt.Sprintf("%s: estimated downtime %s exceeds the downtime budget %s", name, d.Downtime.Round(time.Millisecond), b))
			continue
		}
		if reason := r.env.Filter(d.Workload, o.c); reason != "" {
			why = append(why, name+": "+reason)
			continue
		}
		d.Outcome = OutcomeChosen
		d.TargetBefore = r.util(o.c)
		d.TargetAfter = o.after
		d.SourceAfter = r.utilWith(r.clusters[d.Source], d.Workload.Requests, -1)
		d.Reason = fmt.Sprintf("%s is above the high band (%s): %s, expected %s; %s: %s, expected %s",
			d.Source, Percent(r.cfg.Bands.High), FormatUtilization(d.SourceBefore), FormatUtilization(d.SourceAfter),
			name, FormatUtilization(d.TargetBefore), FormatUtilization(d.TargetAfter))
		return
	}
	switch {
	case full == len(r.receivers):
		d.Outcome = OutcomeReceiversFull
	case overBudget:
		d.Outcome = OutcomeOverBudget
	default:
		d.Outcome = OutcomeNoTarget
	}
	d.Reason = "no receiver: " + strings.Join(why, "; ")
}
