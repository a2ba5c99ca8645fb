package labnode

import (
	"context"
	"errors"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
)

// Waiting reasons a kubelet reports for a container it could not start, as
// the runtime reports them (kubelet's pkg/kubelet/images and
// pkg/kubelet/container: ErrImagePull, ImagePullBackOff,
// CreateContainerError).
const (
	ReasonErrImagePull         = "ErrImagePull"
	ReasonImagePullBackOff     = "ImagePullBackOff"
	ReasonCreateContainerError = "CreateContainerError"
)

// Start retries back off like the kubelet's image pull back-off: 10 s,
// doubled after every failure, at most 5 minutes.
const (
	initialBackOff = 10 * time.Second
	maxBackOff     = 5 * time.Minute
)

// pullError is a checkpoint image that could not be fetched from the
// registry (the kubelet's ErrImagePull), as opposed to one that was fetched
// but could not be restored (CreateContainerError).
type pullError struct{ err error }

func (e *pullError) Error() string { return e.err.Error() }
func (e *pullError) Unwrap() error { return e.err }

// startFailure is a pod whose containers could not be started: the next
// attempt is not before retryAt.
type startFailure struct {
	backOff time.Duration
	retryAt time.Time
	timer   *time.Timer
	// pod is the newest version of the pod seen while backing off.
	pod *corev1.Pod
}

// failed records that starting p failed with err, reports it in the pod's
// status as a kubelet does (container waiting with ErrImagePull or
// CreateContainerError, the error as message) and schedules the next
// attempt after the back-off.
func (r *Runtime) failed(ctx context.Context, p *corev1.Pod, container string, err error) {
	reason := ReasonCreateContainerError
	if pe := (*pullError)(nil); errors.As(err, &pe) {
		reason = ReasonErrImagePull
	}
	r.mu.Lock()
	f := r.failures[p.UID]
	if f == nil {
		f = &startFailure{}
		r.failures[p.UID] = f
	}
	if f.backOff == 0 {
		f.backOff = initialBackOff
	} else {
		f.backOff = min(2*f.backOff, maxBackOff)
	}
	f.retryAt = time.Now().Add(f.backOff)
	f.pod = p
	if f.timer != nil {
		f.timer.Stop()
	}
	uid := p.UID
	f.timer = time.AfterFunc(f.backOff, func() { r.retry(ctx, uid) })
	backOff := f.backOff
	r.mu.Unlock()
	r.log.Error(err, "Cannot run pod", "pod", klog.KObj(p), "container", container, "reason", reason, "retryIn", backOff)
	if rerr := r.reportWaiting(ctx, p, container, reason, err.Error()); rerr != nil && ctx.Err() == nil {
		r.log.Error(rerr, "Cannot report the pod's start failure", "pod", klog.KObj(p))
	}
}

// backingOff tells whether p waits for its next start attempt; it keeps p
// as the version to retry with.
func (r *Runtime) backingOff(p *corev1.Pod) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	f := r.failures[p.UID]
	if f == nil || !time.Now().Before(f.retryAt) {
		return false
	}
	f.pod = p
	return true
}

// retry makes the next start attempt of a pod that failed to start.
func (r *Runtime) retry(ctx context.Context, uid types.UID) {
	r.mu.Lock()
	f := r.failures[uid]
	var p *corev1.Pod
	if f != nil {
		p = f.pod
	}
	r.mu.Unlock()
	if p == nil || ctx.Err() != nil {
		return
	}
	r.onPod(ctx, p)
}

// forget drops the start failures of a pod (started, or gone).
func (r *Runtime) forget(uid types.UID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if f := r.failures[uid]; f != nil {
		if f.timer != nil {
			f.timer.Stop()
		}
		delete(r.failures, uid)
	}
}

// reportWaiting writes the status a kubelet writes for a pod whose
// container could not be started: phase Pending, not ready, the container
// waiting with reason and message (ErrImagePull while the pull is retried
// is ImagePullBackOff on later attempts, as the kubelet reports it).
func (r *Runtime) reportWaiting(ctx context.Context, p *corev1.Pod, container, reason, message string) error {
	if r.cfg.Client == nil || p.Labels[LabelRuntime] != RuntimeName {
		return nil
	}
	cur, err := r.current(ctx, p)
	if err != nil {
		return err
	}
	for _, cs := range cur.Status.ContainerStatuses {
		if cs.Name == container && cs.State.Waiting != nil && (cs.State.Waiting.Reason == ReasonErrImagePull || cs.State.Waiting.Reason == ReasonImagePullBackOff) && reason == ReasonErrImagePull {
			reason = ReasonImagePullBackOff
		}
	}
	now := metav1.Now()
	st := &cur.Status
	st.Phase = corev1.PodPending
	st.HostIP, st.HostIPs = "127.0.0.1", []corev1.HostIP{{IP: "127.0.0.1"}}
	setCondition(st, corev1.PodScheduled, corev1.ConditionTrue, "", "", now)
	setCondition(st, corev1.PodInitialized, corev1.ConditionTrue, "", "", now)
	setCondition(st, corev1.ContainersReady, corev1.ConditionFalse, "ContainersNotReady", "containers with unready status: ["+container+"]", now)
	setCondition(st, corev1.PodReady, corev1.ConditionFalse, "ContainersNotReady", "containers with unready status: ["+container+"]", now)
	st.ContainerStatuses = nil
	for _, c := range p.Spec.Containers {
		cs := corev1.ContainerStatus{Name: c.Name, Image: c.Image, Started: new(bool),
			State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}}}
		if c.Name == container {
			cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: reason, Message: message}
		}
		st.ContainerStatuses = append(st.ContainerStatuses, cs)
	}
	_, err = r.cfg.Client.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, cur, metav1.UpdateOptions{})
	return err
}

func setCondition(st *corev1.PodStatus, t corev1.PodConditionType, s corev1.ConditionStatus, reason, message string, now metav1.Time) {
	for i := range st.Conditions {
		if st.Conditions[i].Type == t {
			if st.Conditions[i].Status != s {
				st.Conditions[i].LastTransitionTime = now
			}
			st.Conditions[i].Status, st.Conditions[i].Reason, st.Conditions[i].Message = s, reason, message
			return
		}
	}
	st.Conditions = append(st.Conditions, corev1.PodCondition{Type: t, Status: s, Reason: reason, Message: message, LastTransitionTime: now})
}
