package controller

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
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
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/livemigrate/livemigrate/agent/replication/certs"
	"github.com/livemigrate/livemigrate/agent/replication/protocol"
	"github.com/livemigrate/livemigrate/agent/replication/provision"
	"github.com/livemigrate/livemigrate/agent/replication/rsync"
	"github.com/livemigrate/livemigrate/agent/replication/transport"
	agentv1alpha1 "github.com/livemigrate/livemigrate/api/agent/v1alpha1"
)

// RouteDomain ends the TLS server name of every route on the shared
// receiver port.
const RouteDomain = "replication.livemigrate.io"

// RouteServerName is the TLS server name (SNI) that routes a connection on
// the agent's shared receiver port to one replication. Both sides derive it
// from what both know, the migration UID and the claim name; the target
// also reports it in status.serverName. It is not a secret: the peer is
// authenticated by the migration's certificates, as on a port of its own.
func RouteServerName(migrationUID, claimName string) string {
	sum := sha256.Sum256([]byte(migrationUID + "/" + claimName))
	return hex.EncodeToString(sum[:16]) + "." + RouteDomain
}

type receiverHandle struct {
	endpoint string
	// serverName is the route on the shared listener; empty when the
	// receiver has a listener of its own (spec.listenPort).
	serverName string
	listener   *transport.Listener
	recv       *protocol.Receiver
	counter    *transport.Counter
	ctx        context.Context
	cancel     context.CancelFunc
	path       string
	// mu serializes the transfers: two never write into the same volume
	// concurrently.
	mu sync.Mutex
}

func (r *VolumeReplicationReconciler) reconcileTarget(ctx context.Context, vr *agentv1alpha1.VolumeReplication) (ctrl.Result, error) {
	key := client.ObjectKeyFromObject(vr)
	r.mu.Lock()
	h := r.receivers[key]
	r.mu.Unlock()
	if h == nil {
		var err error
		if h, err = r.startReceiver(ctx, vr); err != nil {
			return r.startFailed(ctx, vr, agentv1alpha1.ConditionReceiverReady, err)
		}
	}
	if vr.Status.Phase == agentv1alpha1.VolumeReplicationListening && vr.Status.Endpoint == h.endpoint && vr.Status.ServerName == h.serverName &&
		meta.IsStatusConditionTrue(vr.Status.Conditions, agentv1alpha1.ConditionReceiverReady) {
		return ctrl.Result{}, nil
	}
	endpoint, serverName := h.endpoint, h.serverName
	msg := "receiver listens on " + endpoint
	if serverName != "" {
		msg += " for TLS server name " + serverName
	}
	return ctrl.Result{}, r.updateStatus(ctx, key, func(s *agentv1alpha1.VolumeReplicationStatus) {
		s.Phase = agentv1alpha1.VolumeReplicationListening
		s.Endpoint, s.ServerName = endpoint, serverName
		if s.StartTime == nil {
			now := metav1.NewTime(r.Clock.Now())
			s.StartTime = &now
		}
		if strings.HasPrefix(s.Message, startRetryPrefix) {
			s.Message = ""
		}
		meta.SetStatusCondition(&s.Conditions, metav1.Condition{Type: agentv1alpha1.ConditionReceiverReady, Status: metav1.ConditionTrue,
			Reason: ReasonListening, Message: msg, LastTransitionTime: metav1.NewTime(r.Clock.Now())})
	})
}

