package controller

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	agentv1alpha1 "github.com/livemigrate/livemigrate/api/agent/v1alpha1"
	"github.com/livemigrate/livemigrate/internal/strutil"
)

// StartReason is why a receiver or sender could not start: the reason of
// its ReceiverReady or SenderReady condition (and a metric label).
type StartReason string

// Start failure reasons. Transient ones are retried with backoff for
// Config.StartRetryTimeout, then fail the replication; terminal ones fail
// it at once.
const (
	// Transient.
	ReasonClaimNotFound   StartReason = "ClaimNotFound"
	ReasonClaimNotBound   StartReason = "ClaimNotBound"
	ReasonVolumeNotFound  StartReason = "VolumeNotFound"
	ReasonPodNotFound     StartReason = "PodNotFound"
	ReasonSecretNotFound  StartReason = "SecretNotFound"
	ReasonPortUnavailable StartReason = "PortUnavailable"
	ReasonAPIError        StartReason = "APIError"
	// Terminal.
	ReasonClaimNotProvisioned StartReason = "ClaimNotProvisioned"
	ReasonClaimVolumeMismatch StartReason = "ClaimVolumeMismatch"
	ReasonUnsupportedVolume   StartReason = "UnsupportedVolume"
	ReasonPathNotAllowed      StartReason = "PathNotAllowed"
	ReasonPathUnsafe          StartReason = "PathUnsafe"
	ReasonPathError           StartReason = "PathError"
	ReasonPodOnOtherNode      StartReason = "PodOnOtherNode"
	ReasonSecretInvalid       StartReason = "SecretInvalid"
	// The object names a Secret outside the agent's namespace, or one not
	// labelled for its migration.
	ReasonSecretNotAllowed      StartReason = "SecretNotAllowed"
	ReasonSecretNotForMigration StartReason = "SecretNotForMigration"
	ReasonRouteConflict         StartReason = "RouteConflict"
	ReasonStartFailed           StartReason = "StartFailed"
)

// Reasons of a started receiver or sender.
const (
	ReasonListening = "Listening"
	ReasonStarted   = "Started"
)

// StartError is a receiver or sender that cannot start: the condition
// reason, whether it may clear by itself, and what to do about it.
type StartError struct {
	Reason    StartReason
	Transient bool
	// Action tells the user what to do; part of the message.
	Action string
	Err    error
}

func (e *StartError) Error() string {
	if e.Action == "" {
		return e.Err.Error()
	}
	return e.Err.Error() + "; " + e.Action
}

func (e *StartError) Unwrap() error { return e.Err }

func transientStart(reason StartReason, err error, action string) error {
	return &StartError{Reason: reason, Transient: true, Err: err, Action: action}
}

func terminalStart(reason StartReason, err error, action string) error {
	return &StartError{Reason: reason, Err: err, Action: action}
}

// AsStartError returns err as a StartError; an error that is not one is an
// API error (transient) or else a terminal StartFailed.
func AsStartError(err error) *StartError {
	var se *StartError
	if errors.As(err, &se) {
		return se
	}
	var status apierrors.APIStatus
	if errors.As(err, &status) {
		return &StartError{Reason: ReasonAPIError, Transient: true, Err: err, Action: "the agent retries"}
	}
	return &StartError{Reason: ReasonStartFailed, Err: err}
}

// IsStartError reports whether err is (or wraps) a StartError.
func IsStartError(err error) bool {
	var se *StartError
	return errors.As(err, &se)
}

// startBackoff is the wait before retrying a transient start failure that
// began `since` ago: half of it, between one and fifteen seconds.
func startBackoff(since time.Duration) time.Duration {
	return min(max(since/2, time.Second), 15*time.Second)
}

// startRetryPrefix begins status.message while a start is retried.
const startRetryPrefix = "not started yet, retrying: "

// startFailed reports a receiver (condType ReceiverReady) or sender
// (SenderReady) that could not start: a transient cause sets the condition
// to False with the reason and what to do, and asks to be retried after a
// backoff; a terminal cause, or a transient one that lasted
// StartRetryTimeout, fails the replication with that reason.
func (r *VolumeReplicationReconciler) startFailed(ctx context.Context, vr *agentv1alpha1.VolumeReplication, condType string, err error) (ctrl.Result, error) {
	log := klog.FromContext(ctx)
	se := AsStartError(err)
	role := roleSource
	if vr.Spec.Role == agentv1alpha1.ReplicationRoleTarget {
		role = roleTarget
	}
	startFailed(role, string(se.Reason))
	timeout := r.Config.StartRetryTimeout
	if timeout <= 0 {
		timeout = DefaultStartRetryTimeout
	}
	now := r.Clock.Now()
	var failed bool
	var since time.Duration
	var msg string
	uerr := r.updateStatus(ctx, client.ObjectKeyFromObject(vr), func(s *agentv1alpha1.VolumeReplicationStatus) {
		since = 0
		if c := meta.FindStatusCondition(s.Conditions, condType); c != nil && c.Status == metav1.ConditionFalse {
			since = now.Sub(c.LastTransitionTime.Time)
		}
		failed = !se.Transient || since >= timeout
		msg = se.Error()
		if se.Transient && failed {
			msg = fmt.Sprintf("%s (still failing after %s)", msg, since.Round(time.Second))
		}
		meta.SetStatusCondition(&s.Conditions, metav1.Condition{Type: condType, Status: metav1.ConditionFalse, Reason: string(se.Reason),
			Message: strutil.Truncate(msg, maxMessage), LastTransitionTime: metav1.NewTime(now)})
		if failed {
			s.Phase = agentv1alpha1.VolumeReplicationFailed
			s.Message = strutil.Truncate(msg, maxMessage)
			return
		}
		if s.Phase == "" {
			s.Phase = agentv1alpha1.VolumeReplicationPending
		}
		s.Message = strutil.Truncate(startRetryPrefix+msg, maxMessage)
	})
	if uerr != nil {
		return ctrl.Result{}, uerr
	}
	if failed {
		log.Error(err, "Replication cannot start", "role", vr.Spec.Role, "reason", se.Reason)
		if r.Recorder != nil {
			r.Recorder.Eventf(vr, nil, corev1.EventTypeWarning, ReasonNotStarted, "Start", "%s", strutil.Truncate(msg, maxMessage))
		}
		if vr.Spec.Role == agentv1alpha1.ReplicationRoleSource {
			replicationDone(resultFailure)
		}
		return ctrl.Result{}, nil
	}
	wait := startBackoff(since)
	log.Info("Replication cannot start yet; retrying", "role", vr.Spec.Role, "reason", se.Reason, "retryAfter", wait, "err", err)
	if since == 0 && r.Recorder != nil {
		r.Recorder.Eventf(vr, nil, corev1.EventTypeWarning, ReasonNotStarted, "Start", "%s", strutil.Truncate(startRetryPrefix+msg, maxMessage))
	}
	return ctrl.Result{RequeueAfter: wait}, nil
}
