package integration

import (
	"context"
	"strings"
	"sync"
	"time"

	clusterv1alpha1 "github.com/karmada-io/karmada/pkg/apis/cluster/v1alpha1"
	workv1alpha2 "github.com/karmada-io/karmada/pkg/apis/work/v1alpha2"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	agentv1alpha1 "github.com/livemigrate/livemigrate/api/agent/v1alpha1"
	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
)

func newUnstructuredCluster(name, url string) *clusterv1alpha1.Cluster {
	return &clusterv1alpha1.Cluster{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: clusterv1alpha1.ClusterSpec{
			SyncMode: clusterv1alpha1.Push, APIEndpoint: url, InsecureSkipTLSVerification: true,
			SecretRef: &clusterv1alpha1.LocalSecretReference{Namespace: "karmada-cluster", Name: name},
		},
	}
}

func setClusterReady(ctx context.Context, name string) error {
	c := &clusterv1alpha1.Cluster{}
	if err := k.Get(ctx, client.ObjectKey{Name: name}, c); err != nil {
		return err
	}
	meta.SetStatusCondition(&c.Status.Conditions, metav1.Condition{Type: clusterv1alpha1.ClusterConditionReady,
		Status: metav1.ConditionTrue, Reason: "ClusterReady", Message: "test"})
	return k.Status().Update(ctx, c)
}

func webhookAnswers(ctx context.Context) bool {
	lm := &lmv1alpha1.LiveMigration{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "probe"},
		Spec: lmv1alpha1.LiveMigrationSpec{WorkloadRef: lmv1alpha1.WorkloadReference{Kind: "Deployment", Name: "none"}}}
	err := k.Create(ctx, lm, client.DryRunAll)
	return err != nil && strings.Contains(err.Error(), "denied the request")
}

// world is what the simulated agent, scheduler and garbage collector saw.
type world struct {
	mu sync.Mutex
	// stallRestore lists namespaces whose restores never complete.
	stallRestore map[string]bool
	// thawWithWorkload records, per namespace, whether the workload still
	// existed when the agent was first asked to thaw.
	thawWithWorkload map[string]bool
}

var sim = &world{stallRestore: map[string]bool{}, thawWithWorkload: map[string]bool{}}

func (w *world) stall(ns string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stallRestore[ns] = true
}

func (w *world) thawedWithWorkload(ns string) (seen, withWorkload bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	v, ok := w.thawWithWorkload[ns]
	return ok, v
}

// simulate plays the agent (PodCheckpoint, PodRestore), karmada-scheduler
// (schedulerObservedGeneration), the Deployment controller (readiness) and
// the garbage collector (foreground deletion) until ctx ends.
func simulate(ctx context.Context) {
	for ctx.Err() == nil {
		sim.step(ctx)
		time.Sleep(50 * time.Millisecond)
	}
}

// markRestored annotates the checkpointed pod as the restore webhook
// annotates a target pod restored from the migration's PodRestore, and
// points it at its checkpoint image as the restore controller does once the
// image is recorded.
func (w *world) markRestored(ctx context.Context, pc *agentv1alpha1.PodCheckpoint) {
	pod := &corev1.Pod{}
	if err := k.Get(ctx, client.ObjectKey{Namespace: pc.Namespace, Name: pc.Spec.PodName}, pod); err != nil {
		return
	}
	uid := pc.Spec.MigrationUID
	if len(uid) > 8 {
		uid = uid[:8]
	}
	orig := pod.DeepCopy()
	if pod.Annotations == nil {
		pod.Annotations = map[string]string{}
	}
	pod.Annotations[agentv1alpha1.AnnotationRestore] = "app-" + uid
	pod.Annotations[agentv1alpha1.AnnotationRestoreCheckpoint] = pc.Spec.PodName
	for i := range pod.Spec.Containers {
		pod.Spec.Containers[i].Image = checkpointImage(pc, pod.Spec.Containers[i].Name)
	}
	_ = k.Patch(ctx, pod, client.MergeFrom(orig))
}

// checkpointImage is the image the simulated agent pushes a container's
// checkpoint to.
func checkpointImage(pc *agentv1alpha1.PodCheckpoint, container string) string {
	return "registry.test:5000/livemigrate/" + pc.Namespace + "-" + pc.Spec.PodName + "-" + container + ":" + pc.Spec.MigrationUID
}

