package controller

import (
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/livemigrate/livemigrate/agent/restore"
	agentv1alpha1 "github.com/livemigrate/livemigrate/api/agent/v1alpha1"
	"github.com/livemigrate/livemigrate/internal/strutil"
)

// ConditionReady is True on a PodRestore when every checkpoint's pod is Ready.
const ConditionReady = "Ready"

// PodRestoreReconciler follows restored pods in the PodRestore's status, and
// releases the pods the restore webhook gated while their checkpoint images
// were being pushed: once the PodRestore records a checkpoint's images, it
// points the gated pod's containers at them and removes the
// agent.livemigrate.io/checkpoint-image scheduling gate, in one update.
type PodRestoreReconciler struct {
	Client   client.Client
	Recorder events.EventRecorder
	Clock    clock.PassiveClock
	// ClaimTTL frees a claim whose pod never appeared (its creation failed
	// after admission) so that the checkpoint can be consumed again.
	ClaimTTL time.Duration
}

// +kubebuilder:rbac:groups=agent.livemigrate.io,resources=podrestores,verbs=get;list;watch
// +kubebuilder:rbac:groups=agent.livemigrate.io,resources=podrestores/status,verbs=get;update;patch
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch;update
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile releases the gated pods whose checkpoint images are recorded,
// then updates the claims' phases and the PodRestore's phase.
func (r *PodRestoreReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	pr := &agentv1alpha1.PodRestore{}
	if err := r.Client.Get(ctx, req.NamespacedName, pr); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	log := klog.FromContext(ctx).WithValues("podRestore", klog.KObj(pr), "migrationUID", pr.Spec.MigrationUID)
	var pods corev1.PodList
	if err := r.Client.List(ctx, &pods, client.InNamespace(pr.Namespace), client.MatchingLabels{agentv1alpha1.LabelRestoredFrom: pr.Name}); err != nil {
		return reconcile.Result{}, err
	}
	byKey := map[string]*corev1.Pod{}
	for i := range pods.Items {
		p := &pods.Items[i]
		if p.Annotations[agentv1alpha1.AnnotationRestore] == pr.Name {
			byKey[p.Annotations[agentv1alpha1.AnnotationRestoreClaim]] = p
		}
	}
	for _, pod := range byKey {
		if err := r.ungate(ctx, pr, pod); err != nil {
			return reconcile.Result{}, err
		}
	}
	now := r.Clock.Now()
	ttl := r.ClaimTTL
	if ttl <= 0 {
		ttl = 2 * time.Minute
	}
	var requeue time.Duration
	old := pr.Status.DeepCopy()
	claims := pr.Status.Claims[:0:0]
	for _, c := range pr.Status.Claims {
		pod := byKey[c.Key]
		switch {
		case pod == nil && c.PodUID == "":
			if age := now.Sub(c.ClaimTime.Time); age >= ttl {
				log.Info("Freeing claim whose pod never appeared", "checkpoint", c.Checkpoint, "claimKey", c.Key)
				continue
			} else if requeue == 0 || ttl-age < requeue {
				requeue = ttl - age
			}
		case pod == nil:
			if c.Phase != agentv1alpha1.RestoreClaimReady {
				c.Phase, c.Message = agentv1alpha1.RestoreClaimFailed, "pod "+c.PodName+" was deleted before it was Ready"
			}
		default:
			c.PodName, c.PodUID = pod.Name, string(pod.UID)
			prev := c.Phase
			if prev != agentv1alpha1.RestoreClaimFailed { // a failed claim stays failed
				c.Phase, c.Message = claimPhase(pod)
			}
			if c.Phase == agentv1alpha1.RestoreClaimReady && c.ReadyTime == nil {
				t := metav1.NewTime(now)
				c.ReadyTime = &t
			}
			if prev != c.Phase && (c.Phase == agentv1alpha1.RestoreClaimReady || c.Phase == agentv1alpha1.RestoreClaimFailed) {
				res := resultSuccess
				if c.Phase == agentv1alpha1.RestoreClaimFailed {
					res = resultFailure
				}
				restoredPods.WithLabelValues(res).Inc()
				log.Info("Restored pod changed phase", "pod", klog.KObj(pod), "phase", c.Phase, "message", c.Message)
			}
		}
		claims = append(claims, c)
	}
	pr.Status.Claims = claims
	pr.Status.Phase, pr.Status.Message = restorePhase(pr)
	cond := metav1.Condition{Type: ConditionReady, Status: metav1.ConditionFalse, Reason: string(pr.Status.Phase), ObservedGeneration: pr.Generation}
	if pr.Status.Phase == agentv1alpha1.PodRestoreRestored {
		cond.Status, cond.Message = metav1.ConditionTrue, "every restored pod is Ready"
	}
	meta.SetStatusCondition(&pr.Status.Conditions, cond)
	if !equalRestoreStatus(old, &pr.Status) {
		if err := r.Client.Status().Update(ctx, pr); err != nil {
			return reconcile.Result{}, err
		}
		if old.Phase != pr.Status.Phase && r.Recorder != nil {
			r.Recorder.Eventf(pr, nil, corev1.EventTypeNormal, string(pr.Status.Phase), "Restore", "PodRestore is %s", pr.Status.Phase)
		}
	}
	return reconcile.Result{RequeueAfter: requeue}, nil
}

