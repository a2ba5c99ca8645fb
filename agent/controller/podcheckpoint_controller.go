package controller

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/livemigrate/livemigrate/agent/archive"
	"github.com/livemigrate/livemigrate/agent/checkpointimage"
	"github.com/livemigrate/livemigrate/agent/freezer"
	"github.com/livemigrate/livemigrate/agent/kubelet"
	agentv1alpha1 "github.com/livemigrate/livemigrate/api/agent/v1alpha1"
	"github.com/livemigrate/livemigrate/internal/strutil"
)

// ArchiveFinalizer keeps a PodCheckpoint until its archives are deleted.
const ArchiveFinalizer = "agent.livemigrate.io/archives"

// Event reasons.
const (
	ReasonFrozen       = "Frozen"
	ReasonCheckpointed = "Checkpointed"
	ReasonPushed       = "Pushed"
	ReasonFailed       = "CheckpointFailed"
	ReasonThawed       = "Thawed"
	ReasonReleased     = "Released"
)

// PodCheckpointReconciler acts on the PodCheckpoints of one node.
type PodCheckpointReconciler struct {
	Client   client.Client
	Recorder events.EventRecorder
	Clock    clock.PassiveClock

	// NodeName is this agent's node.
	NodeName string
	// KubeletHost and KubeletPort address this node's kubelet; when the host
	// is empty the Node's InternalIP is used, when the port is 0 the Node's
	// status.daemonEndpoints.kubeletEndpoint.Port.
	KubeletHost string
	KubeletPort int
	// CheckpointDir is where the agent sees the kubelet's checkpoint archives.
	CheckpointDir string
	Limits        archive.Limits
	// FreezeTimeout bounds waiting for the kernel to report a cgroup frozen.
	FreezeTimeout time.Duration
	// InsecureRegistries are registry hosts reached over plain HTTP.
	InsecureRegistries []string

	Freezer      Freezer
	Checkpointer Checkpointer
	Inspect      Inspector
	Push         Pusher

	// frozen are the PodCheckpoints whose pod this agent holds frozen
	// (the frozen-pods gauge).
	frozen frozenSet
}

