package migration

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
	"github.com/livemigrate/livemigrate/descheduler/metrics"
)

// Finalizer keeps a LiveMigration until its rollback or cleanup is done, so
// that deleting it aborts the migration instead of orphaning a frozen source.
const Finalizer = "livemigrate.io/live-migration"

// Config holds the controller-wide defaults.
type Config struct {
	// PollInterval is how often a phase waiting on a member cluster is re-checked.
	PollInterval time.Duration
	// DefaultDowntimeBudget applies when spec.downtimeBudget is empty.
	DefaultDowntimeBudget time.Duration
	// DefaultBandwidth (bytes/s) estimates transfer time when nothing was measured.
	DefaultBandwidth int64
	// PreCopy defaults.
	PreCopyThresholdBytes int64
	PreCopyMaxRounds      int32
	// Timeouts overrides DefaultTimeouts per phase.
	Timeouts map[lmv1alpha1.LiveMigrationPhase]time.Duration
	// AbortWait is how long a rollback waits for the agents to confirm
	// that volume replication stopped once everything else is undone (the
	// source runs again); after it the replication objects are removed
	// without the confirmation. 0 means DefaultAbortWait.
	AbortWait time.Duration
	// DowntimeHistory is how many of the latest successful migrations into
	// the same target cluster the downtime estimate learns the dump, pull
	// and restore time from (DefaultDowntimeHistory is the flag's default);
	// 0 leaves them out (the estimate is the transfer alone).
	DowntimeHistory int
	// MaxActive bounds the migrations past Pending, globally; 0 is unlimited.
	MaxActive int
	// MaxActivePerCluster bounds them per member cluster (as source or
	// target); 0 is unlimited.
	MaxActivePerCluster int
	// PostCopy is the descheduler's PostCopyMigration feature gate: off,
	// a migration with spec.memoryTransfer PostCopy fails (InvalidSpec)
	// before it acts.
	PostCopy bool
}

// Reconciler drives one LiveMigration through the state machine. Every step
// reads what it needs from the LiveMigration's status, calls idempotent hooks
// and writes status once per reconcile.
type Reconciler struct {
	Client client.Client
	// APIReader, when set, reads from the API server without a cache what
	// must not be decided on a stale copy: the workload lock and whether
	// the target is gone (the rollback's Works). Without it Client is used.
	APIReader client.Reader
	Recorder  events.EventRecorder
	Clock     clock.PassiveClock
	Hooks     Hooks
	Config    Config
	// MemberEvents, when set, triggers reconciles on member-cluster changes.
	MemberEvents <-chan event.GenericEvent

	admission admission
}

// stepResult is what a phase step decided.
type stepResult struct {
	// next is the phase to enter; empty to stay.
	next lmv1alpha1.LiveMigrationPhase
	// wait overrides the poll interval when staying.
	wait time.Duration
}

func stay() stepResult                                     { return stepResult{} }
func advanceTo(p lmv1alpha1.LiveMigrationPhase) stepResult { return stepResult{next: p} }

// +kubebuilder:rbac:groups=livemigrate.io,resources=livemigrations,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=livemigrate.io,resources=livemigrations/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=livemigrate.io,resources=livemigrations/finalizers,verbs=update
// +kubebuilder:rbac:groups=work.karmada.io,resources=resourcebindings,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups=cluster.karmada.io,resources=clusters,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch,namespace=karmada-cluster
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=coordination.k8s.io,resources=leases,verbs=get;create;update;delete
// +kubebuilder:rbac:groups=work.karmada.io,resources=works,verbs=get;list

