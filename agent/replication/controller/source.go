package controller

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/livemigrate/livemigrate/agent/replication/engine"
	agentv1alpha1 "github.com/livemigrate/livemigrate/api/agent/v1alpha1"
	"github.com/livemigrate/livemigrate/internal/strutil"
)

func (r *VolumeReplicationReconciler) reconcileSource(ctx context.Context, vr *agentv1alpha1.VolumeReplication) (ctrl.Result, error) {
	key := client.ObjectKeyFromObject(vr)
	r.mu.Lock()
	w := r.workers[key]
	r.mu.Unlock()
	stage := vr.Spec.Stage
	if stage == "" {
		stage = agentv1alpha1.ReplicationStagePreCopy
	}
	switch stage {
	case agentv1alpha1.ReplicationStageFinal:
		if w != nil && w.kind == workFinal {
			return ctrl.Result{}, nil
		}
		if w != nil {
			// Pre-copy still running: the pod is frozen now, stop it.
			r.stopWorker(key)
		}
		r.startWorker(ctx, vr, workFinal)
	default:
		if w != nil {
			return ctrl.Result{}, nil
		}
		if vr.Status.Phase == agentv1alpha1.VolumeReplicationPreCopied {
			return r.keepWarm(ctx, vr)
		}
		r.startWorker(ctx, vr, workPreCopy)
	}
	return ctrl.Result{}, nil
}

// keepWarm starts a further delta pass when the last one is older than the
// keep-warm interval, else asks to be called back when it will be.
func (r *VolumeReplicationReconciler) keepWarm(ctx context.Context, vr *agentv1alpha1.VolumeReplication) (ctrl.Result, error) {
	interval := r.Config.KeepWarmInterval
	if interval <= 0 {
		return ctrl.Result{}, nil
	}
	if last := vr.Status.LastPassTime; last != nil {
		if wait := interval - r.Clock.Since(last.Time); wait > 0 {
			return ctrl.Result{RequeueAfter: wait}, nil
		}
	}
	r.startWorker(ctx, vr, workKeepWarm)
	return ctrl.Result{RequeueAfter: interval}, nil
}

func (r *VolumeReplicationReconciler) startWorker(ctx context.Context, vr *agentv1alpha1.VolumeReplication, kind workKind) {
	key := client.ObjectKeyFromObject(vr)
	log := klog.FromContext(ctx).WithValues("work", string(kind))
	wctx, cancel := context.WithCancel(klog.NewContext(context.Background(), log))
	w := &worker{kind: kind, cancel: cancel, done: make(chan struct{})}
	r.mu.Lock()
	if r.workers == nil {
		r.workers = map[types.NamespacedName]*worker{}
	}
	r.workers[key] = w
	r.mu.Unlock()
	addActive(roleSource, 1)
	obj := vr.DeepCopy()
	go func() {
		defer close(w.done)
		defer func() {
			addActive(roleSource, -1)
			r.mu.Lock()
			if r.workers[key] == w {
				delete(r.workers, key)
			}
			r.mu.Unlock()
		}()
		r.runSource(wctx, obj, kind)
	}()
}

// runSource runs one piece of source work to its end: the pre-copy, a
// keep-warm pass or the final pass. It returns nothing; what came of it is
// in the object's status.
func (r *VolumeReplicationReconciler) runSource(ctx context.Context, vr *agentv1alpha1.VolumeReplication, kind workKind) {
	sess, err := r.startSender(ctx, vr)
	if err != nil {
		return
	}
	switch kind {
	case workKeepWarm:
		r.runKeepWarm(ctx, vr, sess)
	case workPreCopy:
		r.runPreCopy(ctx, vr, sess)
	default:
		r.runFinal(ctx, vr, sess)
	}
}