// startReceiver checks the target volume and credentials and serves the
// replication: on the shared listener, or on its own port when
// spec.listenPort asks for one.
func (r *VolumeReplicationReconciler) startReceiver(ctx context.Context, vr *agentv1alpha1.VolumeReplication) (*receiverHandle, error) {
	log := klog.FromContext(ctx)
	path, err := r.targetPath(ctx, vr, true)
	if err != nil {
		return nil, err
	}
	tlsCfg, err := r.tlsConfig(ctx, vr, certs.RoleTarget)
	if err != nil {
		return nil, err
	}
	counter := &transport.Counter{}
	h := &receiverHandle{
		recv:    &protocol.Receiver{DestDir: path, Rsync: &rsync.Daemon{DestDir: path, RsyncPath: r.Config.RsyncPath}, Counter: counter},
		counter: counter,
		path:    path,
	}
	h.ctx, h.cancel = context.WithCancel(klog.NewContext(context.Background(), log))
	if vr.Spec.ListenPort != 0 {
		l, err := r.listenOwn(vr, tlsCfg)
		if err != nil {
			h.cancel()
			return nil, err
		}
		l.OnReject = func(remote net.Addr, err error) { r.rejected(log, remote, "", err) }
		h.listener = l
		h.endpoint = net.JoinHostPort(r.Config.AdvertiseHost, strconv.Itoa(l.Addr().(*net.TCPAddr).Port))
		go r.acceptLoop(h)
	} else {
		rt, err := r.sharedRouter()
		if err != nil {
			h.cancel()
			return nil, err
		}
		h.serverName = RouteServerName(vr.Spec.MigrationUID, vr.Spec.ClaimName)
		if err := rt.Add(h.serverName, tlsCfg, func(c *tls.Conn) { r.serveConn(h, c) }); err != nil {
			h.cancel()
			return nil, terminalStart(ReasonRouteConflict, err, "another replication of the same migration and claim is served by this agent")
		}
		h.endpoint = net.JoinHostPort(r.Config.AdvertiseHost, strconv.Itoa(rt.Addr().(*net.TCPAddr).Port))
	}
	key := client.ObjectKeyFromObject(vr)
	r.mu.Lock()
	if r.receivers == nil {
		r.receivers = map[types.NamespacedName]*receiverHandle{}
	}
	r.receivers[key] = h
	r.mu.Unlock()
	addActive(roleTarget, 1)
	log.Info("Receiver listening", "endpoint", h.endpoint, "serverName", h.serverName, "path", path)
	return h, nil
}

// stop ends the receiver: no new connection reaches it, transfers in
// progress are cancelled.
func (h *receiverHandle) stop(router *transport.Router) {
	if h.serverName != "" && router != nil {
		router.Remove(h.serverName)
	}
	if h.listener != nil {
		_ = h.listener.Close()
	}
	h.cancel()
	_ = h.recv.Close()
}

// acceptLoop serves a receiver's own listener.
func (r *VolumeReplicationReconciler) acceptLoop(h *receiverHandle) {
	for {
		c, err := h.listener.Accept()
		if err != nil {
			return
		}
		go r.serveConn(h, c)
	}
}

// serveConn serves one authenticated connection, after the transfers of the
// same replication that came before it.
func (r *VolumeReplicationReconciler) serveConn(h *receiverHandle, c *tls.Conn) {
	log := klog.FromContext(h.ctx)
	h.mu.Lock()
	defer h.mu.Unlock()
	before := h.counter.Sent.Load()
	err := h.recv.ServeConn(h.ctx, c)
	addWireBytes(roleTarget, h.counter.Sent.Load()-before)
	if err != nil && h.ctx.Err() == nil {
		log.Info("Replication transfer failed on the receiving side", "err", err, "diskFull", protocol.IsDiskFull(err))
	}
}

func (r *VolumeReplicationReconciler) rejected(log klog.Logger, remote net.Addr, serverName string, err error) {
	rejectedConnection()
	log.Info("Rejected replication connection", "remote", remote.String(), "serverName", serverName, "err", err)
}

// sharedRouter returns the agent's shared receiver listener, listening on
// the configured port at first use.
func (r *VolumeReplicationReconciler) sharedRouter() (*transport.Router, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.router != nil {
		return r.router, nil
	}
	addr := net.JoinHostPort(r.Config.ListenHost, strconv.Itoa(r.Config.Port))
	rt, err := transport.ListenRouter(addr)
	if err != nil {
		return nil, transientStart(ReasonPortUnavailable, err,
			fmt.Sprintf("free port %d on node %s or give the agent another --replication-port", r.Config.Port, r.Config.NodeName))
	}
	log := klog.Background().WithName("replication").WithValues("listener", rt.Addr().String())
	rt.OnReject = func(remote net.Addr, serverName string, err error) { r.rejected(log, remote, serverName, err) }
	rt.OnAcceptError = func(err error, pause time.Duration) {
		log.Error(err, "Accepting a replication connection failed; retrying", "pause", pause)
	}
	go func() { _ = rt.Serve() }()
	log.Info("Shared replication listener started")
	r.router = rt
	return rt, nil
}