// Reconcile advances the LiveMigration by at most one phase.
func (r *Reconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	lm := &lmv1alpha1.LiveMigration{}
	if err := r.Client.Get(ctx, req.NamespacedName, lm); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	logger := klog.FromContext(ctx).WithValues("liveMigration", klog.KObj(lm), "uid", lm.UID, "phase", lm.Status.Phase)
	ctx = klog.NewContext(ctx, logger)
	defer r.updateActive(ctx)

	if lm.Status.Phase.IsTerminal() {
		if err := r.releaseLock(ctx, lm); err != nil {
			return reconcile.Result{}, err
		}
		if err := r.patchFinalizer(ctx, lm, controllerutil.RemoveFinalizer); err != nil {
			if apierrors.IsConflict(err) {
				// Read a stale copy: the newer one reconciles again.
				return reconcile.Result{RequeueAfter: r.Config.PollInterval}, nil
			}
			return reconcile.Result{}, fmt.Errorf("removing finalizer: %w", err)
		}
		return reconcile.Result{}, nil
	}

	orig := lm.DeepCopy()
	now := r.Clock.Now()
	var res reconcile.Result
	var stepErr error
	if errs := r.invalidSpec(lm); len(errs) > 0 {
		// Nothing was done yet: fail without a finalizer to hold it.
		r.rejectSpec(ctx, lm, errs.ToAggregate().Error(), now)
	} else if err := r.patchFinalizer(ctx, lm, controllerutil.AddFinalizer); err != nil {
		if apierrors.IsConflict(err) {
			return reconcile.Result{RequeueAfter: r.Config.PollInterval}, nil
		}
		if !apierrors.IsInvalid(err) || !notStarted(lm.Status.Phase) {
			return reconcile.Result{}, fmt.Errorf("adding finalizer: %w", err)
		}
		// The API server refuses any write of this object (its stored spec
		// breaks a rule of the CRD): it can never be processed.
		r.rejectSpec(ctx, lm, err.Error(), now)
	} else {
		res, stepErr = r.advance(ctx, lm, now)
	}

	if !apiequality.Semantic.DeepEqual(orig.Status, lm.Status) {
		if err := r.Client.Status().Update(ctx, lm); err != nil {
			if apierrors.IsConflict(err) {
				// Read a stale copy: the watch event of the newer one
				// reconciles again; every step is idempotent.
				return reconcile.Result{RequeueAfter: r.Config.PollInterval}, nil
			}
			return reconcile.Result{}, fmt.Errorf("updating status: %w", err)
		}
		if orig.Status.Phase != lm.Status.Phase {
			r.phaseChanged(ctx, lm, orig.Status.Phase, now)
		}
	}
	return res, stepErr
}

// patchFinalizer adds or removes the Finalizer (change is
// controllerutil.AddFinalizer or RemoveFinalizer) with a merge patch of
// metadata.finalizers alone, guarded by the resourceVersion. An update of
// the whole object would write the spec back as this client spells it (30m
// as 30m0s, 0.5Gi as 512Mi), and the API server checks every spec written
// against the CRD's rules. A finalizer is only added while the object is
// not being deleted.
func (r *Reconciler) patchFinalizer(ctx context.Context, lm *lmv1alpha1.LiveMigration, change func(client.Object, string) bool) error {
	base := lm.DeepCopy()
	if !lm.DeletionTimestamp.IsZero() && !controllerutil.ContainsFinalizer(lm, Finalizer) {
		return nil
	}
	if !change(lm, Finalizer) {
		return nil
	}
	return r.Client.Patch(ctx, lm, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{}))
}

// notStarted reports whether a migration in phase p has done nothing yet.
func notStarted(p lmv1alpha1.LiveMigrationPhase) bool {
	return p == "" || p == lmv1alpha1.PhasePending
}

// invalidSpec returns what is wrong with the spec of a migration that has
// not started. The CRD's rules and the webhook refuse such a spec; one
// stored before those rules, or past a webhook that was not called, still
// reaches the controller.
func (r *Reconciler) invalidSpec(lm *lmv1alpha1.LiveMigration) field.ErrorList {
	if !notStarted(lm.Status.Phase) {
		return nil
	}
	errs := lm.Spec.Validate(field.NewPath("spec"))
	switch {
	case !lm.Spec.PostCopy():
	case !r.Config.PostCopy:
		errs = append(errs, field.Forbidden(field.NewPath("spec", "memoryTransfer"), MsgPostCopyGate))
	default:
		errs = append(errs, field.Forbidden(field.NewPath("spec", "memoryTransfer"), MsgPostCopyNotRun))
	}
	return errs
}

