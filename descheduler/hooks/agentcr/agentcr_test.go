package agentcr

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	agentv1alpha1 "github.com/livemigrate/livemigrate/api/agent/v1alpha1"
	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
	"github.com/livemigrate/livemigrate/descheduler/migration"
	"github.com/livemigrate/livemigrate/test/builder"
)

type clients map[string]client.Client

func (c clients) Get(_ context.Context, name string) (client.Client, error) {
	if cl, ok := c[name]; ok {
		return cl, nil
	}
	return nil, fmt.Errorf("no client for cluster %s", name)
}

func member(objs ...client.Object) client.Client {
	return fake.NewClientBuilder().WithScheme(builder.Scheme()).WithObjects(objs...).
		WithStatusSubresource(&agentv1alpha1.PodCheckpoint{}, &agentv1alpha1.PodRestore{}, &agentv1alpha1.VolumeReplication{}).Build()
}

var mig = migration.Migration{
	UID: "0123456789abcdef", Namespace: "ns", Name: "mig", Source: "a", Target: "b",
	Workload: lmv1alpha1.WorkloadReference{APIVersion: "apps/v1", Kind: "StatefulSet", Name: "db"},
}

func sourcePod() *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "db-0", UID: "pod-uid"},
		Spec: corev1.PodSpec{NodeName: "n1", Containers: []corev1.Container{
			{Name: "db", Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("1Gi")}}},
			{Name: "sidecar", Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi")}}},
			{Name: "bare"},
		}},
	}
}

func TestCheckpointLifecycle(t *testing.T) {
	ctx := context.Background()
	src := member(sourcePod())
	h := &Checkpoint{Clients: clients{"a": src}, Destination: agentv1alpha1.CheckpointDestination{Repository: "reg:5000/lm"}, DefaultEstimate: resource.MustParse("16Mi")}
	pod := migration.Pod{Name: "db-0", Node: "n1", Containers: []string{"db"}, Ordinal: ptr.To[int32](0)}

	est, err := h.EstimateSize(ctx, mig, pod)
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(1<<30 + 64<<20 + 16<<20); est != want {
		t.Errorf("estimate = %d, want %d", est, want)
	}

	cs, err := h.Freeze(ctx, mig, pod)
	if err != nil {
		t.Fatal(err)
	}
	if cs.Frozen {
		t.Errorf("frozen before the agent reported it")
	}
	pc := &agentv1alpha1.PodCheckpoint{}
	if err := src.Get(ctx, types.NamespacedName{Namespace: "ns", Name: "db-0-01234567"}, pc); err != nil {
		t.Fatalf("PodCheckpoint not created: %v", err)
	}
	wantSpec := agentv1alpha1.PodCheckpointSpec{NodeName: "n1", PodName: "db-0", PodUID: "pod-uid", Containers: []string{"db"},
		MigrationUID: "0123456789abcdef", Destination: h.Destination, Action: agentv1alpha1.CheckpointActionCheckpoint}
	if diff := cmp.Diff(wantSpec, pc.Spec); diff != "" {
		t.Errorf("PodCheckpoint spec (-want +got):\n%s", diff)
	}
	if pc.Labels[LabelMigrationUID] != "0123456789abcdef" || pc.Annotations[AnnotationMigration] != "mig" {
		t.Errorf("PodCheckpoint not labelled for the watch: labels %v annotations %v", pc.Labels, pc.Annotations)
	}
	if _, err := h.Freeze(ctx, mig, pod); err != nil { // idempotent
		t.Fatal(err)
	}
	var list agentv1alpha1.PodCheckpointList
	if err := src.List(ctx, &list); err != nil || len(list.Items) != 1 {
		t.Fatalf("PodCheckpoints = %d (%v), want 1", len(list.Items), err)
	}

	// The agent's freeze time, to the microsecond.
	frozenAt := time.Date(2026, 1, 2, 3, 4, 5, 123456000, time.Local)
	steps := []struct {
		phase agentv1alpha1.PodCheckpointPhase
		want  migration.CheckpointState
	}{
		{agentv1alpha1.PodCheckpointFrozen, migration.CheckpointState{Frozen: true, FrozenAt: frozenAt}},
		{agentv1alpha1.PodCheckpointPushing, migration.CheckpointState{Frozen: true, FrozenAt: frozenAt, Checkpointed: true, Bytes: 100}},
		{agentv1alpha1.PodCheckpointCheckpointed, migration.CheckpointState{Frozen: true, FrozenAt: frozenAt, Checkpointed: true, Pushed: true, Bytes: 100,
			Images: map[string]string{"db": "reg:5000/lm/ns-db-0-db:0123456789abcdef"}}},
	}
	for _, s := range steps {
		pc.Status.FrozenAt = &metav1.MicroTime{Time: frozenAt}
		pc.Status.Phase = s.phase
		pc.Status.Containers = []agentv1alpha1.ContainerCheckpointStatus{{Name: "db", ArchiveSizeBytes: 100, Image: "reg:5000/lm/ns-db-0-db:0123456789abcdef"}}
		if err := src.Status().Update(ctx, pc); err != nil {
			t.Fatal(err)
		}
		got, err := h.Transfer(ctx, mig, pod)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(s.want, got); diff != "" {
			t.Errorf("state in %s (-want +got):\n%s", s.phase, diff)
		}
	}

	// Rollback: Thaw flips the action, done once the agent says Thawed.
	done, err := h.Thaw(ctx, mig, pod)
	if err != nil || done {
		t.Fatalf("Thaw = %v, %v; want not done yet", done, err)
	}
	if err := src.Get(ctx, client.ObjectKeyFromObject(pc), pc); err != nil {
		t.Fatal(err)
	}
	if pc.Spec.Action != agentv1alpha1.CheckpointActionThaw {
		t.Fatalf("action = %s, want Thaw", pc.Spec.Action)
	}
	pc.Status.Phase = agentv1alpha1.PodCheckpointThawed
	if err := src.Status().Update(ctx, pc); err != nil {
		t.Fatal(err)
	}
	if done, err := h.Thaw(ctx, mig, pod); err != nil || !done {
		t.Fatalf("Thaw = %v, %v; want done", done, err)
	}
	if _, err := h.Release(ctx, mig, pod); err == nil {
		t.Errorf("Release after Thaw accepted; the agent's API allows one move out of Checkpoint")
	}
}

