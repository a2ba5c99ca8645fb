package controller

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
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
	// PortMin and PortMax bound the receivers' ports.
	PortMin, PortMax int
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
)

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

type receiverHandle struct {
	endpoint string
	listener *transport.Listener
	recv     *rsync.Receiver
	cancel   context.CancelFunc
	path     string
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
}

// ---- target ----

func (r *VolumeReplicationReconciler) reconcileTarget(ctx context.Context, vr *agentv1alpha1.VolumeReplication) (ctrl.Result, error) {
	log := klog.FromContext(ctx)
	key := client.ObjectKeyFromObject(vr)
	r.mu.Lock()
	h := r.receivers[key]
	r.mu.Unlock()
	if h == nil {
		path, err := r.targetPath(ctx, vr)
		if err != nil {
			return ctrl.Result{}, r.fail(ctx, vr, err)
		}
		tlsCfg, err := r.tlsConfig(ctx, vr, certs.RoleTarget)
		if err != nil {
			return ctrl.Result{}, r.fail(ctx, vr, err)
		}
		l, err := r.listen(vr, tlsCfg)
		if err != nil {
			return ctrl.Result{}, err
		}
		l.OnReject = func(remote net.Addr, err error) {
			if r.Metrics != nil {
				r.Metrics.rejected.Inc()
			}
			log.Info("Rejected replication connection", "remote", remote.String(), "err", err)
		}
		counter := &transport.Counter{}
		h = &receiverHandle{
			listener: l,
			recv:     &rsync.Receiver{DestDir: path, RsyncPath: r.Config.RsyncPath, Counter: counter},
			path:     path,
			endpoint: net.JoinHostPort(r.Config.AdvertiseHost, strconv.Itoa(l.Addr().(*net.TCPAddr).Port)),
		}
		rctx, cancel := context.WithCancel(klog.NewContext(context.Background(), log))
		h.cancel = cancel
		r.mu.Lock()
		if r.receivers == nil {
			r.receivers = map[types.NamespacedName]*receiverHandle{}
		}
		r.receivers[key] = h
		r.mu.Unlock()
		if r.Metrics != nil {
			r.Metrics.active.WithLabelValues(roleTarget).Inc()
		}
		go r.serve(rctx, h, counter)
		log.Info("Receiver listening", "endpoint", h.endpoint, "path", path)
	}
	if vr.Status.Phase == agentv1alpha1.VolumeReplicationListening && vr.Status.Endpoint == h.endpoint {
		return ctrl.Result{}, nil
	}
	endpoint := h.endpoint
	return ctrl.Result{}, r.updateStatus(ctx, key, func(s *agentv1alpha1.VolumeReplicationStatus) {
		s.Phase = agentv1alpha1.VolumeReplicationListening
		s.Endpoint = endpoint
		if s.StartTime == nil {
			now := metav1.NewTime(r.Clock.Now())
			s.StartTime = &now
		}
		meta.SetStatusCondition(&s.Conditions, metav1.Condition{Type: agentv1alpha1.ConditionReceiverReady, Status: metav1.ConditionTrue, Reason: "Listening", Message: "receiver listens on " + endpoint})
	})
}

// serve accepts authenticated connections and serves them one at a time:
// two transfers never write into the same volume concurrently.
func (r *VolumeReplicationReconciler) serve(ctx context.Context, h *receiverHandle, counter *transport.Counter) {
	log := klog.FromContext(ctx)
	var mu sync.Mutex
	for {
		c, err := h.listener.Accept()
		if err != nil {
			return
		}
		go func() {
			mu.Lock()
			defer mu.Unlock()
			before := counter.Sent.Load()
			err := h.recv.ServeConn(ctx, c)
			if r.Metrics != nil {
				r.Metrics.wireBytes.WithLabelValues(roleTarget).Add(float64(counter.Sent.Load() - before))
			}
			if err != nil && ctx.Err() == nil {
				log.Info("Replication transfer failed on the receiving side", "err", err, "diskFull", rsync.IsDiskFull(err))
			}
		}()
	}
}

func (r *VolumeReplicationReconciler) listen(vr *agentv1alpha1.VolumeReplication, cfg *tls.Config) (*transport.Listener, error) {
	ports := []int{int(vr.Spec.ListenPort)}
	if vr.Spec.ListenPort == 0 {
		ports = ports[:0]
		for p := r.Config.PortMin; p <= r.Config.PortMax && p > 0; p++ {
			ports = append(ports, p)
		}
		if len(ports) == 0 {
			ports = []int{0}
		}
	}
	var lastErr error
	for _, p := range ports {
		l, err := transport.Listen(net.JoinHostPort(r.Config.ListenHost, strconv.Itoa(p)), cfg)
		if err == nil {
			return l, nil
		}
		lastErr = err
	}
	return nil, fmt.Errorf("no free receiver port: %w", lastErr)
}

// targetPath validates that the claim was provisioned for this migration and
// its volume lies under a configured target root, and returns the directory
// as the agent sees it (created when missing).
func (r *VolumeReplicationReconciler) targetPath(ctx context.Context, vr *agentv1alpha1.VolumeReplication) (string, error) {
	pvc, pv, err := r.claimAndVolume(ctx, vr)
	if err != nil {
		return "", err
	}
	if got := pvc.Labels[provision.LabelMigrationUID]; got != vr.Spec.MigrationUID {
		return "", fmt.Errorf("target claim %s was not provisioned for migration %s (label %s=%q)", pvc.Name, vr.Spec.MigrationUID, provision.LabelMigrationUID, got)
	}
	p, err := provision.TargetPath(pv)
	if err != nil {
		return "", err
	}
	if !underAny(p, r.Config.TargetRoots) {
		return "", fmt.Errorf("target volume path %s is not under a configured target root %v", p, r.Config.TargetRoots)
	}
	full := filepath.Join(r.Config.HostRoot, p)
	if err := os.MkdirAll(full, 0o755); err != nil {
		return "", fmt.Errorf("creating target directory: %w", err)
	}
	if real, err := filepath.EvalSymlinks(full); err != nil || real != filepath.Clean(full) {
		return "", fmt.Errorf("target directory %s resolves elsewhere (%s, %v)", full, real, err)
	}
	return full, nil
}

