package rebalance

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/livemigrate/livemigrate/descheduler/metrics"
	"github.com/livemigrate/livemigrate/descheduler/policy"
	"github.com/livemigrate/livemigrate/descheduler/trigger"
	"github.com/livemigrate/livemigrate/internal/strutil"
	"github.com/livemigrate/livemigrate/plugins/capacity"
)

// Reconciler runs a load rebalancing round every Interval (a
// manager.Runnable, on the leader only).
type Reconciler struct {
	Planner  *Planner
	Client   client.Client
	Recorder events.EventRecorder
	Clock    clock.WithTicker
	Interval time.Duration
	// DryRun records the decisions and moves nothing.
	DryRun bool

	mu sync.Mutex
	// created remembers, by workload, the migrations this process created
	// that the cache may not show yet.
	created map[string]time.Time
	// clusters are those with utilization series, to delete the series of
	// a cluster that is gone.
	clusters map[string]bool
}

// +kubebuilder:rbac:groups=livemigrate.io,resources=livemigrations,verbs=get;list;watch;create
// +kubebuilder:rbac:groups=apps,resources=statefulsets;deployments,verbs=get;list;watch

// NeedLeaderElection: only the leader rebalances.
func (r *Reconciler) NeedLeaderElection() bool { return true }

// Start runs a round every Interval until ctx ends; the first one after one
// Interval.
func (r *Reconciler) Start(ctx context.Context) error {
	logger := klog.FromContext(ctx).WithValues("trigger", policy.TriggerRebalance)
	ctx = klog.NewContext(ctx, logger)
	logger.Info("Load rebalancing rounds start", "interval", r.Interval, "dryRun", r.DryRun,
		"high", Percent(r.Planner.Config.Bands.High), "low", Percent(r.Planner.Config.Bands.Low))
	t := r.Clock.NewTicker(r.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C():
			if _, err := r.Round(ctx); err != nil {
				logger.Error(err, "Load rebalancing round failed")
			}
		}
	}
}

func (r *Reconciler) mode() string {
	if r.DryRun {
		return "DryRun"
	}
	return "Auto"
}

// Round decides one round and, unless DryRun, creates the LiveMigrations it
// chose.
func (r *Reconciler) Round(ctx context.Context) (*Plan, error) {
	logger := klog.FromContext(ctx)
	now := r.Clock.Now()
	_, plan, err := r.Planner.Plan(ctx, now, r.recent(now))
	if err != nil {
		metrics.RebalanceRounds.WithLabelValues(r.mode(), metrics.RoundError).Inc()
		return nil, err
	}
	r.observe(plan)
	if plan.Idle != "" {
		metrics.RebalanceRounds.WithLabelValues(r.mode(), metrics.RoundIdle).Inc()
		logger.V(2).Info("Load rebalancing round: nothing to do", "reason", plan.Idle)
		return plan, nil
	}
	metrics.RebalanceRounds.WithLabelValues(r.mode(), metrics.RoundDecided).Inc()
	var errs []error
	chosen := plan.Chosen()
	for _, d := range plan.Decisions {
		metrics.RebalanceDecisions.WithLabelValues(r.mode(), string(d.Outcome)).Inc()
	}
	for i := range chosen {
		if err := r.act(ctx, &chosen[i]); err != nil {
			errs = append(errs, err)
		}
	}
	logger.Info("Load rebalancing round", "dryRun", r.DryRun, "candidates", len(plan.Decisions), "chosen", len(chosen))
	return plan, errors.Join(errs...)
}

// Annotation renders a chosen move for the LiveMigration's reason and events.
func (d *Decision) Annotation() string {
	return fmt.Sprintf("load rebalancing: %s; benefit %.1f points of %s's utilization for an estimated downtime of %s and %s to send",
		d.Reason, d.Benefit*100, d.Source, d.Downtime.Round(time.Millisecond), resource.NewQuantity(d.Bytes, resource.BinarySI))
}

func (r *Reconciler) act(ctx context.Context, d *Decision) error {
	w := d.Workload
	tmpl := trigger.TemplateOf(w.Binding)
	if r.DryRun {
		metrics.TriggerDecisions.WithLabelValues(string(policy.TriggerRebalance), string(metrics.DecisionDryRun)).Inc()
		r.event(tmpl, corev1.EventTypeNormal, "RebalancePlanned", "--rebalance-mode=DryRun, not moved: would live-migrate to "+d.Target+": "+d.Annotation())
		return nil
	}
	lm := trigger.NewLiveMigration(w.Binding, d.Target, policy.TriggerRebalance, "rebalance", nil, strutil.Truncate(d.Annotation(), 1024), w.Policy)
	if err := r.Client.Create(ctx, lm); err != nil {
		return fmt.Errorf("creating the LiveMigration of %s %s/%s: %w", w.Kind, w.Namespace, w.Name, err)
	}
	r.mu.Lock()
	if r.created == nil {
		r.created = map[string]time.Time{}
	}
	r.created[w.Key()] = r.Clock.Now()
	r.mu.Unlock()
	metrics.TriggerDecisions.WithLabelValues(string(policy.TriggerRebalance), string(metrics.DecisionMigrationCreated)).Inc()
	r.event(tmpl, corev1.EventTypeNormal, "RebalanceMigration", "LiveMigration "+lm.Name+" to "+d.Target+": "+d.Annotation())
	klog.FromContext(ctx).Info("Started a rebalancing live migration", "liveMigration", klog.KObj(lm), "source", d.Source, "target", d.Target,
		"benefit", d.Benefit, "estimatedDowntime", d.Downtime)
	return nil
}

// recent returns the workloads whose migration this process created in the
// last minute (the cache shows a new object well before).
func (r *Reconciler) recent(now time.Time) map[string]bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]bool{}
	for k, at := range r.created {
		if now.Sub(at) > time.Minute {
			delete(r.created, k)
			continue
		}
		out[k] = true
	}
	return out
}

// observe sets the utilization gauges of the clusters the round saw.
func (r *Reconciler) observe(plan *Plan) {
	r.mu.Lock()
	defer r.mu.Unlock()
	seen := map[string]bool{}
	for _, c := range plan.Clusters {
		seen[c.Name] = true
		for i, v := range c.Utilization {
			metrics.ClusterUtilization.WithLabelValues(c.Name, string(capacity.UsageNames[i])).Set(v)
		}
	}
	for c := range r.clusters {
		if !seen[c] {
			for _, name := range capacity.UsageNames {
				metrics.ClusterUtilization.DeleteLabelValues(c, string(name))
			}
		}
	}
	r.clusters = seen
}

func (r *Reconciler) event(regarding client.Object, eventType, reason, note string) {
	if r.Recorder == nil {
		return
	}
	r.Recorder.Eventf(regarding, nil, eventType, reason, "Rebalance", "%s", strutil.Truncate(note, 1024))
}