// +kubebuilder:rbac:groups=agent.livemigrate.io,resources=podcheckpoints,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=agent.livemigrate.io,resources=podcheckpoints/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=agent.livemigrate.io,resources=podcheckpoints/finalizers,verbs=update
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=nodes,verbs=get
// +kubebuilder:rbac:groups="",resources=nodes/checkpoint,verbs=create
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile moves one PodCheckpoint forward.
func (r *PodCheckpointReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	pc := &agentv1alpha1.PodCheckpoint{}
	if err := r.Client.Get(ctx, req.NamespacedName, pc); err != nil {
		if apierrors.IsNotFound(err) {
			r.frozen.set(req.NamespacedName, false)
		}
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	if pc.Spec.NodeName != r.NodeName {
		return reconcile.Result{}, nil
	}
	r.trackFrozen(pc)
	log := klog.FromContext(ctx).WithValues("podCheckpoint", klog.KObj(pc), "pod", klog.KRef(pc.Namespace, pc.Spec.PodName), "migrationUID", pc.Spec.MigrationUID)
	ctx = klog.NewContext(ctx, log)

	if !pc.DeletionTimestamp.IsZero() {
		return r.finalize(ctx, pc)
	}
	if !controllerutil.ContainsFinalizer(pc, ArchiveFinalizer) {
		controllerutil.AddFinalizer(pc, ArchiveFinalizer)
		if err := r.Client.Update(ctx, pc); err != nil {
			return reconcile.Result{}, err
		}
	}
	switch pc.Spec.Action {
	case agentv1alpha1.CheckpointActionThaw:
		return reconcile.Result{}, r.thaw(ctx, pc)
	case agentv1alpha1.CheckpointActionRelease:
		return reconcile.Result{}, r.release(ctx, pc)
	default:
		return r.checkpoint(ctx, pc)
	}
}

// trackFrozen brings the frozen-pods gauge in line with pc's status and the
// pod's freezer: held frozen when the agent froze it (freeze start recorded),
// neither thawed nor released, and the cgroup still exists and is frozen.
// Every PodCheckpoint of the node is reconciled once when the agent starts,
// so this rebuilds the gauge after a restart.
func (r *PodCheckpointReconciler) trackFrozen(pc *agentv1alpha1.PodCheckpoint) {
	key := client.ObjectKeyFromObject(pc)
	switch {
	case pc.Status.FreezeStartTime == nil || pc.Status.CgroupPath == "",
		pc.Status.Phase == agentv1alpha1.PodCheckpointThawed, pc.Status.Phase == agentv1alpha1.PodCheckpointReleased:
		r.frozen.set(key, false)
		return
	}
	st, err := r.Freezer.State(pc.Status.CgroupPath)
	switch {
	case err == nil:
		r.frozen.set(key, st == freezer.Frozen || st == freezer.Freezing)
	case freezer.IsPodCgroupNotFound(err):
		// The pod is gone: nothing is held frozen.
		r.frozen.set(key, false)
	}
	// Any other error: leave the gauge as it is; the next reconcile retries.
}

// checkpoint freezes, checkpoints and pushes; each step is skipped when
// status says it is done.
func (r *PodCheckpointReconciler) checkpoint(ctx context.Context, pc *agentv1alpha1.PodCheckpoint) (reconcile.Result, error) {
	switch pc.Status.Phase {
	case agentv1alpha1.PodCheckpointCheckpointed, agentv1alpha1.PodCheckpointFailed,
		agentv1alpha1.PodCheckpointThawed, agentv1alpha1.PodCheckpointReleased:
		return reconcile.Result{}, nil
	}
	if pc.Status.Phase == "" {
		pc.Status.Phase = agentv1alpha1.PodCheckpointPending
	}
	pc.Status.ObservedGeneration = pc.Generation

	pod := &corev1.Pod{}
	if err := r.Client.Get(ctx, types.NamespacedName{Namespace: pc.Namespace, Name: pc.Spec.PodName}, pod); err != nil {
		if apierrors.IsNotFound(err) {
			return reconcile.Result{}, r.fail(ctx, pc, "PodNotFound", fmt.Errorf("pod %s not found", pc.Spec.PodName))
		}
		return reconcile.Result{}, err
	}
	if pod.Spec.NodeName != r.NodeName {
		return reconcile.Result{}, r.fail(ctx, pc, "WrongNode", fmt.Errorf("pod runs on node %q, not %q", pod.Spec.NodeName, r.NodeName))
	}
	if pc.Spec.PodUID != "" && string(pod.UID) != pc.Spec.PodUID {
		return reconcile.Result{}, r.fail(ctx, pc, "PodReplaced", fmt.Errorf("pod UID %s, want %s", pod.UID, pc.Spec.PodUID))
	}
	if pc.Status.PodUID != "" && string(pod.UID) != pc.Status.PodUID {
		return reconcile.Result{}, r.fail(ctx, pc, "PodReplaced", fmt.Errorf("pod UID changed from %s to %s", pc.Status.PodUID, pod.UID))
	}
	containers, err := containersToCheckpoint(pc, pod)
	if err != nil {
		return reconcile.Result{}, r.fail(ctx, pc, "UnknownContainer", err)
	}

	// 1. Freeze, 2. checkpoint each container, 3. push each archive.
	if stop, err := r.freezePod(ctx, pc, pod, containers); stop || err != nil {
		return reconcile.Result{}, err
	}
	if stop, err := r.checkpointContainers(ctx, pc, pod, containers); stop || err != nil {
		return reconcile.Result{}, err
	}
	return reconcile.Result{}, r.push(ctx, pc, pod, containers)
}

// freezePod freezes the pod's cgroup, records the freeze in status the first
// time, and fails the PodCheckpoint for a pod another one holds or a
// container restarted while frozen. stop ends the reconcile, with err to
// return (nil when the failure is in status).
func (r *PodCheckpointReconciler) freezePod(ctx context.Context, pc *agentv1alpha1.PodCheckpoint, pod *corev1.Pod, containers []string) (stop bool, err error) {
	log := klog.FromContext(ctx)
	// 1. Freeze the whole pod, before the first checkpoint call. A pod is
	// frozen for one migration at a time: its thaw on rollback must never
	// thaw a pod another migration holds frozen.
	if pc.Status.FreezeStartTime == nil {
		other, err := r.otherActiveCheckpoint(ctx, pc, pod)
		if err != nil {
			return true, err
		}
		if other != "" {
			return true, r.fail(ctx, pc, ReasonPodBusy,
				fmt.Errorf("pod %s (UID %s) is checkpointed by PodCheckpoint %s of another migration; only one may freeze it", pod.Name, pod.UID, other))
		}
	}
	if pc.Status.CgroupPath == "" {
		p, err := r.Freezer.PodPath(pod.UID)
		if err != nil {
			return true, r.fail(ctx, pc, "CgroupNotFound", err)
		}
		pc.Status.CgroupPath = p
		pc.Status.PodUID = string(pod.UID)
	}
	fctx, cancel := context.WithTimeout(ctx, r.freezeTimeout())
	freezeAt := r.Clock.Now()
	err = r.Freezer.Freeze(fctx, pc.Status.CgroupPath)
	cancel()
	if err != nil {
		if freezer.IsTimeout(err) {
			// Never leave a half-frozen pod behind a failed request.
			_ = r.Freezer.Thaw(ctx, pc.Status.CgroupPath)
			return true, r.fail(ctx, pc, "FreezeTimeout", err)
		}
		return true, fmt.Errorf("freeze: %w", err)
	}
	if pc.Status.FreezeStartTime == nil {
		now := metav1.NewTime(r.Clock.Now())
		pc.Status.FreezeStartTime = &now
		frozenAt := metav1.NewMicroTime(freezeAt)
		pc.Status.FrozenAt = &frozenAt
		pc.Status.Phase = agentv1alpha1.PodCheckpointFrozen
		setCondition(pc, agentv1alpha1.ConditionFrozen, metav1.ConditionTrue, ReasonFrozen, "pod cgroup frozen")
		if err := r.Client.Status().Update(ctx, pc); err != nil {
			return true, err
		}
		r.frozen.set(client.ObjectKeyFromObject(pc), true)
		r.Recorder.Eventf(pc, pod, corev1.EventTypeNormal, ReasonFrozen, "Freeze", "Froze pod %s for migration %s", pod.Name, pc.Spec.MigrationUID)
		log.Info("Pod frozen", "cgroup", pc.Status.CgroupPath)
	}

	// A container the kubelet restarted while frozen (a liveness probe that
	// timed out against it) lost its memory: its checkpoint would be a
	// fresh start, so the request fails instead.
	if err := restartedWhileFrozen(pod, containers, pc.Status.FreezeStartTime); err != nil {
		return true, r.fail(ctx, pc, ReasonContainerRestarted, err)
	}
	return false, nil
}

// checkpointContainers checkpoints through the kubelet every container not
// checkpointed yet and inspects its archive; stop and err as for freezePod.
func (r *PodCheckpointReconciler) checkpointContainers(ctx context.Context, pc *agentv1alpha1.PodCheckpoint, pod *corev1.Pod, containers []string) (stop bool, err error) {
	log := klog.FromContext(ctx)
	// 2. Checkpoint each container through the kubelet; inspect the archive.
	host, port, err := r.kubeletEndpoint(ctx)
	if err != nil {
		return true, err
	}
	timeout := time.Duration(pc.Spec.TimeoutSeconds) * time.Second
	if timeout <= 0 {
		timeout = 120 * time.Second
	}
	for _, c := range containers {
		st := containerStatus(pc, c)
		if st.ArchivePath != "" && st.Digest != "" {
			continue
		}
		if st.ArchivePath != "" {
			if _, err := os.Stat(st.ArchivePath); err == nil {
				continue
			}
			st.ArchivePath = ""
		}
		if pc.Status.Phase != agentv1alpha1.PodCheckpointCheckpointing {
			pc.Status.Phase = agentv1alpha1.PodCheckpointCheckpointing
		}
		items, err := r.Checkpointer.Checkpoint(ctx, host, port, pc.Namespace, pod.Name, c, timeout)
		if err == nil {
			// The dump may have raced a kill: the archive counts only if
			// the container still is the one frozen.
			if gerr := r.Client.Get(ctx, types.NamespacedName{Namespace: pc.Namespace, Name: pc.Spec.PodName}, pod); gerr != nil {
				return true, gerr
			}
			if rerr := restartedWhileFrozen(pod, []string{c}, pc.Status.FreezeStartTime); rerr != nil {
				if p, perr := archive.Resolve(r.CheckpointDir, items[0]); perr == nil {
					_ = archive.Remove(r.CheckpointDir, p)
				}
				return true, r.fail(ctx, pc, ReasonContainerRestarted, rerr)
			}
		}
		if err != nil {
			if kubelet.IsFeatureDisabled(err) || kubelet.IsNotFound(err) || kubelet.IsRuntimeError(err) || kubelet.IsUnauthorized(err) {
				return true, r.fail(ctx, pc, "Kubelet"+string(kubelet.ReasonOf(err)), err)
			}
			return true, fmt.Errorf("checkpoint container %s: %w", c, err)
		}
		p, err := archive.Resolve(r.CheckpointDir, items[0])
		if err != nil {
			return true, r.fail(ctx, pc, "ArchiveRejected", err)
		}
		if err := archive.Secure(p); err != nil {
			return true, err
		}
		info, err := r.Inspect(p, r.Limits)
		if err != nil {
			_ = archive.Remove(r.CheckpointDir, p)
			if archive.IsRejected(err) {
				return true, r.fail(ctx, pc, "ArchiveRejected", err)
			}
			return true, err
		}
		if info.ContainerName != c {
			_ = archive.Remove(r.CheckpointDir, p)
			return true, r.fail(ctx, pc, "ArchiveRejected", fmt.Errorf("archive is of container %q, want %q", info.ContainerName, c))
		}
		st.ArchivePath = p
		st.ArchiveSizeBytes = info.SizeBytes
		st.ContainerImage = info.Image
		st.Runtime, st.RuntimeVersion = info.Runtime, info.RuntimeVersion
		st.CRIUVersion, st.Architecture = info.CRIUVersion, info.Architecture
		setContainerStatus(pc, *st)
		checkpointBytes.Add(float64(info.SizeBytes))
		if err := r.Client.Status().Update(ctx, pc); err != nil {
			return true, err
		}
		log.Info("Container checkpointed", "container", c, "archiveBytes", info.SizeBytes, "criuVersion", info.CRIUVersion)
	}
	setCondition(pc, agentv1alpha1.ConditionCheckpointed, metav1.ConditionTrue, ReasonCheckpointed, "every container checkpointed")
	return false, nil
}

// push pushes every archive not pushed yet as a checkpoint image and
// completes the PodCheckpoint.
func (r *PodCheckpointReconciler) push(ctx context.Context, pc *agentv1alpha1.PodCheckpoint, pod *corev1.Pod, containers []string) error {
	log := klog.FromContext(ctx)
	// 3. Push each archive as a checkpoint image. Before the first push,
	// status says the archives are taken and the push runs, so that whoever
	// watches (the migration controller, its timeline) can tell the dump
	// from the push.
	if pc.Status.Phase != agentv1alpha1.PodCheckpointPushing && !allPushed(pc, containers) {
		pc.Status.Phase = agentv1alpha1.PodCheckpointPushing
		if err := r.Client.Status().Update(ctx, pc); err != nil {
			return err
		}
	}
	opts, err := r.pushOptions(ctx, pc)
	if err != nil {
		return err
	}
	for _, c := range containers {
		st := containerStatus(pc, c)
		if st.Digest != "" {
			continue
		}
		pc.Status.Phase = agentv1alpha1.PodCheckpointPushing
		ref := checkpointimage.Repository(pc.Spec.Destination.Repository, pc.Namespace, pod.Name, c) + ":" + tagFor(pc.Spec.MigrationUID)
		info, err := r.Inspect(st.ArchivePath, r.Limits)
		if err != nil {
			if archive.IsRejected(err) {
				return r.fail(ctx, pc, "ArchiveRejected", err)
			}
			return err
		}
		res, err := r.Push(ctx, st.ArchivePath, c, info.Annotations, ref, opts)
		if err != nil {
			if uerr := r.Client.Status().Update(ctx, pc); uerr != nil {
				log.Error(uerr, "Updating status")
			}
			return fmt.Errorf("push %s: %w", ref, err)
		}
		st.Image, st.Digest = res.Reference, res.Digest
		st.PushDuration = &metav1.Duration{Duration: res.Duration}
		setContainerStatus(pc, *st)
		pushSecs.Observe(res.Duration.Seconds())
		pushThroughput.Observe(res.Throughput())
		if err := r.Client.Status().Update(ctx, pc); err != nil {
			return err
		}
		log.Info("Checkpoint image pushed", "container", c, "image", res.Reference, "bytes", res.Bytes, "bytesPerSecond", int64(res.Throughput()))
	}
	now := r.Clock.Now()
	pc.Status.Phase = agentv1alpha1.PodCheckpointCheckpointed
	pc.Status.CheckpointDuration = &metav1.Duration{Duration: now.Sub(pc.Status.FreezeStartTime.Time)}
	pc.Status.CompletionTime = &metav1.Time{Time: now}
	pc.Status.Message = ""
	setCondition(pc, agentv1alpha1.ConditionPushed, metav1.ConditionTrue, ReasonPushed, "every checkpoint image pushed")
	if err := r.Client.Status().Update(ctx, pc); err != nil {
		return err
	}
	checkpoints.WithLabelValues(resultSuccess).Inc()
	checkpointSecs.Observe(pc.Status.CheckpointDuration.Seconds())
	r.Recorder.Eventf(pc, nil, corev1.EventTypeNormal, ReasonCheckpointed, "Checkpoint", "Checkpointed %d containers in %s", len(containers), pc.Status.CheckpointDuration.Duration)
	log.Info("Pod checkpointed", "duration", pc.Status.CheckpointDuration.Duration)
	return nil
}

// ReasonContainerRestarted is the failure reason of a PodCheckpoint whose
// frozen container was restarted by the kubelet (typically its liveness
// probe timed out against the frozen process): its memory is gone.
const ReasonContainerRestarted = "ContainerRestartedWhileFrozen"

// restartedWhileFrozen returns an error naming the containers (of names)
// that started, or terminated, after the freeze began: the kubelet killed
// them while frozen, and what runs now is not the state that was frozen.
func restartedWhileFrozen(pod *corev1.Pod, names []string, since *metav1.Time) error {
	if since == nil {
		return nil
	}
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	after := func(t metav1.Time) bool { return t.After(since.Time) }
	var restarted []string
	for _, cs := range pod.Status.ContainerStatuses {
		if !want[cs.Name] {
			continue
		}
		st, last := cs.State, cs.LastTerminationState
		switch {
		case st.Running != nil && after(st.Running.StartedAt),
			st.Terminated != nil && after(st.Terminated.FinishedAt),
			last.Terminated != nil && after(last.Terminated.FinishedAt):
			restarted = append(restarted, cs.Name)
		}
	}
	if len(restarted) == 0 {
		return nil
	}
	return fmt.Errorf("container(s) %s of pod %s were restarted by the kubelet while frozen (since %s), so their memory is lost: "+
		"a liveness probe fails against a frozen container; give it a failureThreshold × periodSeconds longer than the freeze "+
		"(the migration's downtime, bounded by its phase timeouts)", strings.Join(restarted, ", "), pod.Name, since.UTC().Format(time.RFC3339))
}

// restartedPodContainers is restartedWhileFrozen for pc's pod, nil when the
// pod cannot be read.
func (r *PodCheckpointReconciler) restartedPodContainers(ctx context.Context, pc *agentv1alpha1.PodCheckpoint) error {
	pod := &corev1.Pod{}
	if err := r.Client.Get(ctx, types.NamespacedName{Namespace: pc.Namespace, Name: pc.Spec.PodName}, pod); err != nil {
		return nil
	}
	if pc.Status.PodUID != "" && string(pod.UID) != pc.Status.PodUID {
		return nil
	}
	names, err := containersToCheckpoint(pc, pod)
	if err != nil {
		return nil
	}
	return restartedWhileFrozen(pod, names, pc.Status.FreezeStartTime)
}

// ReasonPodBusy is the failure reason of a PodCheckpoint refused because
// another one holds, or was first to ask for, the same pod.
const ReasonPodBusy = "PodBusy"

// otherActiveCheckpoint returns the name of another PodCheckpoint of the
// same pod (same UID) that may freeze it or holds it frozen, and that wins
// over pc: one that froze the pod already, else the older one (by creation,
// then name), so that of two created together exactly one proceeds. A
// PodCheckpoint that ended (thawed, released, or failed before freezing)
// does not count.
func (r *PodCheckpointReconciler) otherActiveCheckpoint(ctx context.Context, pc *agentv1alpha1.PodCheckpoint, pod *corev1.Pod) (string, error) {
	var list agentv1alpha1.PodCheckpointList
	if err := r.Client.List(ctx, &list, client.InNamespace(pc.Namespace)); err != nil {
		return "", fmt.Errorf("listing PodCheckpoints: %w", err)
	}
	for i := range list.Items {
		o := &list.Items[i]
		if o.Name == pc.Name || o.Spec.PodName != pod.Name || o.Spec.NodeName != pc.Spec.NodeName {
			continue
		}
		if uid := o.Status.PodUID; uid != "" && uid != string(pod.UID) {
			continue
		}
		if uid := o.Spec.PodUID; uid != "" && uid != string(pod.UID) {
			continue
		}
		switch o.Status.Phase {
		case agentv1alpha1.PodCheckpointThawed, agentv1alpha1.PodCheckpointReleased:
			continue
		case agentv1alpha1.PodCheckpointFailed:
			if o.Status.FreezeStartTime == nil {
				continue
			}
		}
		if o.Status.FreezeStartTime != nil || olderThan(o, pc) {
			return o.Name, nil
		}
	}
	return "", nil
}

func olderThan(a, b *agentv1alpha1.PodCheckpoint) bool {
	if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
		return a.CreationTimestamp.Before(&b.CreationTimestamp)
	}
	return a.Name < b.Name
}

