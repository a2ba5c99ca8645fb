package controller

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/livemigrate/livemigrate/agent/replication/certs"
	"github.com/livemigrate/livemigrate/agent/replication/engine"
	"github.com/livemigrate/livemigrate/agent/replication/protocol"
	"github.com/livemigrate/livemigrate/agent/replication/provision"
	"github.com/livemigrate/livemigrate/agent/replication/transport"
	agentv1alpha1 "github.com/livemigrate/livemigrate/api/agent/v1alpha1"
	"github.com/livemigrate/livemigrate/internal/strutil"
)

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
			observeRetry(rt)
			msg := fmt.Sprintf("retrying %s pass of round %d (attempt %d of %d failed) in %s: %v", rt.Pass, rt.Round, rt.Attempt, rt.Attempts, rt.Wait, rt.Err)
			klog.FromContext(ctx).Info("Retrying a failed pre-copy pass", "pass", rt.Pass, "round", rt.Round, "attempt", rt.Attempt, "wait", rt.Wait, "err", rt.Err)
			if r.Recorder != nil {
				r.Recorder.Eventf(vr, nil, corev1.EventTypeWarning, ReasonPassRetried, "Replicate", "%s", strutil.Truncate(msg, maxMessage))
			}
			r.setStatus(ctx, key, func(s *agentv1alpha1.VolumeReplicationStatus) { s.Message = strutil.Truncate(msg, maxMessage) })
		},
		OnPass: func(p engine.PassResult) {
			observePass(p)
			rest := prog.ended(p.WireSent, p.Err == nil)
			if p.Err != nil || p.Pass == engine.PassPreVerify {
				// A pre-freeze verification changes neither the phase nor
				// the keep-warm schedule.
				return
			}
			now := metav1.NewTime(r.Clock.Now())
			r.setStatus(ctx, key, func(s *agentv1alpha1.VolumeReplicationStatus) {
				applyPass(s, p, rest)
				s.LastPassTime = &now
			})
		},
		OnProgress: func(pass engine.Pass, _ int, p protocol.Progress) {
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
