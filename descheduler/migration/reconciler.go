package migration

import (
	"context"
	"fmt"
	"time"

	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime/pkg/client"
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
}

// Reconciler drives one LiveMigration through the state machine. Every step
// reads what it needs from the LiveMigration's status, calls idempotent hooks
// and writes status once per reconcile.
type Reconciler struct {
	Client   ctrl.Client
	Recorder events.EventRecorder
	Clock    clock.PassiveClock
	Hooks    Hooks
	Config   Config
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

// Reconcile advances the LiveMigration by at most one phase.
func (r *Reconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	lm := &lmv1alpha1.LiveMigration{}
	if err := r.Client.Get(ctx, req.NamespacedName, lm); err != nil {
		return reconcile.Result{}, ctrl.IgnoreNotFound(err)
	}
	logger := klog.FromContext(ctx).WithValues("liveMigration", klog.KObj(lm), "uid", lm.UID, "phase", lm.Status.Phase)
	ctx = klog.NewContext(ctx, logger)
	defer r.updateActive(ctx)

	if lm.Status.Phase.IsTerminal() {
		if controllerutil.RemoveFinalizer(lm, Finalizer) {
			return reconcile.Result{}, r.Client.Update(ctx, lm)
		}
		return reconcile.Result{}, nil
	}
	if lm.DeletionTimestamp.IsZero() && controllerutil.AddFinalizer(lm, Finalizer) {
		if err := r.Client.Update(ctx, lm); err != nil {
			return reconcile.Result{}, fmt.Errorf("adding finalizer: %w", err)
		}
	}

	orig := lm.DeepCopy()
	now := r.Clock.Now()
	res, stepErr := r.advance(ctx, lm, now)

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
			r.startRollback(lm, NewStepFailedError("Aborted", "the LiveMigration was deleted"), now)
			return reconcile.Result{RequeueAfter: r.Config.PollInterval}, nil
		case lm.Spec.Abort:
			r.startRollback(lm, NewStepFailedError("Aborted", "spec.abort was set"), now)
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