// thaw rolls back: thaw the pod and delete the archives.
func (r *PodCheckpointReconciler) thaw(ctx context.Context, pc *agentv1alpha1.PodCheckpoint) error {
	if pc.Status.Phase == agentv1alpha1.PodCheckpointThawed {
		return nil
	}
	if pc.Status.CgroupPath != "" {
		if err := r.Freezer.Thaw(ctx, pc.Status.CgroupPath); err != nil && !freezer.IsPodCgroupNotFound(err) {
			return fmt.Errorf("thaw: %w", err)
		}
	}
	if err := r.removeArchives(ctx, pc); err != nil {
		return err
	}
	now := metav1.NewTime(r.Clock.Now())
	pc.Status.Phase = agentv1alpha1.PodCheckpointThawed
	pc.Status.CompletionTime = &now
	setCondition(pc, agentv1alpha1.ConditionFrozen, metav1.ConditionFalse, ReasonThawed, "pod thawed by rollback")
	if lost := r.restartedPodContainers(ctx, pc); lost != nil {
		// Thawing cannot bring back what the kubelet killed: say so.
		pc.Status.Message = "thawed, but " + lost.Error()
		r.Recorder.Eventf(pc, nil, corev1.EventTypeWarning, ReasonContainerRestarted, "Thaw", "%s", strutil.Truncate(lost.Error(), 512))
	}
	if err := r.Client.Status().Update(ctx, pc); err != nil {
		return err
	}
	r.frozen.set(client.ObjectKeyFromObject(pc), false)
	thaws.Inc()
	r.Recorder.Eventf(pc, nil, corev1.EventTypeNormal, ReasonThawed, "Thaw", "Thawed pod %s", pc.Spec.PodName)
	klog.FromContext(ctx).Info("Pod thawed")
	return nil
}

