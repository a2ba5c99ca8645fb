package maintenance

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	clusterv1alpha1 "github.com/karmada-io/karmada/pkg/apis/cluster/v1alpha1"
	policyv1alpha1 "github.com/karmada-io/karmada/pkg/apis/policy/v1alpha1"
	workv1alpha2 "github.com/karmada-io/karmada/pkg/apis/work/v1alpha2"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
	"github.com/livemigrate/livemigrate/descheduler/metrics"
	"github.com/livemigrate/livemigrate/descheduler/placement"
	"github.com/livemigrate/livemigrate/descheduler/policy"
	"github.com/livemigrate/livemigrate/descheduler/trigger"
	"github.com/livemigrate/livemigrate/internal/strutil"
)

// Picker plans a live migration's target (placement.Picker, with the
// maintenance, taint-toleration and cluster-affinity filters).
type Picker interface {
	Plan(ctx context.Context, binding *workv1alpha2.ResourceBinding, source string) (*placement.Plan, error)
}

// Config is the maintenance trigger's configuration.
type Config struct {
	// TaintKeys are the maintenance taint keys (--maintenance-taint-keys).
	TaintKeys []string
	// MaxActive and MaxActivePerCluster are the migration controller's
	// concurrency budget; 0 is unlimited.
	MaxActive, MaxActivePerCluster int
	// RetryAfter is how long after a drain's live migration of a workload
	// failed the drain tries it again (LiveMigrate workloads).
	RetryAfter time.Duration
	// Resync re-evaluates a draining cluster at least this often.
	Resync time.Duration
	// DefaultBandwidth (bytes/s) and DefaultCheckpointEstimate (bytes per
	// replica without a memory request) order the drain by estimated downtime.
	DefaultBandwidth, DefaultCheckpointEstimate int64
}

// Reconciler drains the clusters tainted for maintenance.
type Reconciler struct {
	Client   client.Client
	Recorder events.EventRecorder
	Clock    clock.Clock
	Policies *policy.Resolver
	Picker   Picker
	Config   Config

	mu sync.Mutex
	// created remembers the migrations this process created that the cache
	// may not show yet, by workload binding key, so none is created twice.
	created map[string]time.Time
	// draining is the clusters whose drain is in progress, for the gauge.
	draining map[string]bool
}

// SetupWithManager registers the reconciler: it watches Clusters and the
// LiveMigrations its drains created.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&clusterv1alpha1.Cluster{}).
		Watches(&lmv1alpha1.LiveMigration{}, handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
			if c := o.GetLabels()[policy.LabelDrainCluster]; c != "" {
				return []reconcile.Request{{NamespacedName: types.NamespacedName{Name: c}}}
			}
			return nil
		})).
		Named("maintenance").
		Complete(r)
}

// +kubebuilder:rbac:groups=cluster.karmada.io,resources=clusters,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups=work.karmada.io,resources=resourcebindings,verbs=get;list;watch;update
// +kubebuilder:rbac:groups=livemigrate.io,resources=livemigrations,verbs=get;list;watch;create

// Reconcile drains one cluster when it carries a maintenance taint.
func (r *Reconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	logger := klog.FromContext(ctx).WithValues("cluster", req.Name)
	ctx = klog.NewContext(ctx, logger)
	c := &clusterv1alpha1.Cluster{}
	if err := r.Client.Get(ctx, req.NamespacedName, c); err != nil {
		if apierrors.IsNotFound(err) {
			r.setDraining(req.Name, false, 0)
			return reconcile.Result{}, nil
		}
		return reconcile.Result{}, err
	}
	taint := MaintenanceTaint(c, r.Config.TaintKeys)
	prev, err := ReadReport(c)
	if err != nil {
		logger.Error(err, "Ignoring an unreadable drain report")
		prev = nil
	}
	if taint == nil {
		r.setDraining(c.Name, false, 0)
		if prev != nil {
			r.event(c, nil, corev1.EventTypeNormal, "DrainStopped", "the maintenance taint is gone: no new live migration is started; running ones finish or roll back")
			return reconcile.Result{}, r.writeReport(ctx, c, nil)
		}
		return reconcile.Result{}, nil
	}
	now := r.Clock.Now()
	rep, err := r.drain(ctx, c, taint, prev, now)
	if err != nil {
		return reconcile.Result{}, err
	}
	if prev == nil {
		r.event(c, nil, corev1.EventTypeNormal, "DrainStarted", fmt.Sprintf("taint %s: live-migrating the opted-in workloads", TaintString(taint)))
	}
	if rep.Done && (prev == nil || !prev.Done) {
		r.event(c, nil, corev1.EventTypeNormal, "DrainCompleted", "no opted-in workload is left on the cluster")
	}
	r.setDraining(c.Name, !rep.Done, rep.Remaining)
	if err := r.writeReport(ctx, c, rep); err != nil {
		return reconcile.Result{}, err
	}
	return reconcile.Result{RequeueAfter: r.resync()}, nil
}