// listenOwn listens on the port spec.listenPort names.
func (r *VolumeReplicationReconciler) listenOwn(vr *agentv1alpha1.VolumeReplication, cfg *tls.Config) (*transport.Listener, error) {
	l, err := transport.Listen(net.JoinHostPort(r.Config.ListenHost, strconv.Itoa(int(vr.Spec.ListenPort))), cfg)
	if err != nil {
		return nil, transientStart(ReasonPortUnavailable, err,
			fmt.Sprintf("free port %d on node %s, or leave spec.listenPort empty to use the agent's shared replication port", vr.Spec.ListenPort, r.Config.NodeName))
	}
	return l, nil
}

// targetPath validates that the claim was provisioned for this migration and
// its volume lies under a configured target root, and returns the directory
// as the agent sees it (created when missing and create is set).
func (r *VolumeReplicationReconciler) targetPath(ctx context.Context, vr *agentv1alpha1.VolumeReplication, create bool) (string, error) {
	pvc, pv, err := r.claimAndVolume(ctx, vr)
	if err != nil {
		return "", err
	}
	if got := pvc.Labels[provision.LabelMigrationUID]; got != vr.Spec.MigrationUID {
		return "", terminalStart(ReasonClaimNotProvisioned,
			fmt.Errorf("target claim %s was not provisioned for migration %s (label %s=%q)", pvc.Name, vr.Spec.MigrationUID, provision.LabelMigrationUID, got),
			"the migration writes only into a claim it pre-provisioned; delete the conflicting claim or move to another namespace or cluster")
	}
	p, err := provision.TargetPath(pv)
	if err != nil {
		return "", terminalStart(ReasonUnsupportedVolume, err, "target volumes must be local or hostPath volumes")
	}
	if !underAny(p, r.Config.TargetRoots) {
		return "", terminalStart(ReasonPathNotAllowed,
			fmt.Errorf("target volume path %s is not under a configured target root %v", p, r.Config.TargetRoots),
			"provision target volumes under one of them or add the directory to the agent's --replication-target-roots")
	}
	full := filepath.Join(r.Config.HostRoot, p)
	if create {
		if err := os.MkdirAll(full, 0o755); err != nil {
			return "", terminalStart(ReasonPathError, fmt.Errorf("creating target directory: %w", err),
				"check that the agent can write under the target root on this node (permissions, read-only or full file system)")
		}
	}
	if real, err := filepath.EvalSymlinks(full); err != nil || real != filepath.Clean(full) {
		if !create && errors.Is(err, fs.ErrNotExist) {
			return full, nil
		}
		return "", terminalStart(ReasonPathUnsafe, fmt.Errorf("target directory %s resolves elsewhere (%s, %v)", full, real, err),
			"remove the symbolic link from the target volume's path")
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

// removeTargetDir removes a target volume's directory (checked by
// targetPath) and everything in it, within its parent directory only:
// symbolic links are removed, never followed.
func removeTargetDir(dir string) error {
	fi, err := os.Lstat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory; left alone", dir)
	}
	root, err := os.OpenRoot(filepath.Dir(dir))
	if err != nil {
		return err
	}
	defer root.Close()
	return root.RemoveAll(filepath.Base(dir))
}

// claimAndVolume reads the object's claim and its bound volume.
func (r *VolumeReplicationReconciler) claimAndVolume(ctx context.Context, vr *agentv1alpha1.VolumeReplication) (*corev1.PersistentVolumeClaim, *corev1.PersistentVolume, error) {
	pvc := &corev1.PersistentVolumeClaim{}
	if err := r.Reader.Get(ctx, types.NamespacedName{Namespace: vr.Namespace, Name: vr.Spec.ClaimName}, pvc); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil, transientStart(ReasonClaimNotFound, fmt.Errorf("getting claim %s: %w", vr.Spec.ClaimName, err),
				fmt.Sprintf("the claim must exist in namespace %s of this cluster", vr.Namespace))
		}
		return nil, nil, fmt.Errorf("getting claim %s: %w", vr.Spec.ClaimName, err)
	}
	if pvc.Spec.VolumeName == "" {
		return nil, nil, transientStart(ReasonClaimNotBound, fmt.Errorf("claim %s is not bound", pvc.Name),
			"waiting for it to be bound to a PersistentVolume")
	}
	pv := &corev1.PersistentVolume{}
	if err := r.Reader.Get(ctx, types.NamespacedName{Name: pvc.Spec.VolumeName}, pv); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil, transientStart(ReasonVolumeNotFound, fmt.Errorf("getting volume %s: %w", pvc.Spec.VolumeName, err),
				"the claim's PersistentVolume must exist")
		}
		return nil, nil, fmt.Errorf("getting volume %s: %w", pvc.Spec.VolumeName, err)
	}
	if ref := pv.Spec.ClaimRef; ref == nil || ref.Namespace != pvc.Namespace || ref.Name != pvc.Name {
		return nil, nil, terminalStart(ReasonClaimVolumeMismatch, fmt.Errorf("volume %s is not bound to claim %s/%s", pv.Name, pvc.Namespace, pvc.Name),
			"the claim and its volume must name each other")
	}
	return pvc, pv, nil
}