// release ends a successful migration: the archives go, the pod stays frozen
// until it is deleted.
func (r *PodCheckpointReconciler) release(ctx context.Context, pc *agentv1alpha1.PodCheckpoint) error {
	if pc.Status.Phase == agentv1alpha1.PodCheckpointReleased {
		return nil
	}
	if err := r.removeArchives(ctx, pc); err != nil {
		return err
	}
	now := metav1.NewTime(r.Clock.Now())
	pc.Status.Phase = agentv1alpha1.PodCheckpointReleased
	pc.Status.CompletionTime = &now
	if err := r.Client.Status().Update(ctx, pc); err != nil {
		return err
	}
	r.frozen.set(client.ObjectKeyFromObject(pc), false)
	r.Recorder.Eventf(pc, nil, corev1.EventTypeNormal, ReasonReleased, "Release", "Released checkpoint archives of pod %s", pc.Spec.PodName)
	klog.FromContext(ctx).Info("Checkpoint released")
	return nil
}

// finalize lets a deleted PodCheckpoint go once it no longer holds its pod
// frozen. Deleting it is not a thaw: the target may already run from its
// checkpoint, and thawing the source then would make two live copies. So a
// PodCheckpoint that froze its pod stays, with the finalizer, until its
// spec.action is Thaw (the pod is thawed first, as a rollback does) or
// Release (the migration succeeded: the pod stays frozen until it is
// deleted), or until the pod's cgroup is gone or found thawed. A
// PodCheckpoint that is gone therefore never holds a pod frozen: whoever
// asked for the thaw can take "not found" as thawed.
func (r *PodCheckpointReconciler) finalize(ctx context.Context, pc *agentv1alpha1.PodCheckpoint) (reconcile.Result, error) {
	if !controllerutil.ContainsFinalizer(pc, ArchiveFinalizer) {
		return reconcile.Result{}, nil
	}
	switch pc.Spec.Action {
	case agentv1alpha1.CheckpointActionThaw:
		if err := r.thaw(ctx, pc); err != nil {
			return reconcile.Result{}, err
		}
	case agentv1alpha1.CheckpointActionRelease:
	default:
		held, err := r.holdsFrozen(pc)
		if err != nil {
			return reconcile.Result{}, err
		}
		if held {
			// A spec.action change reconciles it at once; the pod going
			// away (its cgroup removed) is only seen by looking again.
			return reconcile.Result{RequeueAfter: deletionRecheck}, r.blockDeletion(ctx, pc)
		}
	}
	if err := r.removeArchives(ctx, pc); err != nil {
		return reconcile.Result{}, err
	}
	controllerutil.RemoveFinalizer(pc, ArchiveFinalizer)
	return reconcile.Result{}, r.Client.Update(ctx, pc)
}