func (r *Reconciler) resync() time.Duration {
	if r.Config.Resync > 0 {
		return r.Config.Resync
	}
	return 10 * time.Second
}

// drain evaluates every workload bound to the cluster, starts what the
// budget allows and returns the new report.
func (r *Reconciler) drain(ctx context.Context, c *clusterv1alpha1.Cluster, taint *corev1.Taint, prev *Report, now time.Time) (*Report, error) {
	rep := &Report{Taint: TaintString(taint), Since: metav1.NewTime(now)}
	switch {
	case taint.TimeAdded != nil:
		rep.Since = *taint.TimeAdded
	case prev != nil && prev.Taint == rep.Taint:
		rep.Since = prev.Since
	}
	before := map[string]WorkloadReport{}
	if prev != nil {
		for _, w := range prev.Workloads {
			before[w.Kind+"/"+w.Namespace+"/"+w.Name] = w
		}
	}
	var bindings workv1alpha2.ResourceBindingList
	if err := r.Client.List(ctx, &bindings); err != nil {
		return nil, fmt.Errorf("listing ResourceBindings: %w", err)
	}
	var migrations lmv1alpha1.LiveMigrationList
	if err := r.Client.List(ctx, &migrations); err != nil {
		return nil, fmt.Errorf("listing LiveMigrations: %w", err)
	}
	active, lastOfDrain := indexMigrations(migrations.Items, c.Name, rep.Since.Time)

	seen := map[string]bool{}
	var cands []*Candidate
	for i := range bindings.Items {
		rb := &bindings.Items[i]
		ref := rb.Spec.Resource
		if ref.APIVersion != "apps/v1" || (ref.Kind != "Deployment" && ref.Kind != "StatefulSet") {
			continue
		}
		key := ref.Kind + "/" + rb.Namespace + "/" + ref.Name
		if !rb.Spec.TargetContains(c.Name) {
			// Handed to Karmada by this drain: its eviction task says so
			// until Karmada is done with it (the report read from the
			// cache may be older than the eviction).
			if t := drainEvictionTask(rb, c.Name); t != nil {
				seen[key] = true
				rep.Workloads = append(rep.Workloads, WorkloadReport{Kind: ref.Kind, Namespace: rb.Namespace, Name: ref.Name,
					State: StateEvicting, Reason: strings.TrimPrefix(t.Message, "eviction strategy LiveMigrateIfPossible: ")})
			}
			continue
		}
		seen[key] = true
		w, cand, err := r.evaluate(ctx, c.Name, rb, active, lastOfDrain, now)
		if err != nil {
			return nil, err
		}
		if cand != nil {
			cands = append(cands, cand)
			continue
		}
		if w == nil {
			continue
		}
		r.transition(ctx, c, rb, before[key], w)
		rep.Workloads = append(rep.Workloads, *w)
	}

	Order(cands)
	free := FreeSlots(migrations.Items, c.Name, r.Config.MaxActive, r.Config.MaxActivePerCluster)
	for _, cand := range cands {
		ref := cand.Binding.Spec.Resource
		w := WorkloadReport{Kind: ref.Kind, Namespace: cand.Binding.Namespace, Name: ref.Name, Priority: cand.Policy.DrainPriority}
		w.Warning = evictionWindowWarning(taint, cand.Binding)
		if free == 0 {
			w.State, w.Reason = StateWaiting, "waiting for the concurrency budget (--max-active-migrations, --max-active-migrations-per-cluster)"
		} else {
			lm, err := r.start(ctx, c, taint, cand)
			if err != nil {
				return nil, err
			}
			if free > 0 {
				free--
			}
			w.State, w.LiveMigration, w.Reason = StateMigrating, lm.Name, "to "+cand.Target
		}
		r.transition(ctx, c, cand.Binding, before[w.Kind+"/"+w.Namespace+"/"+w.Name], &w)
		rep.Workloads = append(rep.Workloads, w)
	}

	// Workloads no longer bound to the cluster: being moved by this drain
	// (from the rebinding on, the binding names the target only), moved by
	// it, or handed to Karmada.
	for _, lm := range lastOfDrain {
		key := lm.Spec.WorkloadRef.Kind + "/" + lm.Namespace + "/" + lm.Spec.WorkloadRef.Name
		if seen[key] {
			continue
		}
		w := WorkloadReport{Kind: lm.Spec.WorkloadRef.Kind, Namespace: lm.Namespace, Name: lm.Spec.WorkloadRef.Name, LiveMigration: lm.Name}
		switch {
		case lm.Status.Phase == lmv1alpha1.PhaseSucceeded:
			w.State, w.Reason = StateMoved, "to "+lm.Status.TargetCluster
			if lm.Status.Downtime != nil {
				w.Reason += ", downtime " + lm.Status.Downtime.Duration.String()
			}
		case !lm.Status.Phase.IsTerminal():
			w.State, w.Reason = StateMigrating, string(lm.Status.Phase)+" to "+lm.Status.TargetCluster
		default:
			continue
		}
		seen[key] = true
		rep.Workloads = append(rep.Workloads, w)
	}
	for key, w := range before {
		if !seen[key] && w.State == StateEvicting {
			rep.Workloads = append(rep.Workloads, w)
		}
	}
	sort.SliceStable(rep.Workloads, func(i, j int) bool {
		a, b := rep.Workloads[i], rep.Workloads[j]
		return a.Namespace+"/"+a.Name+"/"+a.Kind < b.Namespace+"/"+b.Name+"/"+b.Kind
	})
	for _, w := range rep.Workloads {
		if w.State.Pending() {
			rep.Remaining++
		}
	}
	rep.Done = rep.Remaining == 0
	return rep, nil
}

