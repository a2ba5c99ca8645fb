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

// Filter rejects a cluster whose known, fresh RTT to any target exceeds the
// workload's max-rtt. Unknown or stale latency never filters, and neither
// does a cluster the binding already runs on: a latency change alone must
// not make Karmada move a stateful workload (moving it is the
// descheduler's job, as a live migration).
func (p *Latency) Filter(ctx context.Context, spec *workv1alpha2.ResourceBindingSpec,
	_ *workv1alpha2.ResourceBindingStatus, cluster *clusterv1alpha1.Cluster) *framework.Result {
	req := p.resolver.requirement(ctx, spec)
	if req == nil || req.MaxRTT == 0 || runsOn(spec, cluster.Name) {
		return nil
	}
	t, d := p.store.Exceeding(cluster.Name, req.Targets, req.MaxRTT, p.clock.Now().Add(-p.maxAge))
	if t == nil {
		return nil
	}
	return framework.NewResult(framework.Unschedulable, fmt.Sprintf(
		"cluster(s) too far: measured RTT to %s:%s is %s, above %s %s",
		t.Kind, t.Name, d.Round(100*time.Microsecond), AnnotationMaxRTT, req.MaxRTT))
}

// Score returns the weighted mean RTT (microseconds) over the targets with a
// fresh measurement, or -1 when none has one; NormalizeScore turns it into 0–100.
func (p *Latency) Score(ctx context.Context, spec *workv1alpha2.ResourceBindingSpec,
	cluster *clusterv1alpha1.Cluster) (int64, *framework.Result) {
	req := p.resolver.requirement(ctx, spec)
	if req == nil {
		return unknownScore, nil
	}
	d, ok := p.store.WeightedRTT(cluster.Name, req.Targets, p.clock.Now().Add(-p.maxAge))
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

// runsOn reports whether the binding is already scheduled to cluster name.
func runsOn(spec *workv1alpha2.ResourceBindingSpec, name string) bool {
	for i := range spec.Clusters {
		if spec.Clusters[i].Name == name {
			return true
		}
	}
	return false
}