// runPreCopy runs the pre-copy rounds while the application runs, verifies
// the target before the freeze and reports PreCopied.
func (r *VolumeReplicationReconciler) runPreCopy(ctx context.Context, vr *agentv1alpha1.VolumeReplication, sess *engine.Session) {
	log := klog.FromContext(ctx)
	key := client.ObjectKeyFromObject(vr)
	err := r.updateStatus(ctx, key, func(s *agentv1alpha1.VolumeReplicationStatus) {
		s.Phase = agentv1alpha1.VolumeReplicationPreCopying
		if s.StartTime == nil {
			now := metav1.NewTime(r.Clock.Now())
			s.StartTime = &now
		}
	})
	if err != nil {
		log.Error(err, "Updating status")
		return
	}
	res, err := sess.PreCopy(ctx, int(vr.Status.Round))
	if ctx.Err() != nil {
		return
	}
	if err != nil {
		if uerr := r.fail(ctx, vr, err); uerr != nil {
			log.Error(uerr, "Updating status")
		}
		return
	}
	observeEstimate(res.EstimatedFinal)
	log.Info("Pre-copy finished", "round", res.Round, "converged", res.Converged, "lastDeltaBytes", res.LastDelta, "estimatedFinal", res.EstimatedFinal)
	// Verify the target and record what is equal (and index its
	// blocks) while the application still runs, before reporting
	// PreCopied: the controller freezes the application once it sees
	// PreCopied, which stops this worker, and a final pass without the
	// records reads and checksums the whole volume under freeze.
	r.preVerify(ctx, vr, sess, res.Round)
	if ctx.Err() != nil {
		return
	}
	r.setStatus(ctx, key, func(s *agentv1alpha1.VolumeReplicationStatus) {
		s.Phase = agentv1alpha1.VolumeReplicationPreCopied
		s.EstimatedFinalDuration = &metav1.Duration{Duration: res.EstimatedFinal}
		s.RateBytesPerSecond = int64(res.Throughput)
		c := metav1.Condition{Type: agentv1alpha1.ConditionConverged, Status: metav1.ConditionTrue, Reason: "Converged",
			Message: fmt.Sprintf("last delta %d bytes after %d rounds", res.LastDelta, res.Round)}
		if !res.Converged {
			c.Status, c.Reason = metav1.ConditionFalse, "MaxRounds"
		}
		meta.SetStatusCondition(&s.Conditions, c)
		if s.Message != "" && strings.HasPrefix(s.Message, "retrying") {
			s.Message = ""
		}
	})
}

// runKeepWarm runs one further delta pass while the source waits in
// PreCopied, and verifies again what it changed.
func (r *VolumeReplicationReconciler) runKeepWarm(ctx context.Context, vr *agentv1alpha1.VolumeReplication, sess *engine.Session) {
	res, err := sess.KeepWarm(ctx, int(vr.Status.Round))
	if ctx.Err() != nil {
		return
	}
	if err != nil {
		// The application runs on; a failed keep-warm pass is not a
		// failed replication. The next one, or the final pass, retries.
		klog.FromContext(ctx).Error(err, "Keep-warm pass failed")
		return
	}
	r.setStatus(ctx, client.ObjectKeyFromObject(vr), func(s *agentv1alpha1.VolumeReplicationStatus) {
		s.EstimatedFinalDuration = &metav1.Duration{Duration: res.EstimatedFinal}
	})
	r.preVerify(ctx, vr, sess, res.Round)
}