// indexMigrations returns the active migration of each workload (by
// Kind/namespace/name) and the latest migration the drain of cluster
// created since the drain started.
func indexMigrations(items []lmv1alpha1.LiveMigration, cluster string, since time.Time) (active, lastOfDrain map[string]*lmv1alpha1.LiveMigration) {
	active, lastOfDrain = map[string]*lmv1alpha1.LiveMigration{}, map[string]*lmv1alpha1.LiveMigration{}
	for i := range items {
		lm := &items[i]
		key := lm.Spec.WorkloadRef.Kind + "/" + lm.Namespace + "/" + lm.Spec.WorkloadRef.Name
		if !lm.Status.Phase.IsTerminal() {
			active[key] = lm
		}
		created := lm.CreationTimestamp.Time
		if lm.Labels[policy.LabelDrainCluster] != cluster || (!created.IsZero() && created.Before(since.Truncate(time.Second))) {
			continue
		}
		if cur, ok := lastOfDrain[key]; !ok || cur.CreationTimestamp.Before(&lm.CreationTimestamp) {
			lastOfDrain[key] = lm
		}
	}
	return active, lastOfDrain
}

// evaluate classifies one workload bound to the draining cluster: nil when
// it is not opted in (left to Karmada, not reported), a candidate when a
// live migration can start, else its report.
func (r *Reconciler) evaluate(ctx context.Context, cluster string, rb *workv1alpha2.ResourceBinding,
	active, lastOfDrain map[string]*lmv1alpha1.LiveMigration, now time.Time) (*WorkloadReport, *Candidate, error) {
	ref := rb.Spec.Resource
	key := ref.Kind + "/" + rb.Namespace + "/" + ref.Name
	pol, err := r.Policies.ForBinding(ctx, rb)
	if err != nil {
		return nil, nil, err
	}
	w := &WorkloadReport{Kind: ref.Kind, Namespace: rb.Namespace, Name: ref.Name, Priority: pol.DrainPriority}
	switch {
	case len(pol.Invalid) > 0:
		w.State, w.Reason = StateInvalidPolicy, "not opted in: "+pol.InvalidMessage()
		return w, nil, nil
	case !pol.OptedIn():
		return nil, nil, nil
	case len(rb.Spec.Clusters) > 1:
		w.State = StateNotHandled
		w.Reason = fmt.Sprintf("placed on %d clusters (%s): a live migration moves a workload placed on one cluster; move its part on %s by hand or change its placement",
			len(rb.Spec.Clusters), clusterNames(rb), cluster)
		return w, nil, nil
	}
	if lm := active[key]; lm != nil {
		phase := lm.Status.Phase
		if phase == "" {
			phase = lmv1alpha1.PhasePending
		}
		w.State, w.LiveMigration, w.Reason = StateMigrating, lm.Name, string(phase)
		if t := lm.Status.TargetCluster; t != "" {
			w.Reason += " to " + t
		}
		return w, nil, nil
	}
	if r.recentlyCreated(rb, now) {
		w.State, w.Reason = StateMigrating, "LiveMigration created"
		return w, nil, nil
	}
	if lm := lastOfDrain[key]; lm != nil && lm.Status.Phase == lmv1alpha1.PhaseFailed {
		why := "its live migration " + lm.Name + " rolled back"
		if f := lm.Status.Failure; f != nil {
			why += fmt.Sprintf(" (%s: %s)", f.Reason, f.Message)
		}
		if Fallback(pol) == OutcomeEvict {
			return r.evict(ctx, rb, cluster, w, why)
		}
		done := lm.CreationTimestamp.Time
		if lm.Status.CompletionTime != nil {
			done = lm.Status.CompletionTime.Time
		}
		if now.Sub(done) < r.retryAfter() {
			w.State, w.LiveMigration, w.Reason = StateBlocked, lm.Name, why+fmt.Sprintf("; eviction strategy LiveMigrate never evicts; retried after %s", r.retryAfter())
			return w, nil, nil
		}
	}
	plan, err := r.Picker.Plan(ctx, rb, cluster)
	if err != nil {
		return nil, nil, err
	}
	if plan.Target == "" {
		why := "no feasible target: " + whyNot(plan)
		if Fallback(pol) == OutcomeEvict {
			return r.evict(ctx, rb, cluster, w, why)
		}
		w.State, w.Reason = StateBlocked, why+"; eviction strategy LiveMigrate never evicts"
		return w, nil, nil
	}
	return nil, &Candidate{Binding: rb, Policy: pol, Target: plan.Target,
		Estimate: EstimateDowntime(rb, r.Config.DefaultCheckpointEstimate, r.Config.DefaultBandwidth)}, nil
}