// deletionRecheck is how often a deleted PodCheckpoint that holds its pod
// frozen looks again whether the pod is gone.
const deletionRecheck = 10 * time.Second

// holdsFrozen reports whether pc froze its pod and the pod's cgroup is still
// frozen, without a thaw or release since.
func (r *PodCheckpointReconciler) holdsFrozen(pc *agentv1alpha1.PodCheckpoint) (bool, error) {
	switch {
	case pc.Status.FreezeStartTime == nil || pc.Status.CgroupPath == "",
		pc.Status.Phase == agentv1alpha1.PodCheckpointThawed, pc.Status.Phase == agentv1alpha1.PodCheckpointReleased:
		return false, nil
	}
	st, err := r.Freezer.State(pc.Status.CgroupPath)
	switch {
	case freezer.IsPodCgroupNotFound(err):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("reading the freezer state of %s: %w", pc.Status.CgroupPath, err)
	}
	return st == freezer.Frozen || st == freezer.Freezing, nil
}

// ReasonDeletionBlocked is the condition and event reason of a deleted
// PodCheckpoint that still holds its pod frozen.
const ReasonDeletionBlocked = "DeletionWaitsForAction"

// blockDeletion says, in status and once in an event, why a deleted
// PodCheckpoint stays. The spec.action change that lets it go reconciles
// it again.
func (r *PodCheckpointReconciler) blockDeletion(ctx context.Context, pc *agentv1alpha1.PodCheckpoint) error {
	msg := fmt.Sprintf("pod %s is held frozen by this checkpoint: it is deleted once spec.action is Thaw "+
		"(the pod runs again; only when no copy of it runs elsewhere) or Release (the migration succeeded), or once the pod is gone", pc.Spec.PodName)
	if c := meta.FindStatusCondition(pc.Status.Conditions, agentv1alpha1.ConditionFrozen); c != nil && c.Reason == ReasonDeletionBlocked {
		return nil
	}
	setCondition(pc, agentv1alpha1.ConditionFrozen, metav1.ConditionTrue, ReasonDeletionBlocked, msg)
	pc.Status.Message = msg
	if err := r.Client.Status().Update(ctx, pc); err != nil {
		return err
	}
	r.Recorder.Eventf(pc, nil, corev1.EventTypeWarning, ReasonDeletionBlocked, "Delete", "%s", msg)
	klog.FromContext(ctx).Info("Deletion waits for a thaw or release: the pod is held frozen")
	return nil
}