// runFinal runs the final pass and its verification; the pod is frozen.
func (r *VolumeReplicationReconciler) runFinal(ctx context.Context, vr *agentv1alpha1.VolumeReplication, sess *engine.Session) {
	log := klog.FromContext(ctx)
	key := client.ObjectKeyFromObject(vr)
	if err := r.updateStatus(ctx, key, func(s *agentv1alpha1.VolumeReplicationStatus) {
		s.Phase = agentv1alpha1.VolumeReplicationFinalSyncing
		s.Checksum = agentv1alpha1.ChecksumPending
	}); err != nil {
		log.Error(err, "Updating status")
		return
	}
	res, err := sess.Final(ctx, int(vr.Status.Round)+1)
	if ctx.Err() != nil {
		return
	}
	if err != nil {
		mismatch := engine.IsChecksumMismatch(err)
		r.setStatus(ctx, key, func(s *agentv1alpha1.VolumeReplicationStatus) {
			s.Phase = agentv1alpha1.VolumeReplicationFailed
			s.Message = strutil.Truncate(err.Error(), maxMessage)
			if mismatch {
				s.Checksum = agentv1alpha1.ChecksumMismatch
				meta.SetStatusCondition(&s.Conditions, metav1.Condition{Type: agentv1alpha1.ConditionVerified, Status: metav1.ConditionFalse, Reason: "ChecksumMismatch", Message: strutil.Truncate(err.Error(), maxMessage)})
			}
		})
		replicationDone(resultFailure)
		log.Error(err, "Final replication pass failed")
		return
	}
	observeFinalDuration(res.Downtime)
	replicationDone(resultSuccess)
	observeVerify(stageFinal, res.Counts)
	observeFinal(res)
	log.Info("Volume replicated and verified", "finalDuration", res.Downtime, "method", res.Method, "fallback", res.Fallback,
		"fallbackReason", res.FallbackDetail, "repairs", res.Repairs, "verification", res.Counts.String())
	r.setStatus(ctx, key, func(s *agentv1alpha1.VolumeReplicationStatus) {
		now := metav1.NewTime(r.Clock.Now())
		s.Phase = agentv1alpha1.VolumeReplicationCompleted
		s.Checksum = agentv1alpha1.ChecksumMatch
		s.FinalDuration = &metav1.Duration{Duration: res.Downtime}
		s.CompletionTime = &now
		s.Message = ""
		meta.SetStatusCondition(&s.Conditions, metav1.Condition{Type: agentv1alpha1.ConditionVerified, Status: metav1.ConditionTrue, Reason: "ChecksumMatch",
			Message: verifiedMessage(res)})
	})
}

// verifyState returns the pre-freeze verification records of a source
// replication, creating them on first use.
func (r *VolumeReplicationReconciler) verifyState(key types.NamespacedName) *engine.VerifyState {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.verified == nil {
		r.verified = map[types.NamespacedName]*engine.VerifyState{}
	}
	v := r.verified[key]
	if v == nil {
		v = engine.NewVerifyState()
		r.verified[key] = v
	}
	return v
}

// preVerify runs the pre-freeze verification; a failure only means the
// final pass will checksum more (the application runs: differences are
// expected and simply not recorded).
func (r *VolumeReplicationReconciler) preVerify(ctx context.Context, vr *agentv1alpha1.VolumeReplication, sess *engine.Session, round int) {
	if r.Config.WholeFinalVerify {
		return // the final pass reads everything anyway
	}
	log := klog.FromContext(ctx)
	c, err := sess.PreVerify(ctx, round)
	if ctx.Err() != nil {
		return
	}
	if err != nil {
		log.Error(err, "Pre-freeze verification failed; the final pass will verify more")
		return
	}
	observeVerify(stagePreFreeze, c)
	msg := fmt.Sprintf("%s; %d entries recorded as equal", c, sess.Verified().Len())
	log.Info("Pre-freeze verification", "result", msg)
	if r.Recorder != nil {
		r.Recorder.Eventf(vr, nil, corev1.EventTypeNormal, ReasonPreVerified, "Verify", "%s", strutil.Truncate(msg, maxMessage))
	}
	r.setStatus(ctx, client.ObjectKeyFromObject(vr), func(s *agentv1alpha1.VolumeReplicationStatus) {
		meta.SetStatusCondition(&s.Conditions, metav1.Condition{Type: ConditionPreVerified, Status: metav1.ConditionTrue, Reason: ReasonPreVerified, Message: strutil.Truncate(msg, maxMessage)})
	})
}
