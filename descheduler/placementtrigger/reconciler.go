package placementtrigger

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	clusterv1alpha1 "github.com/karmada-io/karmada/pkg/apis/cluster/v1alpha1"
	policyv1alpha1 "github.com/karmada-io/karmada/pkg/apis/policy/v1alpha1"
	workv1alpha2 "github.com/karmada-io/karmada/pkg/apis/work/v1alpha2"
	"github.com/karmada-io/karmada/pkg/scheduler/framework/plugins/clusteraffinity"
	"github.com/karmada-io/karmada/pkg/util"
	"github.com/karmada-io/karmada/pkg/util/names"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
	"github.com/livemigrate/livemigrate/descheduler/maintenance"
	"github.com/livemigrate/livemigrate/descheduler/metrics"
	"github.com/livemigrate/livemigrate/descheduler/policy"
)

// EvictionProducer is the producer of the graceful eviction task with
// which the trigger hands a LiveMigrateIfPossible workload that cannot
// move live to Karmada.
const EvictionProducer = "livemigrate-placement"

// Config is the placement trigger's configuration.
type Config struct {
	// MaxActive and MaxActivePerCluster are the migration controller's
	// concurrency budget; 0 is unlimited.
	MaxActive, MaxActivePerCluster int
	// RetryAfter is how long after a failed placement migration of a
	// LiveMigrate workload the trigger tries again.
	RetryAfter time.Duration
	// Resync re-evaluates a binding at least this often while its move is
	// pending.
	Resync time.Duration
}

// Reconciler is the placement trigger: it reconciles ResourceBindings.
type Reconciler struct {
	Client   client.Client
	Recorder events.EventRecorder
	Clock    clock.Clock
	Policies *policy.Resolver
	Config   Config

	mu sync.Mutex
	// created remembers the migrations this process created that the cache
	// may not show yet, by binding, so none is created twice.
	created map[string]time.Time
	// said remembers the last event note per binding and reason, so a
	// state is reported once, not on every resync.
	said map[string]string
}

// SetupWithManager registers the reconciler: it watches ResourceBindings,
// Clusters (a label change can take a workload out of its cluster
// affinity), PropagationPolicies (their annotations opt workloads in) and
// the LiveMigrations of workloads.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&workv1alpha2.ResourceBinding{}).
		Watches(&clusterv1alpha1.Cluster{}, handler.EnqueueRequestsFromMapFunc(r.bindingsOnCluster)).
		Watches(&policyv1alpha1.PropagationPolicy{}, handler.EnqueueRequestsFromMapFunc(r.bindingsOfPolicy)).
		Watches(&lmv1alpha1.LiveMigration{}, handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
			lm := o.(*lmv1alpha1.LiveMigration)
			return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: lm.Namespace,
				Name: names.GenerateBindingName(lm.Spec.WorkloadRef.Kind, lm.Spec.WorkloadRef.Name)}}}
		})).
		// Opting a template in or out changes nothing in its binding: watch
		// the templates' metadata so that the label follows at once.
		Watches(templateMetadata("apps/v1", "Deployment"), handler.EnqueueRequestsFromMapFunc(bindingOfTemplate("Deployment")), builder.OnlyMetadata).
		Watches(templateMetadata("apps/v1", "StatefulSet"), handler.EnqueueRequestsFromMapFunc(bindingOfTemplate("StatefulSet")), builder.OnlyMetadata).
		Named("placement").
		Complete(r)
}

func templateMetadata(apiVersion, kind string) *metav1.PartialObjectMetadata {
	o := &metav1.PartialObjectMetadata{}
	o.SetGroupVersionKind(schema.FromAPIVersionAndKind(apiVersion, kind))
	return o
}

// bindingOfTemplate maps a resource template to the ResourceBinding Karmada
// names after it.
func bindingOfTemplate(kind string) handler.MapFunc {
	return func(_ context.Context, o client.Object) []reconcile.Request {
		return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(),
			Name: names.GenerateBindingName(kind, o.GetName())}}}
	}
}

func (r *Reconciler) bindingsOnCluster(ctx context.Context, o client.Object) []reconcile.Request {
	var list workv1alpha2.ResourceBindingList
	if err := r.Client.List(ctx, &list, client.MatchingLabels{policy.LabelOptedIn: "true"}); err != nil {
		klog.FromContext(ctx).Error(err, "Listing opted-in ResourceBindings")
		return nil
	}
	var reqs []reconcile.Request
	for i := range list.Items {
		if list.Items[i].Spec.TargetContains(o.GetName()) {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[i])})
		}
	}
	return reqs
}