// removeArchives deletes the archives in status and, when pc froze the pod
// (no other PodCheckpoint may then hold it), any other archive of the pod's
// containers (one taken before a crash, before status recorded it). One
// that never froze the pod took no archive, and must not remove those of
// the PodCheckpoint that holds it.
func (r *PodCheckpointReconciler) removeArchives(ctx context.Context, pc *agentv1alpha1.PodCheckpoint) error {
	seen := map[string]bool{}
	var paths []string
	for i := range pc.Status.Containers {
		if p := pc.Status.Containers[i].ArchivePath; p != "" {
			paths = append(paths, p)
			seen[p] = true
		}
	}
	if pc.Status.FreezeStartTime == nil {
		return r.removePaths(ctx, pc, paths)
	}
	for i := range pc.Status.Containers {
		prefix := fmt.Sprintf("checkpoint-%s_%s-%s-", pc.Spec.PodName, pc.Namespace, pc.Status.Containers[i].Name)
		matches, _ := filepath.Glob(filepath.Join(r.CheckpointDir, globEscape(prefix)+"*.tar"))
		for _, m := range matches {
			if !seen[m] {
				paths = append(paths, m)
				seen[m] = true
			}
		}
	}
	for _, c := range pc.Spec.Containers {
		prefix := fmt.Sprintf("checkpoint-%s_%s-%s-", pc.Spec.PodName, pc.Namespace, c)
		matches, _ := filepath.Glob(filepath.Join(r.CheckpointDir, globEscape(prefix)+"*.tar"))
		for _, m := range matches {
			if !seen[m] {
				paths = append(paths, m)
				seen[m] = true
			}
		}
	}
	return r.removePaths(ctx, pc, paths)
}