func (r *Reconciler) retryAfter() time.Duration {
	if r.Config.RetryAfter > 0 {
		return r.Config.RetryAfter
	}
	return 5 * time.Minute
}

func whyNot(plan *placement.Plan) string {
	var why []string
	for _, c := range plan.Candidates {
		why = append(why, c.Cluster+": "+strings.Join(c.Reasons, "; "))
	}
	if len(why) == 0 {
		return "no other member cluster"
	}
	return strings.Join(why, " | ")
}

func clusterNames(rb *workv1alpha2.ResourceBinding) string {
	var names []string
	for _, c := range rb.Spec.Clusters {
		names = append(names, c.Name)
	}
	return strings.Join(names, ", ")
}

// EvictionProducer is the producer of the graceful eviction tasks a drain
// hands to Karmada.
const EvictionProducer = "livemigrate-maintenance"

// evict hands the workload to Karmada's graceful eviction: the cluster is
// removed from the binding with an eviction task, exactly as Karmada's
// taint manager does, so karmada-scheduler places the workload elsewhere
// and Karmada re-creates it there (evict and re-create).
func (r *Reconciler) evict(ctx context.Context, rb *workv1alpha2.ResourceBinding, cluster string, w *WorkloadReport, why string) (*WorkloadReport, *Candidate, error) {
	purge := policyv1alpha1.PurgeModeGracefully
	if f := rb.Spec.Failover; f != nil && f.Cluster != nil && f.Cluster.PurgeMode != "" {
		purge = f.Cluster.PurgeMode
	}
	upd := rb.DeepCopy()
	upd.Spec.GracefulEvictCluster(cluster, workv1alpha2.NewTaskOptions(
		workv1alpha2.WithPurgeMode(purge),
		workv1alpha2.WithProducer(EvictionProducer),
		workv1alpha2.WithReason("LiveMigrationImpossible"),
		workv1alpha2.WithMessage(strutil.Truncate("eviction strategy LiveMigrateIfPossible: "+why, 1024))))
	if err := r.Client.Update(ctx, upd); err != nil {
		return nil, nil, fmt.Errorf("handing ResourceBinding %s/%s to Karmada's graceful eviction: %w", rb.Namespace, rb.Name, err)
	}
	klog.FromContext(ctx).Info("Handed a workload to Karmada's graceful eviction", "binding", klog.KObj(rb), "reason", why)
	w.State, w.Reason = StateEvicting, why
	return w, nil, nil
}