// rejectSpec ends a migration that has not started and that the controller
// cannot act on: Failed, with reason InvalidSpec in the failure, the
// Admitted condition and a warning event, instead of retrying forever.
func (r *Reconciler) rejectSpec(ctx context.Context, lm *lmv1alpha1.LiveMigration, why string, now time.Time) {
	klog.FromContext(ctx).Info("Migration spec cannot be processed, failing it", "err", why)
	msg := fmt.Sprintf("%s; delete this LiveMigration and create a corrected one", why)
	st := &lm.Status
	st.Failure = &lmv1alpha1.MigrationFailure{
		Phase:   lmv1alpha1.PhasePending,
		Reason:  ReasonInvalidSpec,
		Message: msg,
		Time:    metav1.NewTime(now),
	}
	setCondition(st, lm.Generation, lmv1alpha1.ConditionAdmitted, metav1.ConditionFalse, ReasonInvalidSpec, msg, now)
	setPhase(st, lmv1alpha1.PhaseFailed, now)
	st.CompletionTime = ptrTime(now)
	setCondition(st, lm.Generation, lmv1alpha1.ConditionCompleted, metav1.ConditionTrue, string(lmv1alpha1.PhaseFailed), "migration Failed", now)
	if r.Recorder != nil {
		r.Recorder.Eventf(lm, nil, corev1.EventTypeWarning, ReasonInvalidSpec, "Validate", "%s", msg)
	}
}

// advance runs the current phase's step and applies its outcome to status.
func (r *Reconciler) advance(ctx context.Context, lm *lmv1alpha1.LiveMigration, now time.Time) (reconcile.Result, error) {
	logger := klog.FromContext(ctx)
	st := &lm.Status
	if st.Phase == "" {
		setPhase(st, lmv1alpha1.PhasePending, now)
		return reconcile.Result{RequeueAfter: r.Config.PollInterval}, nil
	}

	if st.Phase != lmv1alpha1.PhaseRollingBack && !pastNoReturn(st.Phase) {
		switch {
		case !lm.DeletionTimestamp.IsZero():
			r.startRollback(lm, NewStepFailedError(lmv1alpha1.ReasonAborted, "the LiveMigration was deleted"), now)
			return reconcile.Result{RequeueAfter: r.Config.PollInterval}, nil
		case lm.Spec.Abort:
			r.startRollback(lm, NewStepFailedError(lmv1alpha1.ReasonAborted, "spec.abort was set"), now)
			return reconcile.Result{RequeueAfter: r.Config.PollInterval}, nil
		}
		if t := r.timeoutFor(lm, st.Phase); t > 0 {
			if since := now.Sub(enteredAt(st, st.Phase)); since >= t {
				r.startRollback(lm, NewPhaseTimeoutError(string(st.Phase), t), now)
				return reconcile.Result{RequeueAfter: r.Config.PollInterval}, nil
			}
		}
	}

	r.watchMembers(ctx, st)
	res, err := r.step(ctx, lm, now)
	if err != nil {
		permanent := IsStepFailed(err) || IsBudgetExceeded(err) || IsPhaseTimeout(err)
		if permanent && st.Phase != lmv1alpha1.PhaseRollingBack && !pastNoReturn(st.Phase) {
			logger.Info("Migration step failed, rolling back", "reason", failureReason(err), "err", err.Error())
			r.startRollback(lm, err, now)
			return reconcile.Result{RequeueAfter: r.Config.PollInterval}, nil
		}
		// Transient (or in Cleanup/RollingBack, which only finish or undo):
		// retry at the poll interval, not with the controller's exponential
		// backoff, which could outlast the downtime budget of a frozen
		// workload; the phase timeout bounds the retries.
		logger.Info("Migration step will be retried", "err", err.Error())
		res = stay()
	}
	if res.next != "" {
		setPhase(st, res.next, now)
		if res.next.IsTerminal() {
			st.CompletionTime = ptrTime(now)
			setCondition(st, lm.Generation, lmv1alpha1.ConditionCompleted, metav1.ConditionTrue, string(res.next), "migration "+string(res.next), now)
			return reconcile.Result{}, nil
		}
		// The watch event of this status update reconciles again, with the
		// cache holding it; the poll interval only guards a lost event.
		return reconcile.Result{RequeueAfter: r.Config.PollInterval}, nil
	}
	wait := res.wait
	if wait == 0 {
		wait = r.Config.PollInterval
	}
	if t := r.timeoutFor(lm, st.Phase); t > 0 && st.Phase != lmv1alpha1.PhaseRollingBack && !pastNoReturn(st.Phase) {
		if left := enteredAt(st, st.Phase).Add(t).Sub(now); left < wait {
			wait = left
		}
	}
	if wait <= 0 {
		wait = time.Millisecond
	}
	return reconcile.Result{RequeueAfter: wait}, nil
}

