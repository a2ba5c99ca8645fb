package controller

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/retry"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	"github.com/livemigrate/livemigrate/agent/replication/certs"
	"github.com/livemigrate/livemigrate/agent/replication/engine"
	"github.com/livemigrate/livemigrate/agent/replication/provision"
	"github.com/livemigrate/livemigrate/agent/replication/rsync"
	"github.com/livemigrate/livemigrate/agent/replication/transport"
	agentv1alpha1 "github.com/livemigrate/livemigrate/api/agent/v1alpha1"
)

// Config is what the reconciler needs from the agent's options.
type Config struct {
	// NodeName is this agent's node; other objects are ignored.
	NodeName string
	// KubeletRoot is the kubelet's root directory on the host.
	KubeletRoot string
	// HostRoot is where the host's filesystem is mounted in the agent's
	// container ("" when the agent sees host paths as they are).
	HostRoot string
	// TargetRoots are the host directories target volumes may live under.
	TargetRoots []string
	// ListenHost is the address receivers bind to; AdvertiseHost the one
	// reported in status.endpoint.
	ListenHost, AdvertiseHost string
	// Port is the shared receiver port: every receiver of this agent is
	// served on it, routed by TLS server name (0: any free port, for tests).
	Port int
	// StartRetryTimeout is how long a receiver or sender that cannot start
	// for a transient reason (see StartReason) is retried before the
	// replication fails; DefaultStartRetryTimeout when 0.
	StartRetryTimeout time.Duration
	// RsyncPath is the rsync binary.
	RsyncPath string
	// BlockSize forces rsync's delta block size when > 0.
	BlockSize int
	// DefaultBandwidthLimit applies when the object has none (bytes/s).
	DefaultBandwidthLimit int64
	// DefaultConvergenceThreshold and DefaultMaxRounds apply when unset.
	DefaultConvergenceThreshold int64
	DefaultMaxRounds            int
	// ProgressInterval throttles status updates during a pass.
	ProgressInterval time.Duration
	// KeepWarmInterval: while a Source waits in PreCopied, a further delta
	// pass runs when the last one is older than this; 0 disables it.
	KeepWarmInterval time.Duration
	// WholeFinalVerify checksums the whole volume under freeze even after
	// a pre-freeze verification.
	WholeFinalVerify bool
}

// VolumeReplicationReconciler reconciles the VolumeReplications of one node.
type VolumeReplicationReconciler struct {
	// Client reads VolumeReplications (cached) and writes their status.
	Client client.Client
	// Reader reads claims, volumes, pods and secrets without caching them
	// cluster-wide, and fresh VolumeReplications for status updates.
	Reader  client.Reader
	Clock   clock.Clock
	Metrics *Metrics
	// Recorder, when set, records events (a retried pass, a pre-freeze
	// verification) on the VolumeReplication.
	Recorder events.EventRecorder
	Config   Config

	mu        sync.Mutex
	workers   map[types.NamespacedName]*worker
	receivers map[types.NamespacedName]*receiverHandle
	// router is the shared receiver listener, started at first use.
	router *transport.Router
	// verified holds each source replication's pre-freeze verification
	// records (engine.VerifyState), in memory: after a restart the final
	// pass verifies the whole volume.
	verified map[types.NamespacedName]*engine.VerifyState
}

// Condition and event reasons of the pre-freeze verification and retries.
const (
	// ConditionPreVerified reports the last pre-freeze verification.
	ConditionPreVerified = "PreVerified"
	ReasonPassRetried    = "PassRetried"
	ReasonPreVerified    = "PreVerified"
	// ReasonNotStarted is the event of a receiver or sender that cannot
	// start (yet); ReasonStartFailed's event when it gave up.
	ReasonNotStarted = "ReplicationNotStarted"
)

// DefaultStartRetryTimeout is Config.StartRetryTimeout's default.
const DefaultStartRetryTimeout = time.Minute

type workKind string

const (
	workPreCopy  workKind = "precopy"
	workKeepWarm workKind = "keepwarm"
	workFinal    workKind = "final"
)

type worker struct {
	kind   workKind
	cancel context.CancelFunc
	done   chan struct{}
}