func (r *PodCheckpointReconciler) removePaths(ctx context.Context, pc *agentv1alpha1.PodCheckpoint, paths []string) error {
	for _, p := range paths {
		if err := archive.Remove(r.CheckpointDir, p); err != nil {
			return err
		}
		archivesRemoved.Inc()
		klog.FromContext(ctx).V(2).Info("Archive removed", "archive", p)
	}
	for i := range pc.Status.Containers {
		pc.Status.Containers[i].ArchivePath = ""
	}
	return nil
}

func globEscape(s string) string {
	r := strings.NewReplacer("*", "\\*", "?", "\\?", "[", "\\[", "\\", "\\\\")
	return r.Replace(s)
}

// fail records a failure that retrying cannot fix. The pod stays as it is
// (frozen when it was): only spec.action Thaw thaws it.
func (r *PodCheckpointReconciler) fail(ctx context.Context, pc *agentv1alpha1.PodCheckpoint, reason string, cause error) error {
	klog.FromContext(ctx).Error(cause, "Checkpoint failed", "reason", reason)
	pc.Status.Phase = agentv1alpha1.PodCheckpointFailed
	pc.Status.Message = fmt.Sprintf("%s: %v", reason, cause)
	now := metav1.NewTime(r.Clock.Now())
	pc.Status.CompletionTime = &now
	setCondition(pc, agentv1alpha1.ConditionCheckpointed, metav1.ConditionFalse, reason, strutil.Truncate(cause.Error(), 1024))
	if err := r.Client.Status().Update(ctx, pc); err != nil {
		return err
	}
	checkpoints.WithLabelValues(resultFailure).Inc()
	r.Recorder.Eventf(pc, nil, corev1.EventTypeWarning, ReasonFailed, "Checkpoint", "%s: %s", reason, strutil.Truncate(cause.Error(), 512))
	return reconcile.TerminalError(cause)
}

func (r *PodCheckpointReconciler) freezeTimeout() time.Duration {
	if r.FreezeTimeout > 0 {
		return r.FreezeTimeout
	}
	return 30 * time.Second
}