func underAny(p string, roots []string) bool {
	p = filepath.Clean(p)
	for _, root := range roots {
		rel, err := filepath.Rel(filepath.Clean(root), p)
		if err == nil && rel != "." && rel != ".." && !strings.HasPrefix(rel, "../") {
			return true
		}
	}
	return false
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
	sess, err := r.session(ctx, vr)
	if err != nil {
		if ctx.Err() == nil {
			_ = r.fail(ctx, vr, err)
		}
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
	var lastProgress time.Time
	return engine.NewSession(engine.Config{
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
			if p.Err != nil || p.Pass == engine.PassPreVerify {
				// A pre-freeze verification changes neither the phase nor
				// the keep-warm schedule.
				return
			}
			now := metav1.NewTime(r.Clock.Now())
			_ = r.updateStatus(ctx, key, func(s *agentv1alpha1.VolumeReplicationStatus) {
				applyPass(s, p)
				s.LastPassTime = &now
			})
		},
		OnProgress: func(_ engine.Pass, _ int, p rsync.Progress) {
			if r.Clock.Since(lastProgress) < r.Config.ProgressInterval || p.Percent <= 0 {
				return
			}
			lastProgress = r.Clock.Now()
			_ = r.updateStatus(ctx, key, func(s *agentv1alpha1.VolumeReplicationStatus) {
				s.BytesTotal = p.Bytes * 100 / int64(p.Percent)
				if p.TotalFiles > 0 {
					s.Files = p.TotalFiles
				}
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

// applyPass folds a finished pass into the status.
func applyPass(s *agentv1alpha1.VolumeReplicationStatus, p engine.PassResult) {
	s.BytesSent += p.WireSent
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
			return "", fmt.Errorf("volume %s is not node-local: spec.podName is needed to find its mount", pv.Name)
		}
		pod := &corev1.Pod{}
		if err := r.Reader.Get(ctx, types.NamespacedName{Namespace: vr.Namespace, Name: vr.Spec.PodName}, pod); err != nil {
			return "", fmt.Errorf("getting pod %s: %w", vr.Spec.PodName, err)
		}
		if pod.Spec.NodeName != r.Config.NodeName {
			return "", fmt.Errorf("pod %s runs on node %q, not on %q", pod.Name, pod.Spec.NodeName, r.Config.NodeName)
		}
		podUID = string(pod.UID)
	}
	p, err := provision.SourcePath(pv, podUID, r.Config.KubeletRoot)
	if err != nil {
		return "", err
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

func (r *VolumeReplicationReconciler) claimAndVolume(ctx context.Context, vr *agentv1alpha1.VolumeReplication) (*corev1.PersistentVolumeClaim, *corev1.PersistentVolume, error) {
	pvc := &corev1.PersistentVolumeClaim{}
	if err := r.Reader.Get(ctx, types.NamespacedName{Namespace: vr.Namespace, Name: vr.Spec.ClaimName}, pvc); err != nil {
		return nil, nil, fmt.Errorf("getting claim %s: %w", vr.Spec.ClaimName, err)
	}
	if pvc.Spec.VolumeName == "" {
		return nil, nil, fmt.Errorf("claim %s is not bound", pvc.Name)
	}
	pv := &corev1.PersistentVolume{}
	if err := r.Reader.Get(ctx, types.NamespacedName{Name: pvc.Spec.VolumeName}, pv); err != nil {
		return nil, nil, fmt.Errorf("getting volume %s: %w", pvc.Spec.VolumeName, err)
	}
	if ref := pv.Spec.ClaimRef; ref == nil || ref.Namespace != pvc.Namespace || ref.Name != pvc.Name {
		return nil, nil, fmt.Errorf("volume %s is not bound to claim %s/%s", pv.Name, pvc.Namespace, pvc.Name)
	}
	return pvc, pv, nil
}

func (r *VolumeReplicationReconciler) tlsConfig(ctx context.Context, vr *agentv1alpha1.VolumeReplication, role certs.Role) (*tls.Config, error) {
	sec := &corev1.Secret{}
	if err := r.Reader.Get(ctx, types.NamespacedName{Namespace: vr.Namespace, Name: vr.Spec.TLSSecretRef.Name}, sec); err != nil {
		return nil, fmt.Errorf("getting TLS secret %s: %w", vr.Spec.TLSSecretRef.Name, err)
	}
	creds, err := certs.CredentialsFromSecretData(sec.Data, role)
	if err != nil {
		return nil, fmt.Errorf("TLS secret %s: %w", sec.Name, err)
	}
	return certs.TLSConfig(creds, role, vr.Spec.MigrationUID, r.Clock.Now)
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
		// Remove the partial copy; only from a volume provisioned for
		// this migration under a target root (targetPath checks both).
		if p, err := r.targetPath(ctx, vr); err == nil {
			if err := emptyDir(p); err != nil {
				return fmt.Errorf("removing partial target data: %w", err)
			}
			msg = "aborted; partial target data removed"
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

func emptyDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		errs = append(errs, os.RemoveAll(filepath.Join(dir, e.Name())))
	}
	return errors.Join(errs...)
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
	r.mu.Unlock()
	if h != nil {
		h.cancel()
		_ = h.listener.Close()
		_ = h.recv.Close()
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
