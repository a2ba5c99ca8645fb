package latency

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/clock"

	clusterv1alpha1 "github.com/karmada-io/karmada/pkg/apis/cluster/v1alpha1"
	workv1alpha2 "github.com/karmada-io/karmada/pkg/apis/work/v1alpha2"
	"github.com/karmada-io/karmada/pkg/scheduler/framework"

	"github.com/livemigrate/livemigrate/plugins/config"
	"github.com/livemigrate/livemigrate/plugins/internal/binding"
)

// Name is the plugin's name, as given to Karmada's --plugins flag.
const Name = "Latency"

var (
	_ framework.FilterPlugin    = &Latency{}
	_ framework.ScorePlugin     = &Latency{}
	_ framework.ScoreExtensions = &Latency{}
)

// EventRecorder is the part of client-go's record.EventRecorder the plugin uses.
type EventRecorder interface {
	Event(object runtime.Object, eventtype, reason, message string)
}

// Handle is what the plugin reads from: built in cmd/ from informers.
type Handle struct {
	// Store holds the ClusterLatency measurements. Required.
	Store *Store
	// Templates and Policies are informer-backed getters; nil means no
	// workload ever has a latency requirement.
	Templates TemplateGetter
	Policies  PolicyGetter
	// Recorder receives the InvalidLatencyAnnotation Events. Optional.
	Recorder EventRecorder
	// Generation is bumped on every template or policy change so cached
	// requirements are looked up again. Optional.
	Generation *atomic.Uint64
	// Clock defaults to the real clock.
	Clock clock.PassiveClock
}

// Latency filters and scores clusters by measured RTT.
type Latency struct {
	maxAge   time.Duration
	store    *Store
	clock    clock.PassiveClock
	resolver *resolver

	last atomic.Pointer[cycle]
}

// unknownScore marks, between Score and NormalizeScore, a cluster with no
// usable measurement (or a binding with no requirement).
const unknownScore int64 = -1

// New builds the plugin, validating its args again.
func New(args *config.LatencyArgs, h Handle) (*Latency, error) {
	if args == nil {
		args = &config.LatencyArgs{}
	}
	a := *args
	config.SetDefaultsLatencyArgs(&a)
	if errs := config.ValidateLatencyArgs(nil, &a); len(errs) > 0 {
		return nil, fmt.Errorf("invalid %s args: %w", Name, errs.ToAggregate())
	}
	if h.Store == nil {
		return nil, fmt.Errorf("%s: a latency store is required", Name)
	}
	if h.Clock == nil {
		h.Clock = clock.RealClock{}
	}
	return &Latency{
		maxAge: a.MaxAge.Duration,
		store:  h.Store,
		clock:  h.Clock,
		resolver: &resolver{
			templates: h.Templates, policies: h.Policies, recorder: h.Recorder, generation: h.Generation,
			parsed: map[string]*Requirement{}, emitted: map[string]struct{}{},
		},
	}, nil
}

// Name returns the plugin's name.
func (p *Latency) Name() string { return Name }

// cycle is what Filter and Score need for one binding in one scheduling
// cycle, worked out on its first call: the requirement, the freshness limit,
// the targets resolved to the store's slots and the reasons' fixed parts.
// Karmada deep-copies a binding for every scheduling attempt, so a new spec
// pointer starts a new cycle; measurements are judged fresh as of the
// cycle's start.
type cycle struct {
	spec       *workv1alpha2.ResourceBindingSpec
	uid, rv    string
	generation uint64

	req       *Requirement // nil: no latency requirement
	notBefore int64        // unix nanoseconds
	targets   []slotTarget
	// tooFar[i] + measured RTT + aboveMax is the reason for targets[i].
	tooFar   []string
	aboveMax string
}