// ungate points a gated pod at its checkpoint's images and removes the
// checkpoint-image scheduling gate, in one update (the pod is not scheduled
// yet, so no node can run it between the two), once the PodRestore records
// every image of the checkpoint. It does nothing for a pod that is not
// gated, or whose images are still being pushed, so repeating it is a
// no-op. The update carries the pod's resourceVersion: a conflict retries
// the reconcile.
func (r *PodRestoreReconciler) ungate(ctx context.Context, pr *agentv1alpha1.PodRestore, pod *corev1.Pod) error {
	if !pod.DeletionTimestamp.IsZero() || !restore.Gated(pod) {
		return nil
	}
	var cp *agentv1alpha1.RestoreCheckpoint
	for i := range pr.Spec.Checkpoints {
		if pr.Spec.Checkpoints[i].Name == pod.Annotations[agentv1alpha1.AnnotationRestoreCheckpoint] {
			cp = &pr.Spec.Checkpoints[i]
		}
	}
	if cp == nil || !restore.ImagesRecorded(cp) {
		return nil
	}
	p := pod.DeepCopy()
	restore.SetImages(p, cp)
	restore.Ungate(p)
	if err := r.Client.Update(ctx, p); err != nil {
		return fmt.Errorf("releasing pod %s/%s to its checkpoint images: %w", pod.Namespace, pod.Name, err)
	}
	*pod = *p
	klog.FromContext(ctx).Info("Pod released to its checkpoint images", "pod", klog.KObj(pod), "podRestore", klog.KObj(pr), "checkpoint", cp.Name)
	if r.Recorder != nil {
		r.Recorder.Eventf(pod, pr, corev1.EventTypeNormal, "CheckpointImagesSet", "Restore", "checkpoint %s pushed: containers point at its images, scheduling gate %s removed", cp.Name, agentv1alpha1.SchedulingGateCheckpointImage)
	}
	return nil
}

// startFailures are the waiting reasons with which a kubelet reports a
// container it could not start (pkg/kubelet/images and
// pkg/kubelet/container). A restored container in one of them never ran.
var startFailures = map[string]bool{
	"ErrImagePull":               true,
	"ImagePullBackOff":           true,
	"ErrImageNeverPull":          true,
	"InvalidImageName":           true,
	"CreateContainerError":       true,
	"CreateContainerConfigError": true,
	"RunContainerError":          true,
}