func TestCheckpointRepositoryPerTargetCluster(t *testing.T) {
	ctx := context.Background()
	pod := migration.Pod{Name: "db-0", Node: "n1", Containers: []string{"db"}}
	dest := agentv1alpha1.CheckpointDestination{Repository: "reg:5000/lm", Insecure: true, PushSecretRef: &corev1.LocalObjectReference{Name: "push"}}
	for target, want := range map[string]string{"b": "reg-b:5000/lm", "c": "reg:5000/lm"} {
		src := member(sourcePod())
		h := &Checkpoint{Clients: clients{"a": src}, Destination: dest, RepositoryFor: map[string]string{"b": "reg-b:5000/lm"}}
		m := mig
		m.Target = target
		if _, err := h.Freeze(ctx, m, pod); err != nil {
			t.Fatal(err)
		}
		pc := &agentv1alpha1.PodCheckpoint{}
		if err := src.Get(ctx, types.NamespacedName{Namespace: "ns", Name: "db-0-01234567"}, pc); err != nil {
			t.Fatal(err)
		}
		wantDest := dest
		wantDest.Repository = want
		if diff := cmp.Diff(wantDest, pc.Spec.Destination); diff != "" {
			t.Errorf("target %s: destination (-want +got):\n%s", target, diff)
		}
		// The repository is fixed at creation: a controller restarted with
		// another mapping keeps pushing where the migration started.
		h.RepositoryFor = map[string]string{target: "elsewhere:5000/lm"}
		if _, err := h.Freeze(ctx, m, pod); err != nil {
			t.Fatal(err)
		}
		if err := src.Get(ctx, types.NamespacedName{Namespace: "ns", Name: "db-0-01234567"}, pc); err != nil {
			t.Fatal(err)
		}
		if pc.Spec.Destination.Repository != want {
			t.Errorf("target %s: repository changed to %s after a restart", target, pc.Spec.Destination.Repository)
		}
	}
}

func TestCheckpointFailureIsPermanent(t *testing.T) {
	ctx := context.Background()
	pc := &agentv1alpha1.PodCheckpoint{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "db-0-01234567"},
		Status: agentv1alpha1.PodCheckpointStatus{Phase: agentv1alpha1.PodCheckpointFailed, Message: "criu dump failed"}}
	h := &Checkpoint{Clients: clients{"a": member(sourcePod(), pc)}}
	_, err := h.Checkpoint(ctx, mig, migration.Pod{Name: "db-0", Node: "n1"})
	if !migration.IsStepFailed(err) {
		t.Fatalf("err = %v, want a StepFailedError", err)
	}
}

func TestThawWithoutCheckpointIsDone(t *testing.T) {
	h := &Checkpoint{Clients: clients{"a": member()}}
	done, err := h.Thaw(context.Background(), mig, migration.Pod{Name: "db-0"})
	if err != nil || !done {
		t.Fatalf("Thaw = %v, %v; want done (nothing was frozen)", done, err)
	}
}