func (r *Reconciler) bindingsOfPolicy(ctx context.Context, o client.Object) []reconcile.Request {
	var list workv1alpha2.ResourceBindingList
	if err := r.Client.List(ctx, &list, client.InNamespace(o.GetNamespace())); err != nil {
		klog.FromContext(ctx).Error(err, "Listing ResourceBindings")
		return nil
	}
	var reqs []reconcile.Request
	for i := range list.Items {
		if list.Items[i].Annotations[policyv1alpha1.PropagationPolicyNameAnnotation] == o.GetName() {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[i])})
		}
	}
	return reqs
}

// +kubebuilder:rbac:groups=work.karmada.io,resources=resourcebindings,verbs=get;list;watch;patch;update
// +kubebuilder:rbac:groups=livemigrate.io,resources=livemigrations,verbs=get;list;watch;create

// Reconcile keeps one binding's opt-in label and moves its workload to a
// held scheduling result.
func (r *Reconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	logger := klog.FromContext(ctx).WithValues("binding", req.NamespacedName)
	ctx = klog.NewContext(ctx, logger)
	rb := &workv1alpha2.ResourceBinding{}
	if err := r.Client.Get(ctx, req.NamespacedName, rb); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	ref := rb.Spec.Resource
	if ref.APIVersion != "apps/v1" || (ref.Kind != "Deployment" && ref.Kind != "StatefulSet") || !rb.DeletionTimestamp.IsZero() {
		return reconcile.Result{}, nil
	}
	pol, err := r.Policies.ForBinding(ctx, rb)
	if err != nil {
		return reconcile.Result{}, err
	}
	if err := r.syncLabel(ctx, rb, pol.OptedIn()); err != nil {
		return reconcile.Result{}, err
	}
	held, isHeld, err := Scheduled(rb)
	if err != nil {
		// Only the webhook writes it; drop what cannot be read, the next
		// scheduling result is held again.
		logger.Error(err, "Dropping an unreadable held scheduling result")
		return reconcile.Result{}, r.patchAnnotation(ctx, rb, nil)
	}
	if !pol.OptedIn() {
		if isHeld {
			return reconcile.Result{}, r.release(ctx, rb, held)
		}
		return reconcile.Result{}, nil
	}
	if len(rb.Spec.Clusters) != 1 {
		if isHeld && len(rb.Spec.Clusters) > 1 {
			r.event(ctx, rb, corev1.EventTypeWarning, "PlacementNotHandled", fmt.Sprintf(
				"karmada-scheduler placed the workload on %s, but it runs on %d clusters (%s): a live migration moves a workload placed on one cluster; change its placement or move it by hand",
				Names(held), len(rb.Spec.Clusters), Names(rb.Spec.Clusters)))
		}
		return reconcile.Result{}, nil
	}
	cur := rb.Spec.Clusters[0].Name
	if !isHeld {
		return r.watchPlacement(ctx, rb, cur)
	}
	if (&workv1alpha2.ResourceBindingSpec{Clusters: held}).TargetContains(cur) {
		// Moved there, or the scheduling result came back to where it runs.
		r.forget(rb)
		return reconcile.Result{}, r.patchAnnotation(ctx, rb, nil)
	}
	return r.move(ctx, rb, pol, cur, held)
}

// syncLabel sets livemigrate.io/opted-in on the binding of an opted-in
// workload and removes it from the others.
func (r *Reconciler) syncLabel(ctx context.Context, rb *workv1alpha2.ResourceBinding, optedIn bool) error {
	_, has := rb.Labels[policy.LabelOptedIn]
	if has == optedIn && (!has || rb.Labels[policy.LabelOptedIn] == "true") {
		return nil
	}
	var value any
	if optedIn {
		value = "true"
	}
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"labels": map[string]any{policy.LabelOptedIn: value}}})
	if err := r.Client.Patch(ctx, rb, client.RawPatch(types.MergePatchType, patch)); err != nil {
		return fmt.Errorf("labelling ResourceBinding %s/%s %s=%v: %w", rb.Namespace, rb.Name, policy.LabelOptedIn, optedIn, err)
	}
	klog.FromContext(ctx).V(2).Info("Updated the opt-in label of a binding", "optedIn", optedIn)
	return nil
}