func (w *world) step(ctx context.Context) {
	var pcs agentv1alpha1.PodCheckpointList
	if err := k.List(ctx, &pcs); err == nil {
		for i := range pcs.Items {
			pc := &pcs.Items[i]
			want := pc.Status.Phase
			switch pc.Spec.Action {
			case agentv1alpha1.CheckpointActionCheckpoint, "":
				if pc.Status.Phase == "" {
					// Play the restore webhook early: every member is this
					// one API server, so the source pod is also the target
					// pod the descheduler checks in Restoring; it must carry
					// the annotation naming the PodRestore (app-<uid8>).
					w.markRestored(ctx, pc)
					want = agentv1alpha1.PodCheckpointCheckpointed
					pc.Status.Containers = []agentv1alpha1.ContainerCheckpointStatus{{Name: "app", ArchiveSizeBytes: 4096,
						Image: checkpointImage(pc, "app")}}
				}
			case agentv1alpha1.CheckpointActionThaw:
				w.mu.Lock()
				if _, seen := w.thawWithWorkload[pc.Namespace]; !seen {
					err := k.Get(ctx, client.ObjectKey{Namespace: pc.Namespace, Name: "app"}, &appsv1.Deployment{})
					w.thawWithWorkload[pc.Namespace] = err == nil
				}
				w.mu.Unlock()
				want = agentv1alpha1.PodCheckpointThawed
			case agentv1alpha1.CheckpointActionRelease:
				want = agentv1alpha1.PodCheckpointReleased
			}
			if want != pc.Status.Phase {
				pc.Status.Phase = want
				_ = k.Status().Update(ctx, pc)
			}
		}
	}
	var vrs agentv1alpha1.VolumeReplicationList
	if err := k.List(ctx, &vrs); err == nil {
		for i := range vrs.Items {
			vr := &vrs.Items[i]
			st := vr.Status
			switch {
			case vr.Spec.Abort:
				st.Phase = agentv1alpha1.VolumeReplicationAborted
			case vr.Spec.Role == agentv1alpha1.ReplicationRoleTarget:
				st.Phase, st.Endpoint = agentv1alpha1.VolumeReplicationListening, "127.0.0.1:7400"
			case vr.Spec.Stage == agentv1alpha1.ReplicationStageFinal:
				st.Phase, st.Round, st.LastDeltaBytes, st.BytesSent, st.Checksum =
					agentv1alpha1.VolumeReplicationCompleted, 3, 512, 1<<20+2048+512, agentv1alpha1.ChecksumMatch
			default:
				st.Phase, st.Round, st.LastDeltaBytes, st.BytesSent, st.RateBytesPerSecond =
					agentv1alpha1.VolumeReplicationPreCopied, 2, 2048, 1<<20+2048, 50<<20
			}
			if st.Phase != vr.Status.Phase {
				vr.Status = st
				_ = k.Status().Update(ctx, vr)
			}
		}
	}
	var prs agentv1alpha1.PodRestoreList
	if err := k.List(ctx, &prs); err == nil {
		for i := range prs.Items {
			pr := &prs.Items[i]
			w.mu.Lock()
			stalled := w.stallRestore[pr.Namespace]
			w.mu.Unlock()
			if stalled || len(pr.Status.Claims) > 0 {
				continue
			}
			for _, cp := range pr.Spec.Checkpoints {
				pr.Status.Claims = append(pr.Status.Claims, agentv1alpha1.RestoreClaim{Checkpoint: cp.Name, Key: cp.Name,
					PodName: cp.Name, Phase: agentv1alpha1.RestoreClaimRunning, ClaimTime: metav1.Now()})
			}
			pr.Status.Phase = agentv1alpha1.PodRestoreRestored
			_ = k.Status().Update(ctx, pr)
		}
	}
	var rbs workv1alpha2.ResourceBindingList
	if err := k.List(ctx, &rbs); err == nil {
		for i := range rbs.Items {
			rb := &rbs.Items[i]
			if rb.Status.SchedulerObservedGeneration != rb.Generation {
				rb.Status.SchedulerObservedGeneration = rb.Generation
				_ = k.Status().Update(ctx, rb)
			}
		}
	}
	var deps appsv1.DeploymentList
	if err := k.List(ctx, &deps); err == nil {
		for i := range deps.Items {
			d := &deps.Items[i]
			if !d.DeletionTimestamp.IsZero() {
				d.Finalizers = nil
				if err := k.Update(ctx, d); err != nil && !apierrors.IsNotFound(err) {
					continue
				}
				continue
			}
			if d.Status.ObservedGeneration != d.Generation || d.Status.ReadyReplicas != *d.Spec.Replicas {
				d.Status.ObservedGeneration = d.Generation
				d.Status.Replicas, d.Status.ReadyReplicas, d.Status.UpdatedReplicas, d.Status.AvailableReplicas =
					*d.Spec.Replicas, *d.Spec.Replicas, *d.Spec.Replicas, *d.Spec.Replicas
				_ = k.Status().Update(ctx, d)
			}
		}
	}
}