// +kubebuilder:rbac:groups=agent.livemigrate.io,resources=volumereplications,verbs=get;list;watch
// +kubebuilder:rbac:groups=agent.livemigrate.io,resources=volumereplications/status,verbs=get;update;patch
// +kubebuilder:rbac:groups="",resources=persistentvolumeclaims;persistentvolumes;pods,verbs=get
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get

// Reconcile starts, replaces or stops the work one VolumeReplication asks for.
func (r *VolumeReplicationReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	log := klog.FromContext(ctx).WithValues("volumeReplication", req.NamespacedName)
	ctx = klog.NewContext(ctx, log)
	vr := &agentv1alpha1.VolumeReplication{}
	if err := r.Client.Get(ctx, req.NamespacedName, vr); err != nil {
		if apierrors.IsNotFound(err) {
			r.stopAll(req.NamespacedName)
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, err
	}
	if vr.Spec.NodeName != r.Config.NodeName {
		return ctrl.Result{}, nil
	}
	if !vr.DeletionTimestamp.IsZero() {
		r.stopAll(req.NamespacedName)
		return ctrl.Result{}, nil
	}
	if vr.Spec.Abort {
		return ctrl.Result{}, r.abort(ctx, vr)
	}
	switch vr.Status.Phase {
	case agentv1alpha1.VolumeReplicationCompleted, agentv1alpha1.VolumeReplicationFailed, agentv1alpha1.VolumeReplicationAborted:
		r.stopWorker(req.NamespacedName)
		if vr.Spec.Role == agentv1alpha1.ReplicationRoleSource || vr.Status.Phase != agentv1alpha1.VolumeReplicationCompleted {
			return ctrl.Result{}, nil
		}
	}
	if vr.Spec.Role == agentv1alpha1.ReplicationRoleTarget {
		return r.reconcileTarget(ctx, vr)
	}
	return r.reconcileSource(ctx, vr)
}

// SetupWithManager registers the reconciler for this node's objects.
func (r *VolumeReplicationReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Clock == nil {
		r.Clock = clock.RealClock{}
	}
	if r.Reader == nil {
		r.Reader = mgr.GetAPIReader()
	}
	if err := mgr.Add(stopper{r}); err != nil {
		return err
	}
	node := r.Config.NodeName
	return ctrl.NewControllerManagedBy(mgr).
		Named("volumereplication").
		For(&agentv1alpha1.VolumeReplication{}, builder.WithPredicates(predicate.NewPredicateFuncs(func(o client.Object) bool {
			vr, ok := o.(*agentv1alpha1.VolumeReplication)
			return ok && vr.Spec.NodeName == node
		}))).
		Complete(r)
}

// stopper stops every worker and receiver when the manager stops.
type stopper struct{ r *VolumeReplicationReconciler }

func (s stopper) Start(ctx context.Context) error {
	<-ctx.Done()
	s.r.Shutdown()
	return nil
}

// Shutdown stops all workers and receivers.
func (r *VolumeReplicationReconciler) Shutdown() {
	r.mu.Lock()
	var keys []types.NamespacedName
	for k := range r.workers {
		keys = append(keys, k)
	}
	for k := range r.receivers {
		keys = append(keys, k)
	}
	r.mu.Unlock()
	for _, k := range keys {
		r.stopAll(k)
	}
	r.mu.Lock()
	rt := r.router
	r.router = nil
	r.mu.Unlock()
	if rt != nil {
		_ = rt.Close()
	}
}

// ---- source ----

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
	if r.Metrics != nil {
		r.Metrics.active.WithLabelValues(roleSource).Inc()
	}
	obj := vr.DeepCopy()
	go func() {
		defer close(w.done)
		defer func() {
			if r.Metrics != nil {
				r.Metrics.active.WithLabelValues(roleSource).Dec()
			}
			r.mu.Lock()
			if r.workers[key] == w {
				delete(r.workers, key)
			}
			r.mu.Unlock()
		}()
		r.runSource(wctx, obj, kind)
	}()
}