// start creates the LiveMigration of a candidate.
func (r *Reconciler) start(ctx context.Context, c *clusterv1alpha1.Cluster, taint *corev1.Taint, cand *Candidate) (*lmv1alpha1.LiveMigration, error) {
	rb, ref := cand.Binding, cand.Binding.Spec.Resource
	lm := trigger.NewLiveMigration(rb, cand.Target, policy.TriggerMaintenance, "drain", map[string]string{policy.LabelDrainCluster: c.Name},
		fmt.Sprintf("cluster %s is drained for maintenance (taint %s); eviction strategy %s, drain priority %d",
			c.Name, TaintString(taint), cand.Policy.Strategy, cand.Policy.DrainPriority), cand.Policy)
	if err := r.Client.Create(ctx, lm); err != nil {
		return nil, fmt.Errorf("creating the LiveMigration of %s %s/%s: %w", ref.Kind, rb.Namespace, ref.Name, err)
	}
	r.mu.Lock()
	if r.created == nil {
		r.created = map[string]time.Time{}
	}
	r.created[rb.Namespace+"/"+rb.Name] = r.Clock.Now()
	r.mu.Unlock()
	klog.FromContext(ctx).Info("Started a maintenance live migration", "liveMigration", klog.KObj(lm), "target", cand.Target)
	return lm, nil
}

// recentlyCreated reports whether this process created a migration of the
// workload that the cache may not show yet.
func (r *Reconciler) recentlyCreated(rb *workv1alpha2.ResourceBinding, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	at, ok := r.created[rb.Namespace+"/"+rb.Name]
	if ok && now.Sub(at) > 30*time.Second {
		delete(r.created, rb.Namespace+"/"+rb.Name)
		return false
	}
	return ok
}

// transition emits the events and counts the decisions of a workload whose
// state changed since the previous report.
func (r *Reconciler) transition(ctx context.Context, c *clusterv1alpha1.Cluster, rb *workv1alpha2.ResourceBinding, before WorkloadReport, w *WorkloadReport) {
	tmpl := trigger.TemplateOf(rb)
	if w.Warning != "" && w.Warning != before.Warning {
		r.event(tmpl, c, corev1.EventTypeWarning, "MaintenanceEvictionRace", w.Warning)
	}
	if before.State == w.State && before.LiveMigration == w.LiveMigration {
		return
	}
	trigger := string(policy.TriggerMaintenance)
	switch w.State {
	case StateMigrating:
		if before.LiveMigration == w.LiveMigration {
			return
		}
		metrics.TriggerDecisions.WithLabelValues(trigger, string(metrics.DecisionMigrationCreated)).Inc()
		r.event(tmpl, c, corev1.EventTypeNormal, "MaintenanceMigration", fmt.Sprintf("cluster %s is drained for maintenance: LiveMigration %s %s", c.Name, w.LiveMigration, w.Reason))
	case StateEvicting:
		metrics.TriggerDecisions.WithLabelValues(trigger, string(metrics.DecisionFallbackEviction)).Inc()
		r.event(tmpl, c, corev1.EventTypeWarning, "MaintenanceEviction", fmt.Sprintf("cluster %s is drained for maintenance and the workload cannot move live: handed to Karmada's graceful eviction (evict and re-create): %s", c.Name, w.Reason))
		r.event(c, tmpl, corev1.EventTypeWarning, "MaintenanceEviction", fmt.Sprintf("%s %s/%s handed to Karmada's graceful eviction: %s", w.Kind, w.Namespace, w.Name, w.Reason))
	case StateBlocked:
		metrics.TriggerDecisions.WithLabelValues(trigger, string(metrics.DecisionBlocked)).Inc()
		r.event(tmpl, c, corev1.EventTypeWarning, "MaintenanceBlocked", fmt.Sprintf("cluster %s is drained for maintenance but the workload cannot move live and stays: %s", c.Name, w.Reason))
		r.event(c, tmpl, corev1.EventTypeWarning, "DrainBlocked", fmt.Sprintf("%s %s/%s blocks the drain: %s", w.Kind, w.Namespace, w.Name, w.Reason))
	case StateNotHandled:
		metrics.TriggerDecisions.WithLabelValues(trigger, string(metrics.DecisionNotHandled)).Inc()
		r.event(tmpl, c, corev1.EventTypeWarning, "MaintenanceNotHandled", fmt.Sprintf("cluster %s is drained for maintenance but the workload is not moved: %s", c.Name, w.Reason))
		r.event(c, tmpl, corev1.EventTypeWarning, "DrainBlocked", fmt.Sprintf("%s %s/%s is not handled: %s", w.Kind, w.Namespace, w.Name, w.Reason))
	case StateInvalidPolicy:
		metrics.TriggerDecisions.WithLabelValues(trigger, string(metrics.DecisionInvalidPolicy)).Inc()
		r.event(tmpl, c, corev1.EventTypeWarning, "InvalidPolicy", fmt.Sprintf("malformed livemigrate.io/ annotations: the workload is treated as not opted in and left to Karmada: %s", w.Reason))
	}
	klog.FromContext(ctx).V(2).Info("Drain state changed", "workload", klog.KRef(w.Namespace, w.Name), "kind", w.Kind, "from", before.State, "to", w.State)
}