// watchPlacement handles an opted-in workload with no held result: when
// its cluster no longer matches its placement's cluster affinity (a
// re-labelled Cluster: karmada-scheduler does not reschedule a Divided
// workload for that), or when karmada-scheduler failed to write a result
// (the placement webhook was unreachable), it asks karmada-scheduler to
// schedule it again, as a WorkloadRebalancer does.
func (r *Reconciler) watchPlacement(ctx context.Context, rb *workv1alpha2.ResourceBinding, cur string) (reconcile.Result, error) {
	if rb.Spec.Placement == nil || reschedulePending(rb) {
		return reconcile.Result{}, nil
	}
	c := &clusterv1alpha1.Cluster{}
	if err := r.Client.Get(ctx, types.NamespacedName{Name: cur}, c); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	now := r.Clock.Now()
	res := (&clusteraffinity.ClusterAffinity{}).Filter(ctx, &rb.Spec, &rb.Status, c)
	if !res.IsSuccess() {
		movedThere, err := r.movedThereByHand(ctx, rb, cur)
		if err != nil {
			return reconcile.Result{}, err
		}
		if movedThere {
			// Someone chose this cluster on purpose (kubectl livemigrate
			// move --to): karmada-scheduler would not move it back either.
			return reconcile.Result{}, nil
		}
		why := fmt.Sprintf("cluster %s no longer matches the placement's cluster affinity (%s)", cur, res.AsError())
		return reconcile.Result{}, r.reschedule(ctx, rb, now, "PlacementChanged", why+": asked karmada-scheduler to schedule the workload again; it moves live to the cluster chosen")
	}
	if cond := meta.FindStatusCondition(rb.Status.Conditions, workv1alpha2.Scheduled); cond != nil && cond.Status == metav1.ConditionFalse &&
		cond.Reason == workv1alpha2.BindingReasonSchedulerError && placementPending(rb) {
		// Likely a result the webhook could not hold while the descheduler
		// was down: karmada-scheduler retries with a growing backoff; ask
		// again now, at most once per resync.
		if t := rb.Spec.RescheduleTriggeredAt; t != nil && now.Sub(t.Time) < r.resync() {
			return reconcile.Result{RequeueAfter: r.resync()}, nil
		}
		return reconcile.Result{RequeueAfter: r.resync()}, r.reschedule(ctx, rb, now, "PlacementRescheduled",
			"karmada-scheduler failed to write its last scheduling result ("+cond.Message+"): asked it to schedule the workload again")
	}
	return reconcile.Result{}, nil
}

// movedThereByHand reports whether the workload's latest successful
// LiveMigration, one another trigger or a person made, moved it to cur.
func (r *Reconciler) movedThereByHand(ctx context.Context, rb *workv1alpha2.ResourceBinding, cur string) (bool, error) {
	var list lmv1alpha1.LiveMigrationList
	if err := r.Client.List(ctx, &list, client.InNamespace(rb.Namespace)); err != nil {
		return false, fmt.Errorf("listing LiveMigrations: %w", err)
	}
	ref := rb.Spec.Resource
	var last *lmv1alpha1.LiveMigration
	for i := range list.Items {
		lm := &list.Items[i]
		if lm.Spec.WorkloadRef.Kind != ref.Kind || lm.Spec.WorkloadRef.Name != ref.Name || lm.Status.Phase != lmv1alpha1.PhaseSucceeded {
			continue
		}
		if last == nil || last.CreationTimestamp.Before(&lm.CreationTimestamp) {
			last = lm
		}
	}
	return last != nil && last.Status.TargetCluster == cur && policy.TriggerOf(last.Labels) != policy.TriggerPlacement, nil
}

// placementPending reports whether karmada-scheduler has not written a
// result for the binding's current placement yet (its applied-placement
// annotation differs).
func placementPending(rb *workv1alpha2.ResourceBinding) bool {
	applied := &policyv1alpha1.Placement{}
	if err := json.Unmarshal([]byte(rb.Annotations[util.PolicyPlacementAnnotation]), applied); err != nil {
		return true
	}
	return !equality.Semantic.DeepEqual(applied, rb.Spec.Placement)
}

// reschedulePending reports whether a reschedule asked of karmada-scheduler
// (spec.rescheduleTriggeredAt) has not been carried out yet.
func reschedulePending(rb *workv1alpha2.ResourceBinding) bool {
	t := rb.Spec.RescheduleTriggeredAt
	return t != nil && (rb.Status.LastScheduledTime == nil || t.After(rb.Status.LastScheduledTime.Time))
}