func (r *Reconciler) step(ctx context.Context, lm *lmv1alpha1.LiveMigration, now time.Time) (stepResult, error) {
	switch lm.Status.Phase {
	case lmv1alpha1.PhasePending:
		return r.pending(ctx, lm, now)
	case lmv1alpha1.PhasePlanning:
		return r.planning(ctx, lm, now)
	case lmv1alpha1.PhasePreCopy:
		return r.preCopy(ctx, lm, now)
	case lmv1alpha1.PhaseCheckpointing:
		return r.checkpointing(ctx, lm, now)
	case lmv1alpha1.PhaseFinalSync:
		return r.finalSync(ctx, lm)
	case lmv1alpha1.PhaseTransfer:
		return r.transfer(ctx, lm)
	case lmv1alpha1.PhaseRebinding:
		return r.rebinding(ctx, lm, now)
	case lmv1alpha1.PhaseRestoring:
		return r.restoring(ctx, lm)
	case lmv1alpha1.PhaseVerifying:
		return r.verifying(ctx, lm, now)
	case lmv1alpha1.PhaseCleanup:
		return r.cleanup(ctx, lm, now)
	case lmv1alpha1.PhaseRollingBack:
		return r.rollingBack(ctx, lm, now)
	default:
		return stepResult{}, reconcile.TerminalError(fmt.Errorf("unknown phase %q", lm.Status.Phase))
	}
}

// watchMembers makes sure the member clusters of the migration are watched.
func (r *Reconciler) watchMembers(ctx context.Context, st *lmv1alpha1.LiveMigrationStatus) {
	if r.Hooks.Watcher == nil {
		return
	}
	for _, c := range []string{st.SourceCluster, st.TargetCluster} {
		if c == "" {
			continue
		}
		if err := r.Hooks.Watcher.Watch(ctx, c); err != nil {
			klog.FromContext(ctx).V(2).Info("Cannot watch member cluster, polling it", "cluster", c, "err", err.Error())
		}
	}
}

// startRollback records the failure and enters RollingBack.
func (r *Reconciler) startRollback(lm *lmv1alpha1.LiveMigration, cause error, now time.Time) {
	st := &lm.Status
	if st.Failure == nil {
		st.Failure = &lmv1alpha1.MigrationFailure{
			Phase:   st.Phase,
			Reason:  failureReason(cause),
			Message: cause.Error(),
			Time:    metav1.NewTime(now),
		}
	}
	setPhase(st, lmv1alpha1.PhaseRollingBack, now)
}

// migration builds the hooks' view of the LiveMigration from its status.
func migrationOf(lm *lmv1alpha1.LiveMigration) Migration {
	m := Migration{
		UID:       lm.UID,
		Namespace: lm.Namespace,
		Name:      lm.Name,
		Workload:  lm.Spec.WorkloadRef,
		Source:    lm.Status.SourceCluster,
		Target:    lm.Status.TargetCluster,
	}
	if m.Workload.APIVersion == "" {
		m.Workload.APIVersion = "apps/v1"
	}
	if q := lm.Spec.BandwidthLimit; q != nil {
		m.BandwidthLimit = q.Value()
	}
	return m
}

func ptrMicro(t time.Time) *metav1.MicroTime {
	mt := metav1.NewMicroTime(t)
	return &mt
}

func ptrTime(t time.Time) *metav1.Time {
	mt := metav1.NewTime(t)
	return &mt
}

// updateActive sets the active-migrations gauge from the informer cache.
func (r *Reconciler) updateActive(ctx context.Context) {
	var list lmv1alpha1.LiveMigrationList
	if err := r.Client.List(ctx, &list); err != nil {
		return
	}
	n := 0
	for i := range list.Items {
		if !list.Items[i].Status.Phase.IsTerminal() {
			n++
		}
	}
	metrics.ActiveMigrations.Set(float64(n))
}
