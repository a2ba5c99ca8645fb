package labnode

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
)

// Retries of a deletion the API server did not take (one restarting).
const (
	deleteRetry    = 100 * time.Millisecond
	maxDeleteRetry = 5 * time.Second
)

// confirmDeletion removes the object of a deleted pod once its processes
// have exited (stopped), as a kubelet does: its status manager deletes the
// pod with a grace period of 0 and the pod's UID as precondition only once
// every container stopped, so that no pod object is gone while its
// processes still run. The lab's kwok stages leave the removal of
// LabelRuntime pods to the runtime. It retries in the background until the
// API server takes it, the pod is gone or replaced, or ctx ends; a pod whose
// processes did not exit keeps its object (it stays Terminating).
func (r *Runtime) confirmDeletion(ctx context.Context, p *corev1.Pod, stopped bool) {
	if r.cfg.Client == nil {
		return
	}
	log := r.log.WithValues("pod", klog.KObj(p), "uid", p.UID)
	if !stopped {
		log.Error(nil, "Pod's processes did not exit: its deletion is not confirmed")
		return
	}
	r.mu.Lock()
	if r.deleting[p.UID] {
		r.mu.Unlock()
		return
	}
	r.deleting[p.UID] = true
	r.mu.Unlock()
	go func() {
		defer func() {
			r.mu.Lock()
			delete(r.deleting, p.UID)
			r.mu.Unlock()
		}()
		uid := p.UID
		opts := metav1.DeleteOptions{GracePeriodSeconds: new(int64), Preconditions: &metav1.Preconditions{UID: &uid}}
		wait := deleteRetry
		for {
			err := r.cfg.Client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, opts)
			switch {
			case err == nil:
				log.Info("Pod deletion confirmed", "sinceDeleted", time.Since(deletedAt(p)))
				return
			case apierrors.IsNotFound(err), apierrors.IsConflict(err):
				// Gone already, or a new pod of the same name (the UID
				// precondition failed).
				return
			}
			log.V(2).Info("Cannot confirm the pod's deletion yet", "err", err, "retryIn", wait)
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
			wait = min(2*wait, maxDeleteRetry)
		}
	}()
}

// deletedAt is when the pod was deleted: its deletionTimestamp is that
// instant plus the grace period.
func deletedAt(p *corev1.Pod) time.Time {
	at := p.DeletionTimestamp.Time
	if g := p.DeletionGracePeriodSeconds; g != nil {
		at = at.Add(-time.Duration(*g) * time.Second)
	}
	return at
}