func (r *Reconciler) reschedule(ctx context.Context, rb *workv1alpha2.ResourceBinding, now time.Time, reason, note string) error {
	patch, _ := json.Marshal(map[string]any{"spec": map[string]any{"rescheduleTriggeredAt": metav1.NewTime(now)}})
	if err := r.Client.Patch(ctx, rb, client.RawPatch(types.MergePatchType, patch)); err != nil {
		return fmt.Errorf("asking karmada-scheduler to reschedule ResourceBinding %s/%s: %w", rb.Namespace, rb.Name, err)
	}
	klog.FromContext(ctx).Info("Asked karmada-scheduler to reschedule an opted-in workload", "reason", note)
	r.event(ctx, rb, corev1.EventTypeNormal, reason, note)
	return nil
}

// move starts, waits for, or gives up on the live migration of a workload
// to its held scheduling result.
func (r *Reconciler) move(ctx context.Context, rb *workv1alpha2.ResourceBinding, pol *policy.Policy, cur string, held []workv1alpha2.TargetCluster) (reconcile.Result, error) {
	trigger := string(policy.TriggerPlacement)
	if len(held) != 1 {
		why := "karmada-scheduler found no cluster for the new placement"
		if len(held) > 1 {
			why = fmt.Sprintf("karmada-scheduler placed the workload on %d clusters (%s); a live migration moves it to one cluster", len(held), Names(held))
		}
		if r.event(ctx, rb, corev1.EventTypeWarning, "PlacementBlocked", why+": it stays on "+cur) {
			metrics.TriggerDecisions.WithLabelValues(trigger, string(metrics.DecisionBlocked)).Inc()
		}
		return reconcile.Result{}, nil
	}
	target := held[0].Name
	var migrations lmv1alpha1.LiveMigrationList
	if err := r.Client.List(ctx, &migrations); err != nil {
		return reconcile.Result{}, fmt.Errorf("listing LiveMigrations: %w", err)
	}
	ref := rb.Spec.Resource
	var last *lmv1alpha1.LiveMigration
	for i := range migrations.Items {
		lm := &migrations.Items[i]
		if lm.Namespace != rb.Namespace || lm.Spec.WorkloadRef.Kind != ref.Kind || lm.Spec.WorkloadRef.Name != ref.Name {
			continue
		}
		if !lm.Status.Phase.IsTerminal() {
			// Its own migration, another trigger's or a manual one: wait.
			return reconcile.Result{}, nil
		}
		if policy.TriggerOf(lm.Labels) == policy.TriggerPlacement && lm.Spec.TargetCluster == target &&
			(last == nil || last.CreationTimestamp.Before(&lm.CreationTimestamp)) {
			last = lm
		}
	}
	now := r.Clock.Now()
	if r.recentlyCreated(rb, now) {
		return reconcile.Result{RequeueAfter: r.resync()}, nil
	}
	if last != nil && last.Status.Phase == lmv1alpha1.PhaseFailed && (last.Status.SourceCluster == "" || last.Status.SourceCluster == cur) {
		why := "its live migration " + last.Name + " to " + target + " rolled back"
		if f := last.Status.Failure; f != nil {
			why += fmt.Sprintf(" (%s: %s)", f.Reason, f.Message)
		}
		if pol.MayFallBack() {
			return reconcile.Result{}, r.evict(ctx, rb, cur, held, why)
		}
		done := last.CreationTimestamp.Time
		if last.Status.CompletionTime != nil {
			done = last.Status.CompletionTime.Time
		}
		if wait := r.retryAfter() - now.Sub(done); wait > 0 {
			if r.event(ctx, rb, corev1.EventTypeWarning, "PlacementBlocked", fmt.Sprintf("karmada-scheduler placed the workload on %s but %s; eviction strategy LiveMigrate never re-creates it: it stays on %s and is retried after %s",
				target, why, cur, r.retryAfter())) {
				metrics.TriggerDecisions.WithLabelValues(trigger, string(metrics.DecisionBlocked)).Inc()
			}
			return reconcile.Result{RequeueAfter: wait}, nil
		}
	}
	if maintenance.FreeSlots(migrations.Items, cur, r.Config.MaxActive, r.Config.MaxActivePerCluster) == 0 {
		r.event(ctx, rb, corev1.EventTypeNormal, "PlacementWaiting", fmt.Sprintf(
			"karmada-scheduler placed the workload on %s: waiting for the concurrency budget (--max-active-migrations, --max-active-migrations-per-cluster) to move it live from %s", target, cur))
		return reconcile.Result{RequeueAfter: r.resync()}, nil
	}
	lm, err := r.start(ctx, rb, pol, cur, target)
	if err != nil {
		return reconcile.Result{}, err
	}
	metrics.TriggerDecisions.WithLabelValues(trigger, string(metrics.DecisionMigrationCreated)).Inc()
	r.event(ctx, rb, corev1.EventTypeNormal, "PlacementMigration", fmt.Sprintf("LiveMigration %s moves the workload from %s to %s: %s",
		lm.Name, cur, target, lm.Annotations[policy.AnnotationReason]))
	return reconcile.Result{}, nil
}