func (r *PodCheckpointReconciler) kubeletEndpoint(ctx context.Context) (string, int, error) {
	host, port := r.KubeletHost, r.KubeletPort
	if host != "" && port != 0 {
		return host, port, nil
	}
	node := &corev1.Node{}
	if err := r.Client.Get(ctx, types.NamespacedName{Name: r.NodeName}, node); err != nil {
		return "", 0, fmt.Errorf("get node %s: %w", r.NodeName, err)
	}
	if port == 0 {
		port = int(node.Status.DaemonEndpoints.KubeletEndpoint.Port)
	}
	if host == "" {
		for _, a := range node.Status.Addresses {
			if a.Type == corev1.NodeInternalIP {
				host = a.Address
				break
			}
		}
	}
	if host == "" || port == 0 {
		return "", 0, fmt.Errorf("node %s has no InternalIP or kubelet port", r.NodeName)
	}
	return host, port, nil
}

func (r *PodCheckpointReconciler) pushOptions(ctx context.Context, pc *agentv1alpha1.PodCheckpoint) (checkpointimage.PushOptions, error) {
	d := pc.Spec.Destination
	registry, _, _ := strings.Cut(d.Repository, "/")
	o := checkpointimage.PushOptions{Insecure: d.Insecure}
	for _, h := range r.InsecureRegistries {
		if h == registry {
			o.Insecure = true
		}
	}
	if d.PushSecretRef == nil {
		return o, nil
	}
	s := &corev1.Secret{}
	if err := r.Client.Get(ctx, types.NamespacedName{Namespace: pc.Namespace, Name: d.PushSecretRef.Name}, s); err != nil {
		return o, fmt.Errorf("push secret: %w", err)
	}
	creds, err := checkpointimage.CredentialsFromDockerConfigJSON(s.Data[corev1.DockerConfigJsonKey], registry)
	if err != nil {
		return o, err
	}
	o.Credentials = creds
	return o, nil
}

func containersToCheckpoint(pc *agentv1alpha1.PodCheckpoint, pod *corev1.Pod) ([]string, error) {
	all := map[string]bool{}
	var names []string
	for _, c := range pod.Spec.Containers {
		all[c.Name] = true
		names = append(names, c.Name)
	}
	if len(pc.Spec.Containers) == 0 {
		return names, nil
	}
	for _, c := range pc.Spec.Containers {
		if !all[c] {
			return nil, fmt.Errorf("pod has no container %q", c)
		}
	}
	return pc.Spec.Containers, nil
}

func containerStatus(pc *agentv1alpha1.PodCheckpoint, name string) *agentv1alpha1.ContainerCheckpointStatus {
	for i := range pc.Status.Containers {
		if pc.Status.Containers[i].Name == name {
			c := pc.Status.Containers[i]
			return &c
		}
	}
	return &agentv1alpha1.ContainerCheckpointStatus{Name: name}
}

func setContainerStatus(pc *agentv1alpha1.PodCheckpoint, st agentv1alpha1.ContainerCheckpointStatus) {
	for i := range pc.Status.Containers {
		if pc.Status.Containers[i].Name == st.Name {
			pc.Status.Containers[i] = st
			return
		}
	}
	pc.Status.Containers = append(pc.Status.Containers, st)
}

func setCondition(pc *agentv1alpha1.PodCheckpoint, t string, s metav1.ConditionStatus, reason, msg string) {
	meta.SetStatusCondition(&pc.Status.Conditions, metav1.Condition{
		Type: t, Status: s, Reason: reason, Message: msg, ObservedGeneration: pc.Generation,
	})
}

// tagFor makes a valid image tag from a migration UID.
func tagFor(uid string) string {
	var b strings.Builder
	for _, r := range uid {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_', r == '.', r == '-':
			b.WriteRune(r)
		default:
			b.WriteRune('-')
		}
	}
	t := b.String()
	if t == "" || t[0] == '.' || t[0] == '-' {
		t = "m" + t
	}
	if len(t) > 128 { // a tag's maximum; t is ASCII
		t = t[:128]
	}
	return t
}

// beingDeleted passes updates that set a deletion timestamp.
var beingDeleted = predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
	return e.ObjectNew.GetDeletionTimestamp() != nil
}}

// SetupWithManager watches this node's PodCheckpoints.
func (r *PodCheckpointReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.NodeName == "" {
		return errors.New("PodCheckpointReconciler needs a node name")
	}
	onNode := predicate.NewPredicateFuncs(func(o client.Object) bool {
		pc, ok := o.(*agentv1alpha1.PodCheckpoint)
		return ok && pc.Spec.NodeName == r.NodeName
	})
	return ctrl.NewControllerManagedBy(mgr).
		Named("podcheckpoint").
		For(&agentv1alpha1.PodCheckpoint{}, builder.WithPredicates(onNode, predicate.Or[client.Object](
			predicate.GenerationChangedPredicate{}, beingDeleted))).
		Complete(r)
}

// allPushed reports whether every container's archive has been pushed.
func allPushed(pc *agentv1alpha1.PodCheckpoint, containers []string) bool {
	for _, c := range containers {
		if containerStatus(pc, c).Digest == "" {
			return false
		}
	}
	return true
}