// cycle returns spec's cycle state; the last one is kept, so every call of
// a scheduling cycle after the first is a few comparisons.
func (p *Latency) cycle(ctx context.Context, spec *workv1alpha2.ResourceBindingSpec) *cycle {
	g := p.resolver.gen()
	if c := p.last.Load(); c != nil && c.spec == spec && c.generation == g &&
		c.uid == string(spec.Resource.UID) && c.rv == spec.Resource.ResourceVersion {
		return c
	}
	c := &cycle{spec: spec, uid: string(spec.Resource.UID), rv: spec.Resource.ResourceVersion, generation: g}
	c.req = p.resolver.requirement(ctx, spec)
	if c.req != nil {
		c.notBefore = nanos(p.clock.Now().Add(-p.maxAge))
		c.targets = p.store.resolve(c.req.Targets)
		if c.req.MaxRTT > 0 {
			c.tooFar = make([]string, len(c.targets))
			for i, t := range c.req.Targets {
				c.tooFar[i] = "cluster(s) too far: measured RTT to " + t.Kind.String() + ":" + t.Name + " is "
			}
			c.aboveMax = ", above " + AnnotationMaxRTT + " " + c.req.MaxRTT.String()
		}
	}
	p.last.Store(c)
	return c
}

// Filter rejects a cluster whose known, fresh RTT to any target exceeds the
// workload's max-rtt. Unknown or stale latency never filters, and neither
// does a cluster the binding already runs on: a latency change alone must
// not make Karmada move a stateful workload (moving it is the
// descheduler's job, as a live migration).
func (p *Latency) Filter(ctx context.Context, spec *workv1alpha2.ResourceBindingSpec,
	_ *workv1alpha2.ResourceBindingStatus, cluster *clusterv1alpha1.Cluster) *framework.Result {
	c := p.cycle(ctx, spec)
	if c.req == nil || c.req.MaxRTT == 0 || binding.RunsOn(spec, cluster.Name) {
		return nil
	}
	i, d := p.store.exceeding(cluster.Name, c.targets, c.req.MaxRTT, c.notBefore)
	if i < 0 {
		return nil
	}
	return framework.NewResult(framework.Unschedulable, c.tooFar[i]+d.Round(100*time.Microsecond).String()+c.aboveMax)
}

// Score returns the weighted mean RTT (microseconds) over the targets with a
// fresh measurement, or -1 when none has one; NormalizeScore turns it into 0–100.
func (p *Latency) Score(ctx context.Context, spec *workv1alpha2.ResourceBindingSpec,
	cluster *clusterv1alpha1.Cluster) (int64, *framework.Result) {
	c := p.cycle(ctx, spec)
	if c.req == nil {
		return unknownScore, nil
	}
	d, ok := p.store.weightedRTT(cluster.Name, c.targets, c.notBefore)
	if !ok {
		return unknownScore, nil
	}
	return d.Microseconds(), nil
}

// ScoreExtensions returns the plugin itself: it normalizes its scores.
func (p *Latency) ScoreExtensions() framework.ScoreExtensions { return p }

// smoothingMicros keeps near-zero RTTs (a cluster from itself) from making
// every other cluster score 0.
const smoothingMicros = 1000

// NormalizeScore maps weighted RTTs to 0–100: the lowest gets 100, others
// 100·(min+1ms)/(rtt+1ms), so scores stay proportional to how much farther a
// cluster is; a cluster without measurements gets 0.
func (p *Latency) NormalizeScore(_ context.Context, scores framework.ClusterScoreList) *framework.Result {
	lowest := int64(-1)
	for i := range scores {
		if s := scores[i].Score; s >= 0 && (lowest < 0 || s < lowest) {
			lowest = s
		}
	}
	for i := range scores {
		s := scores[i].Score
		if s < 0 || lowest < 0 {
			scores[i].Score = framework.MinClusterScore
			continue
		}
		scores[i].Score = framework.MaxClusterScore * (lowest + smoothingMicros) / (s + smoothingMicros)
	}
	return nil
}