func (r *VolumeReplicationReconciler) runSource(ctx context.Context, vr *agentv1alpha1.VolumeReplication, kind workKind) {
	log := klog.FromContext(ctx)
	key := client.ObjectKeyFromObject(vr)
	sess, err := r.startSender(ctx, vr)
	if err != nil {
		return
	}
	if kind == workKeepWarm {
		res, err := sess.KeepWarm(ctx, int(vr.Status.Round))
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			// The application runs on; a failed keep-warm pass is not a
			// failed replication. The next one, or the final pass, retries.
			log.Error(err, "Keep-warm pass failed")
			return
		}
		_ = r.updateStatus(ctx, key, func(s *agentv1alpha1.VolumeReplicationStatus) {
			s.EstimatedFinalDuration = &metav1.Duration{Duration: res.EstimatedFinal}
		})
		r.preVerify(ctx, vr, sess, res.Round)
		return
	}
	if kind == workPreCopy {
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
			_ = r.fail(ctx, vr, err)
			return
		}
		if r.Metrics != nil {
			r.Metrics.estimateSecs.Observe(res.EstimatedFinal.Seconds())
		}
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
		_ = r.updateStatus(ctx, key, func(s *agentv1alpha1.VolumeReplicationStatus) {
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
		return
	}

	// Final: the pod is frozen.
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
		_ = r.updateStatus(ctx, key, func(s *agentv1alpha1.VolumeReplicationStatus) {
			s.Phase = agentv1alpha1.VolumeReplicationFailed
			s.Message = truncate(err.Error())
			if mismatch {
				s.Checksum = agentv1alpha1.ChecksumMismatch
				meta.SetStatusCondition(&s.Conditions, metav1.Condition{Type: agentv1alpha1.ConditionVerified, Status: metav1.ConditionFalse, Reason: "ChecksumMismatch", Message: truncate(err.Error())})
			}
		})
		if r.Metrics != nil {
			r.Metrics.replications.WithLabelValues(resultFailure).Inc()
		}
		log.Error(err, "Final replication pass failed")
		return
	}
	if r.Metrics != nil {
		r.Metrics.finalSeconds.Observe(res.Downtime.Seconds())
		r.Metrics.replications.WithLabelValues(resultSuccess).Inc()
	}
	r.Metrics.observeVerify(stageFinal, res.Counts)
	r.Metrics.observeFinal(res)
	log.Info("Volume replicated and verified", "finalDuration", res.Downtime, "method", res.Method, "fallback", res.Fallback,
		"fallbackReason", res.FallbackDetail, "repairs", res.Repairs, "verification", res.Counts.String())
	_ = r.updateStatus(ctx, key, func(s *agentv1alpha1.VolumeReplicationStatus) {
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

// startSender builds the session of a source object, retrying a transient
// failure (see startFailed) until it starts, fails or ctx ends; the error is
// only for the caller to stop.
func (r *VolumeReplicationReconciler) startSender(ctx context.Context, vr *agentv1alpha1.VolumeReplication) (*engine.Session, error) {
	for {
		sess, err := r.session(ctx, vr)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if err == nil {
			if !meta.IsStatusConditionTrue(vr.Status.Conditions, agentv1alpha1.ConditionSenderReady) {
				msg := "sending to " + vr.Spec.PeerAddress + " as TLS server name " + peerServerName(vr)
				if uerr := r.updateStatus(ctx, client.ObjectKeyFromObject(vr), func(s *agentv1alpha1.VolumeReplicationStatus) {
					if strings.HasPrefix(s.Message, startRetryPrefix) {
						s.Message = ""
					}
					meta.SetStatusCondition(&s.Conditions, metav1.Condition{Type: agentv1alpha1.ConditionSenderReady, Status: metav1.ConditionTrue,
						Reason: ReasonStarted, Message: msg, LastTransitionTime: metav1.NewTime(r.Clock.Now())})
				}); uerr != nil {
					klog.FromContext(ctx).Error(uerr, "Updating status")
				}
			}
			return sess, nil
		}
		res, uerr := r.startFailed(ctx, vr, agentv1alpha1.ConditionSenderReady, err)
		wait := res.RequeueAfter
		if uerr != nil {
			wait = startBackoff(0)
		} else if wait <= 0 {
			return nil, err // failed for good
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}

// peerServerName is the TLS server name a source sends to reach its
// receiver on the target agent's shared port.
func peerServerName(vr *agentv1alpha1.VolumeReplication) string {
	if vr.Spec.PeerServerName != "" {
		return vr.Spec.PeerServerName
	}
	return RouteServerName(vr.Spec.MigrationUID, vr.Spec.ClaimName)
}

// verifiedMessage describes how the final pass proved the target equal.
func verifiedMessage(res engine.FinalResult) string {
	if res.Method == engine.FinalBlockDelta {
		return fmt.Sprintf("block delta: block hashes and metadata match; under freeze: %s", res.Counts)
	}
	msg := fmt.Sprintf("whole-file checksums match after %d repairs; under freeze: %s", res.Repairs, res.Counts)
	if res.Fallback != "" && res.Fallback != engine.FallbackDisabled {
		why := res.FallbackDetail
		if why == "" {
			why = string(res.Fallback)
		}
		msg += " (rsync: " + why + ")"
	}
	return msg
}

// session builds the engine session of a source object.
func (r *VolumeReplicationReconciler) session(ctx context.Context, vr *agentv1alpha1.VolumeReplication) (*engine.Session, error) {
	key := client.ObjectKeyFromObject(vr)
	src, err := r.sourcePath(ctx, vr)
	if err != nil {
		return nil, err
	}
	base := ""
	if b := vr.Spec.PreCopyBase; b != nil && vr.Status.Round == 0 {
		if base, err = r.basePath(ctx, vr, b); err != nil {
			return nil, err
		}
	}
	tlsCfg, err := r.tlsConfig(ctx, vr, certs.RoleSource)
	if err != nil {
		return nil, err
	}
	tlsCfg.ServerName = peerServerName(vr)
	peer := vr.Spec.PeerAddress
	bw := r.Config.DefaultBandwidthLimit
	if vr.Spec.BandwidthLimit != nil {
		bw = vr.Spec.BandwidthLimit.Value()
	}
	threshold := r.Config.DefaultConvergenceThreshold
	if vr.Spec.PreCopy.ConvergenceThreshold != nil {
		threshold = vr.Spec.PreCopy.ConvergenceThreshold.Value()
	}
	maxRounds := r.Config.DefaultMaxRounds
	if vr.Spec.PreCopy.MaxRounds > 0 {
		maxRounds = int(vr.Spec.PreCopy.MaxRounds)
	}
	prog := newPassProgress()
	return engine.NewSession(engine.Config{
		Counter:              prog.counter,
		SourceDir:            src,
		BaseDir:              base,
		Dial:                 func(ctx context.Context) (net.Conn, error) { return transport.Dial(ctx, peer, tlsCfg) },
		RsyncPath:            r.Config.RsyncPath,
		BandwidthLimit:       bw,
		BlockSize:            r.Config.BlockSize,
		ConvergenceThreshold: threshold,
		MaxRounds:            maxRounds,
		Clock:                r.Clock,
		Verified:             r.verifyState(key),
		WholeFinalVerify:     r.Config.WholeFinalVerify,
		OnRetry: func(rt engine.Retry) {
			r.Metrics.observeRetry(rt)
			msg := fmt.Sprintf("retrying %s pass of round %d (attempt %d of %d failed) in %s: %v", rt.Pass, rt.Round, rt.Attempt, rt.Attempts, rt.Wait, rt.Err)
			klog.FromContext(ctx).Info("Retrying a failed pre-copy pass", "pass", rt.Pass, "round", rt.Round, "attempt", rt.Attempt, "wait", rt.Wait, "err", rt.Err)
			if r.Recorder != nil {
				r.Recorder.Eventf(vr, nil, corev1.EventTypeWarning, ReasonPassRetried, "Replicate", "%s", truncate(msg))
			}
			_ = r.updateStatus(ctx, key, func(s *agentv1alpha1.VolumeReplicationStatus) { s.Message = truncate(msg) })
		},
		OnPass: func(p engine.PassResult) {
			r.Metrics.observePass(p)
			rest := prog.ended(p.WireSent, p.Err == nil)
			if p.Err != nil || p.Pass == engine.PassPreVerify {
				// A pre-freeze verification changes neither the phase nor
				// the keep-warm schedule.
				return
			}
			now := metav1.NewTime(r.Clock.Now())
			_ = r.updateStatus(ctx, key, func(s *agentv1alpha1.VolumeReplicationStatus) {
				applyPass(s, p, rest)
				s.LastPassTime = &now
			})
		},
		OnProgress: func(pass engine.Pass, _ int, p rsync.Progress) {
			prog.during(pass, r.Clock.Now(), r.Config.ProgressInterval, func(delta int64) error {
				return r.updateStatus(ctx, key, func(s *agentv1alpha1.VolumeReplicationStatus) {
					s.BytesSent += delta
					if p.Percent > 0 {
						s.BytesTotal = p.Bytes * 100 / int64(p.Percent)
					}
					if p.TotalFiles > 0 {
						s.Files = p.TotalFiles
					}
				})
			})
		},
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
	r.Metrics.observeVerify(stagePreFreeze, c)
	msg := fmt.Sprintf("%s; %d entries recorded as equal", c, sess.Verified().Len())
	log.Info("Pre-freeze verification", "result", msg)
	if r.Recorder != nil {
		r.Recorder.Eventf(vr, nil, corev1.EventTypeNormal, ReasonPreVerified, "Verify", "%s", truncate(msg))
	}
	_ = r.updateStatus(ctx, client.ObjectKeyFromObject(vr), func(s *agentv1alpha1.VolumeReplicationStatus) {
		meta.SetStatusCondition(&s.Conditions, metav1.Condition{Type: ConditionPreVerified, Status: metav1.ConditionTrue, Reason: ReasonPreVerified, Message: truncate(msg)})
	})
}

// applyPass folds a finished pass into the status; sent is what it sent
// beyond what its progress already added to BytesSent.
func applyPass(s *agentv1alpha1.VolumeReplicationStatus, p engine.PassResult, sent int64) {
	s.BytesSent += sent
	d := metav1.Duration{Duration: p.Duration}
	switch p.Pass {
	case engine.PassVerify:
		s.Phase = agentv1alpha1.VolumeReplicationVerifying
		return
	case engine.PassRepair:
		return
	}
	s.Round = int32(p.Round)
	s.BytesTotal = p.Stats.TotalFileSize
	s.Files = p.Stats.Files
	s.FilesTransferred = p.Stats.TransferredFiles
	s.LastDeltaBytes = p.Stats.LiteralData
	s.LastRoundDuration = &d
	if p.Duration > 0 {
		if rate := int64(float64(p.WireSent) / p.Duration.Seconds()); rate > s.RateBytesPerSecond {
			s.RateBytesPerSecond = rate
		}
	}
	if p.Pass == engine.PassFinal {
		s.Phase = agentv1alpha1.VolumeReplicationVerifying
	}
}

func (r *VolumeReplicationReconciler) sourcePath(ctx context.Context, vr *agentv1alpha1.VolumeReplication) (string, error) {
	_, pv, err := r.claimAndVolume(ctx, vr)
	if err != nil {
		return "", err
	}
	podUID := ""
	if !provision.IsNodeLocal(pv) {
		if vr.Spec.PodName == "" {
			return "", terminalStart(ReasonUnsupportedVolume, fmt.Errorf("volume %s is not node-local: spec.podName is needed to find its mount", pv.Name),
				"set spec.podName to the pod mounting the claim")
		}
		pod := &corev1.Pod{}
		if err := r.Reader.Get(ctx, types.NamespacedName{Namespace: vr.Namespace, Name: vr.Spec.PodName}, pod); err != nil {
			if apierrors.IsNotFound(err) {
				return "", transientStart(ReasonPodNotFound, fmt.Errorf("getting pod %s: %w", vr.Spec.PodName, err), "the pod mounting the claim must run on this node")
			}
			return "", fmt.Errorf("getting pod %s: %w", vr.Spec.PodName, err)
		}
		if pod.Spec.NodeName != r.Config.NodeName {
			return "", terminalStart(ReasonPodOnOtherNode, fmt.Errorf("pod %s runs on node %q, not on %q", pod.Name, pod.Spec.NodeName, r.Config.NodeName),
				"spec.nodeName must be the node of the pod mounting the claim")
		}
		podUID = string(pod.UID)
	}
	p, err := provision.SourcePath(pv, podUID, r.Config.KubeletRoot)
	if err != nil {
		return "", terminalStart(ReasonUnsupportedVolume, err, "")
	}
	return filepath.Join(r.Config.HostRoot, p), nil
}

// basePath is the reader pod's mount of the snapshot-restored claim.
func (r *VolumeReplicationReconciler) basePath(ctx context.Context, vr *agentv1alpha1.VolumeReplication, b *agentv1alpha1.ReplicationBase) (string, error) {
	base := vr.DeepCopy()
	base.Spec.ClaimName, base.Spec.PodName = b.ClaimName, b.PodName
	_, pv, err := r.claimAndVolume(ctx, base)
	if err != nil {
		return "", fmt.Errorf("pre-copy base: %w", err)
	}
	if provision.IsNodeLocal(pv) {
		return "", fmt.Errorf("pre-copy base volume %s is node-local; a base must be a restored CSI snapshot", pv.Name)
	}
	p, err := r.sourcePath(ctx, base)
	if err != nil {
		return "", fmt.Errorf("pre-copy base: %w", err)
	}
	return p, nil
}

// ---- abort, failure, status ----

func (r *VolumeReplicationReconciler) abort(ctx context.Context, vr *agentv1alpha1.VolumeReplication) error {
	if vr.Status.Phase == agentv1alpha1.VolumeReplicationAborted {
		return nil
	}
	key := client.ObjectKeyFromObject(vr)
	r.stopAll(key)
	msg := "aborted"
	if vr.Spec.Role == agentv1alpha1.ReplicationRoleTarget {
		// Remove the partial copy and its directory; only a volume
		// provisioned for this migration under a target root (targetPath
		// checks both, and that no symbolic link leads elsewhere).
		if p, err := r.targetPath(ctx, vr, false); err == nil {
			if err := removeTargetDir(p); err != nil {
				return fmt.Errorf("removing partial target data: %w", err)
			}
			msg = "aborted; partial target data and its directory removed"
		} else {
			msg = "aborted; target data not removed: " + err.Error()
		}
	}
	if vr.Spec.Role == agentv1alpha1.ReplicationRoleSource && r.Metrics != nil {
		r.Metrics.replications.WithLabelValues("aborted").Inc()
	}
	klog.FromContext(ctx).Info("Replication aborted", "role", vr.Spec.Role)
	return r.updateStatus(ctx, key, func(s *agentv1alpha1.VolumeReplicationStatus) {
		s.Phase = agentv1alpha1.VolumeReplicationAborted
		s.Message = truncate(msg)
		meta.RemoveStatusCondition(&s.Conditions, agentv1alpha1.ConditionReceiverReady)
	})
}

func (r *VolumeReplicationReconciler) fail(ctx context.Context, vr *agentv1alpha1.VolumeReplication, err error) error {
	klog.FromContext(ctx).Error(err, "Replication failed", "role", vr.Spec.Role)
	if vr.Spec.Role == agentv1alpha1.ReplicationRoleSource && r.Metrics != nil {
		r.Metrics.replications.WithLabelValues(resultFailure).Inc()
	}
	return r.updateStatus(ctx, client.ObjectKeyFromObject(vr), func(s *agentv1alpha1.VolumeReplicationStatus) {
		s.Phase = agentv1alpha1.VolumeReplicationFailed
		s.Message = truncate(err.Error())
	})
}

// updateStatus applies mutate to a fresh copy of the object's status.
func (r *VolumeReplicationReconciler) updateStatus(ctx context.Context, key types.NamespacedName, mutate func(*agentv1alpha1.VolumeReplicationStatus)) error {
	return retry.RetryOnConflict(retry.DefaultBackoff, func() error {
		vr := &agentv1alpha1.VolumeReplication{}
		if err := r.Reader.Get(ctx, key, vr); err != nil {
			return err
		}
		mutate(&vr.Status)
		vr.Status.ObservedGeneration = vr.Generation
		return r.Client.Status().Update(ctx, vr)
	})
}

func (r *VolumeReplicationReconciler) stopWorker(key types.NamespacedName) {
	r.mu.Lock()
	w := r.workers[key]
	delete(r.workers, key)
	r.mu.Unlock()
	if w != nil {
		w.cancel()
		<-w.done
	}
}

func (r *VolumeReplicationReconciler) stopAll(key types.NamespacedName) {
	r.stopWorker(key)
	r.mu.Lock()
	delete(r.verified, key)
	h := r.receivers[key]
	delete(r.receivers, key)
	rt := r.router
	r.mu.Unlock()
	if h != nil {
		h.stop(rt)
		if r.Metrics != nil {
			r.Metrics.active.WithLabelValues(roleTarget).Dec()
		}
	}
}

func truncate(s string) string {
	if len(s) > 4000 {
		return s[:4000] + "…"
	}
	return s
}
