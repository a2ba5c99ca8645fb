package controller

import (
	"context"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	"github.com/livemigrate/livemigrate/agent/replication/engine"
	"github.com/livemigrate/livemigrate/agent/replication/transport"
	agentv1alpha1 "github.com/livemigrate/livemigrate/api/agent/v1alpha1"
)

// Config is what the reconciler needs from the agent's options.
type Config struct {
	// NodeName is this agent's node; other objects are ignored.
	NodeName string
	// SecretNamespace is the agent's own namespace: the credentials
	// Secrets are read from there only (see tlsConfig).
	SecretNamespace string
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
	Reader client.Reader
	Clock  clock.Clock
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
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get,namespace=livemigrate-system

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

// stopWorker cancels the source work of key and waits for it to end.
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

// stopAll stops the source work and the receiver of key and forgets its
// pre-freeze verification records.
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
		addActive(roleTarget, -1)
	}
}