// Reason is the livemigrate.io/reason of a placement migration.
func Reason(rb *workv1alpha2.ResourceBinding, pol *policy.Policy, cur, target string) string {
	of := ""
	a := rb.Annotations
	switch {
	case a[policyv1alpha1.PropagationPolicyNameAnnotation] != "":
		ns := a[policyv1alpha1.PropagationPolicyNamespaceAnnotation]
		if ns == "" {
			ns = rb.Namespace
		}
		of = fmt.Sprintf(" (PropagationPolicy %s/%s)", ns, a[policyv1alpha1.PropagationPolicyNameAnnotation])
	case a[policyv1alpha1.ClusterPropagationPolicyAnnotation] != "":
		of = fmt.Sprintf(" (ClusterPropagationPolicy %s)", a[policyv1alpha1.ClusterPropagationPolicyAnnotation])
	}
	return fmt.Sprintf("the placement changed%s: karmada-scheduler placed the workload on %s instead of %s; eviction strategy %s", of, target, cur, pol.Strategy)
}

func (r *Reconciler) start(ctx context.Context, rb *workv1alpha2.ResourceBinding, pol *policy.Policy, cur, target string) (*lmv1alpha1.LiveMigration, error) {
	ref := rb.Spec.Resource
	name := ref.Name
	if len(name) > 40 {
		name = name[:40]
	}
	lm := &lmv1alpha1.LiveMigration{
		ObjectMeta: metav1.ObjectMeta{
			Namespace:    rb.Namespace,
			GenerateName: name + "-placement-",
			Labels:       map[string]string{policy.LabelTrigger: string(policy.TriggerPlacement)},
			Annotations:  map[string]string{policy.AnnotationReason: Reason(rb, pol, cur, target)},
		},
		Spec: lmv1alpha1.LiveMigrationSpec{
			WorkloadRef:   lmv1alpha1.WorkloadReference{APIVersion: "apps/v1", Kind: ref.Kind, Name: ref.Name},
			TargetCluster: target,
		},
	}
	pol.ApplyTo(&lm.Spec)
	if err := r.Client.Create(ctx, lm); err != nil {
		return nil, fmt.Errorf("creating the LiveMigration of %s %s/%s: %w", ref.Kind, rb.Namespace, ref.Name, err)
	}
	r.mu.Lock()
	if r.created == nil {
		r.created = map[string]time.Time{}
	}
	r.created[rb.Namespace+"/"+rb.Name] = r.Clock.Now()
	r.mu.Unlock()
	klog.FromContext(ctx).Info("Started a placement live migration", "liveMigration", klog.KObj(lm), "source", cur, "target", target)
	return lm, nil
}