func (r *Reconciler) event(regarding client.Object, related client.Object, eventType, reason, note string) {
	if r.Recorder == nil {
		return
	}
	if related == nil {
		r.Recorder.Eventf(regarding, nil, eventType, reason, "Drain", "%s", note)
		return
	}
	r.Recorder.Eventf(regarding, related, eventType, reason, "Drain", "%s", note)
}

// writeReport patches the cluster's report annotation when it changed (nil
// removes it).
func (r *Reconciler) writeReport(ctx context.Context, c *clusterv1alpha1.Cluster, rep *Report) error {
	var value any
	if rep != nil {
		b, err := json.Marshal(rep)
		if err != nil {
			return err
		}
		if string(b) == c.Annotations[ReportAnnotation] {
			return nil
		}
		value = string(b)
	} else if _, ok := c.Annotations[ReportAnnotation]; !ok {
		return nil
	}
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]any{ReportAnnotation: value}}})
	if err != nil {
		return err
	}
	if err := r.Client.Patch(ctx, c, client.RawPatch(types.MergePatchType, patch)); err != nil {
		return fmt.Errorf("writing the drain report of cluster %s: %w", c.Name, err)
	}
	return nil
}

func (r *Reconciler) setDraining(cluster string, draining bool, remaining int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.draining == nil {
		r.draining = map[string]bool{}
	}
	if draining {
		r.draining[cluster] = true
		metrics.DrainRemaining.WithLabelValues(cluster).Set(float64(remaining))
	} else {
		delete(r.draining, cluster)
		metrics.DrainRemaining.DeleteLabelValues(cluster)
	}
	metrics.DrainsInProgress.Set(float64(len(r.draining)))
}

// evictionWindowWarning warns when the maintenance taint is NoExecute and
// the workload's placement does not tolerate it: with Karmada's taint
// eviction on, Karmada evicts and re-creates it at once, before a live
// migration can move it.
func evictionWindowWarning(taint *corev1.Taint, rb *workv1alpha2.ResourceBinding) string {
	if taint.Effect != corev1.TaintEffectNoExecute {
		return ""
	}
	if p := rb.Spec.Placement; p != nil {
		for i := range p.ClusterTolerations {
			if p.ClusterTolerations[i].ToleratesTaint(klog.Background(), taint, false) {
				return ""
			}
		}
	}
	return fmt.Sprintf("the maintenance taint %s is NoExecute and the workload's placement does not tolerate it: with Karmada's taint eviction on "+
		"(feature gate Failover, --enable-no-execute-taint-eviction), Karmada evicts and re-creates it before it can move live; "+
		"give its PropagationPolicy a clusterToleration for %s with a tolerationSeconds long enough for the drain", TaintString(taint), taint.Key)
}

// drainEvictionTask returns the eviction task a drain of cluster gave the
// binding, if Karmada has not finished it yet.
func drainEvictionTask(rb *workv1alpha2.ResourceBinding, cluster string) *workv1alpha2.GracefulEvictionTask {
	for i := range rb.Spec.GracefulEvictionTasks {
		if t := &rb.Spec.GracefulEvictionTasks[i]; t.FromCluster == cluster && t.Producer == EvictionProducer {
			return t
		}
	}
	return nil
}