// tlsConfig builds the mutual-TLS configuration of one side from the
// object's Secret. The Secret is read from the agent's own namespace only
// (Config.SecretNamespace, where tenants have no rights), and used only
// when it is labelled for the object's migration: its UID and the
// namespace of its VolumeReplications. Anything else is refused, so that
// an object cannot make the agent use credentials minted for another
// migration, or read a Secret of any other namespace.
func (r *VolumeReplicationReconciler) tlsConfig(ctx context.Context, vr *agentv1alpha1.VolumeReplication, role certs.Role) (*tls.Config, error) {
	ref := vr.Spec.TLSSecretRef
	ns := r.Config.SecretNamespace
	if ref.Namespace != "" && ref.Namespace != ns {
		return nil, terminalStart(ReasonSecretNotAllowed,
			fmt.Errorf("spec.tlsSecretRef.namespace %q is not the agent's namespace %s", ref.Namespace, ns),
			"the agent reads credentials only from its own namespace (--replication-secret-namespace): the migration's controller must write them to "+ns+" (the descheduler's --agent-namespace or --agent-namespace-for of this cluster)")
	}
	sec := &corev1.Secret{}
	if err := r.Reader.Get(ctx, types.NamespacedName{Namespace: ns, Name: ref.Name}, sec); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, transientStart(ReasonSecretNotFound, fmt.Errorf("getting TLS secret %s/%s: %w", ns, ref.Name, err),
				"the migration's controller creates it in the agent's namespace "+ns+"; check that it can write Secrets there (the descheduler's --agent-namespace must name it)")
		}
		return nil, fmt.Errorf("getting TLS secret %s/%s: %w", ns, ref.Name, err)
	}
	if uid, mns := sec.Labels[certs.LabelMigrationUID], sec.Labels[certs.LabelMigrationNamespace]; uid != vr.Spec.MigrationUID || mns != vr.Namespace {
		return nil, terminalStart(ReasonSecretNotForMigration,
			fmt.Errorf("TLS secret %s/%s is labelled for migration %q of namespace %q, not for migration %q of namespace %q",
				ns, sec.Name, uid, mns, vr.Spec.MigrationUID, vr.Namespace),
			"its credentials are not used; recreate the migration so that its own credentials are minted")
	}
	creds, err := certs.CredentialsFromSecretData(sec.Data, role)
	if err != nil {
		return nil, terminalStart(ReasonSecretInvalid, fmt.Errorf("TLS secret %s: %w", sec.Name, err), "recreate the migration so that its credentials are minted again")
	}
	cfg, err := certs.TLSConfig(creds, role, vr.Spec.MigrationUID, r.Clock.Now)
	if err != nil {
		return nil, terminalStart(ReasonSecretInvalid, fmt.Errorf("TLS secret %s: %w", sec.Name, err), "recreate the migration so that its credentials are minted again")
	}
	return cfg, nil
}