// evict hands the workload to Karmada: the held scheduling result becomes
// spec.clusters, with a graceful eviction task for the cluster it leaves
// (as Karmada's failover does), so Karmada re-creates it there.
func (r *Reconciler) evict(ctx context.Context, rb *workv1alpha2.ResourceBinding, cur string, held []workv1alpha2.TargetCluster, why string) error {
	purge := policyv1alpha1.PurgeModeGracefully
	if f := rb.Spec.Failover; f != nil && f.Cluster != nil && f.Cluster.PurgeMode != "" {
		purge = f.Cluster.PurgeMode
	}
	upd := rb.DeepCopy()
	upd.Spec.Clusters = append(append([]workv1alpha2.TargetCluster{}, held...), rb.Spec.Clusters...)
	msg := "eviction strategy LiveMigrateIfPossible: " + why
	if len(msg) > 1024 {
		msg = msg[:1023] + "…"
	}
	upd.Spec.GracefulEvictCluster(cur, workv1alpha2.NewTaskOptions(
		workv1alpha2.WithPurgeMode(purge),
		workv1alpha2.WithProducer(EvictionProducer),
		workv1alpha2.WithReason("LiveMigrationImpossible"),
		workv1alpha2.WithMessage(msg)))
	delete(upd.Annotations, policy.AnnotationScheduledClusters)
	if err := r.Client.Update(ctx, upd); err != nil {
		return fmt.Errorf("handing ResourceBinding %s/%s to Karmada's graceful eviction: %w", rb.Namespace, rb.Name, err)
	}
	metrics.TriggerDecisions.WithLabelValues(string(policy.TriggerPlacement), string(metrics.DecisionFallbackEviction)).Inc()
	r.event(ctx, rb, corev1.EventTypeWarning, "PlacementEviction", fmt.Sprintf("the workload cannot move live to %s (%s): handed to Karmada's graceful eviction (evict and re-create)", Names(held), why))
	return nil
}

// release applies the held result of a workload that is no longer opted
// in: what karmada-scheduler would have done.
func (r *Reconciler) release(ctx context.Context, rb *workv1alpha2.ResourceBinding, held []workv1alpha2.TargetCluster) error {
	upd := rb.DeepCopy()
	upd.Spec.Clusters = held
	delete(upd.Annotations, policy.AnnotationScheduledClusters)
	if err := r.Client.Update(ctx, upd); err != nil {
		return fmt.Errorf("applying the held scheduling result to ResourceBinding %s/%s: %w", rb.Namespace, rb.Name, err)
	}
	r.event(ctx, rb, corev1.EventTypeNormal, "PlacementReleased", "the workload is no longer opted into live migration: karmada-scheduler's result "+Names(held)+" is applied (Karmada re-creates it there)")
	return nil
}

// patchAnnotation sets (or, with nil, removes) the held result.
func (r *Reconciler) patchAnnotation(ctx context.Context, rb *workv1alpha2.ResourceBinding, value any) error {
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]any{policy.AnnotationScheduledClusters: value}}})
	if err := r.Client.Patch(ctx, rb, client.RawPatch(types.MergePatchType, patch)); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("updating %s of ResourceBinding %s/%s: %w", policy.AnnotationScheduledClusters, rb.Namespace, rb.Name, err)
	}
	return nil
}

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

// forget drops what the reconciler remembers of a binding once its move
// is over.
func (r *Reconciler) forget(rb *workv1alpha2.ResourceBinding) {
	r.mu.Lock()
	defer r.mu.Unlock()
	key := rb.Namespace + "/" + rb.Name
	delete(r.created, key)
	for k := range r.said {
		if len(k) > len(key) && k[:len(key)+1] == key+"|" {
			delete(r.said, k)
		}
	}
}

func (r *Reconciler) retryAfter() time.Duration {
	if r.Config.RetryAfter > 0 {
		return r.Config.RetryAfter
	}
	return 5 * time.Minute
}

func (r *Reconciler) resync() time.Duration {
	if r.Config.Resync > 0 {
		return r.Config.Resync
	}
	return 10 * time.Second
}

// event records an event on the workload's template, related to its
// binding, unless the same note was the last one of that reason; it
// reports whether it recorded one.
func (r *Reconciler) event(ctx context.Context, rb *workv1alpha2.ResourceBinding, eventType, reason, note string) bool {
	key := rb.Namespace + "/" + rb.Name + "|" + reason
	r.mu.Lock()
	if r.said == nil {
		r.said = map[string]string{}
	}
	if r.said[key] == note {
		r.mu.Unlock()
		return false
	}
	r.said[key] = note
	r.mu.Unlock()
	klog.FromContext(ctx).V(2).Info("Placement trigger event", "reason", reason, "note", note)
	if r.Recorder == nil {
		return true
	}
	ref := rb.Spec.Resource
	tmpl := &metav1.PartialObjectMetadata{TypeMeta: metav1.TypeMeta{APIVersion: ref.APIVersion, Kind: ref.Kind},
		ObjectMeta: metav1.ObjectMeta{Namespace: rb.Namespace, Name: ref.Name, UID: ref.UID}}
	r.Recorder.Eventf(tmpl, rb, eventType, reason, "Placement", "%s", note)
	return true
}