// claimPhase follows the claiming pod: Failed when the pod failed, when a
// container could not start from the checkpoint image, or when one exited
// after the restore (restarted or terminated: it no longer runs the
// restored process); the message says which and why. A start failure fails
// the claim at once, without waiting for the kubelet's next attempt: the
// source is frozen meanwhile, and that attempt comes after a back-off of
// 10 s or more, so the migration rolls back and can be tried again.
func claimPhase(pod *corev1.Pod) (agentv1alpha1.RestoreClaimPhase, string) {
	if pod.Status.Phase == corev1.PodFailed {
		return agentv1alpha1.RestoreClaimFailed, strutil.Truncate(strings.TrimSpace("pod failed: "+pod.Status.Reason+" "+pod.Status.Message), maxClaimMessage)
	}
	for _, cs := range pod.Status.ContainerStatuses {
		switch {
		case cs.State.Waiting != nil && startFailures[cs.State.Waiting.Reason]:
			return agentv1alpha1.RestoreClaimFailed, strutil.Truncate(fmt.Sprintf("container %s cannot start from the checkpoint image: %s: %s", cs.Name, cs.State.Waiting.Reason, cs.State.Waiting.Message), maxClaimMessage)
		case cs.State.Terminated != nil:
			return agentv1alpha1.RestoreClaimFailed, strutil.Truncate(fmt.Sprintf("container %s exited after the restore: exit code %d %s", cs.Name, cs.State.Terminated.ExitCode, cs.State.Terminated.Reason), maxClaimMessage)
		case cs.RestartCount > 0:
			return agentv1alpha1.RestoreClaimFailed, strutil.Truncate(fmt.Sprintf("container %s exited after the restore and was restarted %d times", cs.Name, cs.RestartCount), maxClaimMessage)
		}
	}
	if pod.Status.Phase == corev1.PodRunning {
		for _, c := range pod.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
				return agentv1alpha1.RestoreClaimReady, ""
			}
		}
		return agentv1alpha1.RestoreClaimRunning, ""
	}
	return agentv1alpha1.RestoreClaimCreated, ""
}

// maxClaimMessage is the API's limit of a claim's message.
const maxClaimMessage = 1024

func restorePhase(pr *agentv1alpha1.PodRestore) (agentv1alpha1.PodRestorePhase, string) {
	if len(pr.Status.Claims) == 0 {
		if pr.Status.Phase == agentv1alpha1.PodRestoreFailed {
			return pr.Status.Phase, pr.Status.Message
		}
		return agentv1alpha1.PodRestorePending, ""
	}
	ready := 0
	for _, c := range pr.Status.Claims {
		switch c.Phase {
		case agentv1alpha1.RestoreClaimFailed:
			msg := "restored pod for checkpoint " + c.Checkpoint + " failed"
			if c.Message != "" {
				msg += ": " + c.Message
			}
			return agentv1alpha1.PodRestoreFailed, msg
		case agentv1alpha1.RestoreClaimReady:
			ready++
		}
	}
	if ready == len(pr.Spec.Checkpoints) {
		return agentv1alpha1.PodRestoreRestored, ""
	}
	return agentv1alpha1.PodRestoreRestoring, ""
}

func equalRestoreStatus(a, b *agentv1alpha1.PodRestoreStatus) bool {
	if a.Phase != b.Phase || a.Message != b.Message || len(a.Claims) != len(b.Claims) || len(a.Conditions) != len(b.Conditions) {
		return false
	}
	for i := range a.Claims {
		x, y := a.Claims[i], b.Claims[i]
		if x.Checkpoint != y.Checkpoint || x.Key != y.Key || x.PodName != y.PodName || x.PodUID != y.PodUID || x.Phase != y.Phase || x.Message != y.Message || (x.ReadyTime == nil) != (y.ReadyTime == nil) {
			return false
		}
	}
	for i := range a.Conditions {
		if a.Conditions[i].Status != b.Conditions[i].Status || a.Conditions[i].Reason != b.Conditions[i].Reason {
			return false
		}
	}
	return true
}

// SetupWithManager watches PodRestores and the pods restored from them.
func (r *PodRestoreReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		Named("podrestore").
		For(&agentv1alpha1.PodRestore{}).
		Watches(&corev1.Pod{}, handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
			name := o.GetLabels()[agentv1alpha1.LabelRestoredFrom]
			if name == "" {
				return nil
			}
			return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: name}}}
		})).
		Complete(r)
}