func TestRestoreLifecycle(t *testing.T) {
	ctx := context.Background()
	dst := member()
	h := &Restore{Clients: clients{"b": dst}}
	cps := []migration.PodCheckpoint{{Pod: migration.Pod{Name: "db-0", Ordinal: ptr.To[int32](0)}, Images: map[string]string{"db": "img-db", "agent": "img-agent"}}}
	for i := 0; i < 2; i++ {
		if err := h.Prepare(ctx, mig, cps); err != nil {
			t.Fatal(err)
		}
	}
	pr := &agentv1alpha1.PodRestore{}
	if err := dst.Get(ctx, types.NamespacedName{Namespace: "ns", Name: "db-01234567"}, pr); err != nil {
		t.Fatalf("PodRestore not created: %v", err)
	}
	want := agentv1alpha1.PodRestoreSpec{MigrationUID: "0123456789abcdef",
		Workload: agentv1alpha1.WorkloadReference{APIVersion: "apps/v1", Kind: "StatefulSet", Name: "db"},
		Checkpoints: []agentv1alpha1.RestoreCheckpoint{{Name: "db-0", Ordinal: ptr.To[int32](0),
			Containers: []agentv1alpha1.ContainerImage{{Name: "agent", Image: "img-agent"}, {Name: "db", Image: "img-db"}}}}}
	if diff := cmp.Diff(want, pr.Spec); diff != "" {
		t.Errorf("PodRestore spec (-want +got):\n%s", diff)
	}
	rs, err := h.Status(ctx, mig)
	if err != nil || rs.Restored["db-0"] {
		t.Fatalf("Status = %+v, %v; want not restored yet", rs, err)
	}
	pr.Status.Claims = []agentv1alpha1.RestoreClaim{{Checkpoint: "db-0", Key: "db-0", PodName: "db-0", Phase: agentv1alpha1.RestoreClaimRunning}}
	if err := dst.Status().Update(ctx, pr); err != nil {
		t.Fatal(err)
	}
	if rs, err := h.Status(ctx, mig); err != nil || !rs.Restored["db-0"] {
		t.Fatalf("Status = %+v, %v; want db-0 restored", rs, err)
	}
	// The target workload's pods: db-0 went through the webhook; db-1 was
	// admitted unchanged (webhook down), a pod of another workload and a
	// pod being deleted do not count.
	sts := &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "db"},
		Spec: appsv1.StatefulSetSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}}}}
	pod := func(name string, labels, annotations map[string]string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, Labels: labels, Annotations: annotations}}
	}
	restored := pod("db-0", map[string]string{"app": "db"}, map[string]string{agentv1alpha1.AnnotationRestore: pr.Name, agentv1alpha1.AnnotationRestoreCheckpoint: "db-0"})
	restored.Spec.Containers = []corev1.Container{{Name: "agent", Image: "img-agent"}, {Name: "db", Image: "img-db"}}
	for _, o := range []client.Object{sts, restored, pod("other", map[string]string{"app": "web"}, nil)} {
		if err := dst.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	if rs, err := h.Status(ctx, mig); err != nil || len(rs.Unmutated)+len(rs.Ungated) != 0 {
		t.Fatalf("Status = %+v, %v; want no unmutated pod", rs, err)
	}
	if err := dst.Create(ctx, pod("db-1", map[string]string{"app": "db"}, nil)); err != nil {
		t.Fatal(err)
	}
	if rs, err := h.Status(ctx, mig); err != nil || !cmp.Equal(rs.Unmutated, []string{"db-1"}) {
		t.Fatalf("Status = %+v, %v; want db-1 unmutated", rs, err)
	}
	gone := pod("db-1", nil, nil)
	if err := dst.Delete(ctx, gone); err != nil {
		t.Fatal(err)
	}

	pr.Status.Claims[0].Phase = agentv1alpha1.RestoreClaimFailed
	pr.Status.Claims[0].Message = "container db cannot start from the checkpoint image: ErrImagePull: connection refused"
	if err := dst.Status().Update(ctx, pr); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Status(ctx, mig); !migration.IsStepFailed(err) || !strings.Contains(err.Error(), "ErrImagePull: connection refused") {
		t.Fatalf("failed claim: err = %v, want StepFailedError saying why", err)
	}
	done, err := h.Remove(ctx, mig)
	if err != nil {
		t.Fatal(err)
	}
	if !done {
		if done, err = h.Remove(ctx, mig); err != nil || !done {
			t.Fatalf("Remove = %v, %v; want done once deleted", done, err)
		}
	}
	if err := dst.Get(ctx, client.ObjectKeyFromObject(pr), pr); err == nil {
		t.Errorf("PodRestore still exists")
	}
}

