package controller

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/livemigrate/livemigrate/agent/replication/engine"
	"github.com/livemigrate/livemigrate/agent/replication/protocol"
	agentv1alpha1 "github.com/livemigrate/livemigrate/api/agent/v1alpha1"
	"github.com/livemigrate/livemigrate/internal/strutil"
)

// abort stops the object's work and reports Aborted; a target also removes
// the partial copy it received.
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
	if vr.Spec.Role == agentv1alpha1.ReplicationRoleSource {
		replicationDone(resultAborted)
	}
	klog.FromContext(ctx).Info("Replication aborted", "role", vr.Spec.Role)
	return r.updateStatus(ctx, key, func(s *agentv1alpha1.VolumeReplicationStatus) {
		s.Phase = agentv1alpha1.VolumeReplicationAborted
		s.Message = strutil.Truncate(msg, maxMessage)
		meta.RemoveStatusCondition(&s.Conditions, agentv1alpha1.ConditionReceiverReady)
	})
}

// fail reports the object Failed with err as its message.
func (r *VolumeReplicationReconciler) fail(ctx context.Context, vr *agentv1alpha1.VolumeReplication, err error) error {
	klog.FromContext(ctx).Error(err, "Replication failed", "role", vr.Spec.Role)
	if vr.Spec.Role == agentv1alpha1.ReplicationRoleSource {
		replicationDone(resultFailure)
	}
	reason := agentv1alpha1.ReasonError
	if protocol.IsSpaceError(err) {
		reason = agentv1alpha1.ReasonTargetVolumeTooSmall
	}
	return r.updateStatus(ctx, client.ObjectKeyFromObject(vr), func(s *agentv1alpha1.VolumeReplicationStatus) {
		s.Phase = agentv1alpha1.VolumeReplicationFailed
		s.Message = strutil.Truncate(err.Error(), maxMessage)
		meta.SetStatusCondition(&s.Conditions, metav1.Condition{Type: agentv1alpha1.ConditionFailed, Status: metav1.ConditionTrue,
			Reason: reason, Message: s.Message})
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

// setStatus is updateStatus for work that goes on, or ends, whatever came
// of the update: an update that failed is logged.
func (r *VolumeReplicationReconciler) setStatus(ctx context.Context, key types.NamespacedName, mutate func(*agentv1alpha1.VolumeReplicationStatus)) {
	if err := r.updateStatus(ctx, key, mutate); err != nil {
		klog.FromContext(ctx).Error(err, "Updating status")
	}
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

// maxMessage bounds the messages written into status.message (at most
// 4096 characters), conditions and events.
const maxMessage = 4000