// TestRestorePreparedAtTheFreeze follows a PodRestore written at the
// freeze, before the push: no images, then the images added once; and the
// target pods Status accepts (gated, or running the checkpoint images) and
// reports (admitted ungated while the images were pushed).
func TestRestorePreparedAtTheFreeze(t *testing.T) {
	ctx := context.Background()
	dst := member()
	h := &Restore{Clients: clients{"b": dst}}
	pod0 := migration.Pod{Name: "db-0", Ordinal: ptr.To[int32](0), Containers: []string{"db", "agent"}}
	if err := h.Prepare(ctx, mig, []migration.PodCheckpoint{{Pod: pod0}}); err != nil {
		t.Fatal(err)
	}
	key := types.NamespacedName{Namespace: "ns", Name: "db-01234567"}
	pr := &agentv1alpha1.PodRestore{}
	if err := dst.Get(ctx, key, pr); err != nil {
		t.Fatalf("PodRestore not created: %v", err)
	}
	want := []agentv1alpha1.RestoreCheckpoint{{Name: "db-0", Ordinal: ptr.To[int32](0),
		Containers: []agentv1alpha1.ContainerImage{{Name: "agent"}, {Name: "db"}}}}
	if diff := cmp.Diff(want, pr.Spec.Checkpoints); diff != "" {
		t.Errorf("checkpoints at the freeze (-want +got):\n%s", diff)
	}

	sts := &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "db"},
		Spec: appsv1.StatefulSetSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}}}}
	gated := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "db-0", Labels: map[string]string{"app": "db"},
		Annotations: map[string]string{agentv1alpha1.AnnotationRestore: pr.Name, agentv1alpha1.AnnotationRestoreCheckpoint: "db-0"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "agent", Image: "agent:1"}, {Name: "db", Image: "db:1"}},
			SchedulingGates: []corev1.PodSchedulingGate{{Name: agentv1alpha1.SchedulingGateCheckpointImage}}}}
	for _, o := range []client.Object{sts, gated} {
		if err := dst.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	if rs, err := h.Status(ctx, mig); err != nil || len(rs.Unmutated)+len(rs.Ungated) != 0 {
		t.Fatalf("Status = %+v, %v; want the gated pod accepted", rs, err)
	}
	// Admitted with the annotation but without the gate while the images
	// are not recorded: it would start fresh.
	ungated := gated.DeepCopy()
	ungated.Spec.SchedulingGates = nil
	if err := dst.Update(ctx, ungated); err != nil {
		t.Fatal(err)
	}
	if rs, err := h.Status(ctx, mig); err != nil || len(rs.Unmutated) != 0 || !cmp.Equal(rs.Ungated, []string{"db-0"}) {
		t.Fatalf("Status = %+v, %v; want db-0 reported ungated (before its images were recorded)", rs, err)
	}

	// The push ends: the images are added, once.
	images := map[string]string{"db": "img-db", "agent": "img-agent"}
	for _, imgs := range []map[string]string{images, {"db": "other", "agent": "other"}} {
		if err := h.Prepare(ctx, mig, []migration.PodCheckpoint{{Pod: pod0, Images: imgs}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := dst.Get(ctx, key, pr); err != nil {
		t.Fatal(err)
	}
	want[0].Containers = []agentv1alpha1.ContainerImage{{Name: "agent", Image: "img-agent"}, {Name: "db", Image: "img-db"}}
	if diff := cmp.Diff(want, pr.Spec.Checkpoints); diff != "" {
		t.Errorf("checkpoints after the push (-want +got):\n%s", diff)
	}
	// Still running its own images: reported; released to the checkpoint
	// images (as the restore controller does): accepted.
	if rs, err := h.Status(ctx, mig); err != nil || !cmp.Equal(rs.Ungated, []string{"db-0"}) {
		t.Fatalf("Status = %+v, %v; want db-0 reported ungated (not running its checkpoint images)", rs, err)
	}
	if err := dst.Get(ctx, client.ObjectKeyFromObject(ungated), ungated); err != nil {
		t.Fatal(err)
	}
	ungated.Spec.Containers = []corev1.Container{{Name: "agent", Image: "img-agent"}, {Name: "db", Image: "img-db"}}
	if err := dst.Update(ctx, ungated); err != nil {
		t.Fatal(err)
	}
	if rs, err := h.Status(ctx, mig); err != nil || len(rs.Unmutated)+len(rs.Ungated) != 0 {
		t.Fatalf("Status = %+v, %v; want the released pod accepted", rs, err)
	}
}
