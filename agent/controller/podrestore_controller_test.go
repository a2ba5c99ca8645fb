package controller

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/events"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	agentv1alpha1 "github.com/livemigrate/livemigrate/api/agent/v1alpha1"
	"github.com/livemigrate/livemigrate/test/builder"
)

func restoredPod(name, key string, phase corev1.PodPhase, ready bool) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "db", UID: types.UID("uid-" + name),
			Labels:      map[string]string{agentv1alpha1.LabelRestoredFrom: "r"},
			Annotations: map[string]string{agentv1alpha1.AnnotationRestore: "r", agentv1alpha1.AnnotationRestoreClaim: key}},
		Status: corev1.PodStatus{Phase: phase},
	}
	if ready {
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
	}
	return p
}

func withContainer(p *corev1.Pod, cs corev1.ContainerStatus) *corev1.Pod {
	p.Status.ContainerStatuses = append(p.Status.ContainerStatuses, cs)
	return p
}

func TestPodRestoreFollowsPods(t *testing.T) {
	claimAt := metav1.NewTime(t0)
	readyAt := metav1.NewTime(t0.Add(time.Minute))
	claim := func(cp, key string) agentv1alpha1.RestoreClaim {
		return agentv1alpha1.RestoreClaim{Checkpoint: cp, Key: key, Phase: agentv1alpha1.RestoreClaimClaimed, ClaimTime: claimAt}
	}
	cases := []struct {
		name      string
		claims    []agentv1alpha1.RestoreClaim
		pods      []client.Object
		now       time.Time
		wantPhase agentv1alpha1.PodRestorePhase
		// wantMessage, when set, is the PodRestore's status message.
		wantMessage string
		wantClaims  []agentv1alpha1.RestoreClaim
		wantAfter   time.Duration
	}{
		{
			name: "pods ready: restored", now: t0.Add(time.Minute),
			claims:    []agentv1alpha1.RestoreClaim{claim("a", "web-0"), claim("b", "web-1")},
			pods:      []client.Object{restoredPod("web-0", "web-0", corev1.PodRunning, true), restoredPod("web-1", "web-1", corev1.PodRunning, true)},
			wantPhase: agentv1alpha1.PodRestoreRestored,
			wantClaims: []agentv1alpha1.RestoreClaim{
				{Checkpoint: "a", Key: "web-0", PodName: "web-0", PodUID: "uid-web-0", Phase: agentv1alpha1.RestoreClaimReady, ClaimTime: claimAt, ReadyTime: &readyAt},
				{Checkpoint: "b", Key: "web-1", PodName: "web-1", PodUID: "uid-web-1", Phase: agentv1alpha1.RestoreClaimReady, ClaimTime: claimAt, ReadyTime: &readyAt},
			},
		},
		{
			name: "one running, one pending: restoring", now: t0.Add(time.Minute),
			claims:    []agentv1alpha1.RestoreClaim{claim("a", "web-0"), claim("b", "admission-uid")},
			pods:      []client.Object{restoredPod("web-0", "web-0", corev1.PodRunning, false), restoredPod("api-x1", "admission-uid", corev1.PodPending, false)},
			wantPhase: agentv1alpha1.PodRestoreRestoring,
			wantClaims: []agentv1alpha1.RestoreClaim{
				{Checkpoint: "a", Key: "web-0", PodName: "web-0", PodUID: "uid-web-0", Phase: agentv1alpha1.RestoreClaimRunning, ClaimTime: claimAt},
				{Checkpoint: "b", Key: "admission-uid", PodName: "api-x1", PodUID: "uid-api-x1", Phase: agentv1alpha1.RestoreClaimCreated, ClaimTime: claimAt},
			},
		},
		{
			name: "failed pod: failed", now: t0.Add(time.Minute),
			claims:    []agentv1alpha1.RestoreClaim{claim("a", "web-0"), claim("b", "web-1")},
			pods:      []client.Object{restoredPod("web-0", "web-0", corev1.PodFailed, false)},
			wantPhase: agentv1alpha1.PodRestoreFailed,
			wantClaims: []agentv1alpha1.RestoreClaim{
				{Checkpoint: "a", Key: "web-0", PodName: "web-0", PodUID: "uid-web-0", Phase: agentv1alpha1.RestoreClaimFailed, Message: "pod failed:", ClaimTime: claimAt},
				claim("b", "web-1"),
			},
			wantAfter: time.Minute,
		},
		{
			name: "checkpoint image cannot be pulled: failed at once, with the kubelet's reason", now: t0.Add(time.Minute),
			claims: []agentv1alpha1.RestoreClaim{claim("a", "web-0")},
			pods: []client.Object{withContainer(restoredPod("web-0", "web-0", corev1.PodPending, false), corev1.ContainerStatus{Name: "app",
				State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ErrImagePull", Message: "connection refused"}}})},
			wantPhase:   agentv1alpha1.PodRestoreFailed,
			wantMessage: "restored pod for checkpoint a failed: container app cannot start from the checkpoint image: ErrImagePull: connection refused",
			wantClaims: []agentv1alpha1.RestoreClaim{
				{Checkpoint: "a", Key: "web-0", PodName: "web-0", PodUID: "uid-web-0", Phase: agentv1alpha1.RestoreClaimFailed, ClaimTime: claimAt,
					Message: "container app cannot start from the checkpoint image: ErrImagePull: connection refused"},
			},
		},
		{
			name: "still creating the container: not failed", now: t0.Add(time.Minute),
			claims: []agentv1alpha1.RestoreClaim{claim("a", "web-0")},
			pods: []client.Object{withContainer(restoredPod("web-0", "web-0", corev1.PodPending, false), corev1.ContainerStatus{Name: "app",
				State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}}})},
			wantPhase: agentv1alpha1.PodRestoreRestoring,
			wantClaims: []agentv1alpha1.RestoreClaim{
				{Checkpoint: "a", Key: "web-0", PodName: "web-0", PodUID: "uid-web-0", Phase: agentv1alpha1.RestoreClaimCreated, ClaimTime: claimAt},
			},
		},
		{
			name: "restored container restarted: failed", now: t0.Add(time.Minute),
			claims: []agentv1alpha1.RestoreClaim{claim("a", "web-0")},
			pods: []client.Object{withContainer(restoredPod("web-0", "web-0", corev1.PodRunning, false), corev1.ContainerStatus{Name: "app", RestartCount: 1,
				State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}})},
			wantPhase: agentv1alpha1.PodRestoreFailed,
			wantClaims: []agentv1alpha1.RestoreClaim{
				{Checkpoint: "a", Key: "web-0", PodName: "web-0", PodUID: "uid-web-0", Phase: agentv1alpha1.RestoreClaimFailed, ClaimTime: claimAt,
					Message: "container app exited after the restore and was restarted 1 times"},
			},
		},
		{
			name: "a failed claim stays failed when its pod runs later", now: t0.Add(time.Minute),
			claims:    []agentv1alpha1.RestoreClaim{{Checkpoint: "a", Key: "web-0", PodName: "web-0", PodUID: "uid-web-0", Phase: agentv1alpha1.RestoreClaimFailed, ClaimTime: claimAt, Message: "container app cannot start"}},
			pods:      []client.Object{restoredPod("web-0", "web-0", corev1.PodRunning, true)},
			wantPhase: agentv1alpha1.PodRestoreFailed,
			wantClaims: []agentv1alpha1.RestoreClaim{
				{Checkpoint: "a", Key: "web-0", PodName: "web-0", PodUID: "uid-web-0", Phase: agentv1alpha1.RestoreClaimFailed, ClaimTime: claimAt, Message: "container app cannot start"},
			},
		},
		{
			name: "claim whose pod never appeared is freed after the TTL", now: t0.Add(3 * time.Minute),
			claims:     []agentv1alpha1.RestoreClaim{claim("a", "lost-uid")},
			wantPhase:  agentv1alpha1.PodRestorePending,
			wantClaims: nil,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := runtime.NewScheme()
			_ = clientgoscheme.AddToScheme(s)
			_ = agentv1alpha1.AddToScheme(s)
			pr := builder.MakePodRestore("db", "r", "m", "StatefulSet", "web").Checkpoint("a", nil).Checkpoint("b", nil).
				Phase(agentv1alpha1.PodRestoreRestoring).Claims(tc.claims...).Obj()
			c := fake.NewClientBuilder().WithScheme(s).WithObjects(append(tc.pods, pr)...).WithStatusSubresource(pr).Build()
			r := &PodRestoreReconciler{Client: c, Recorder: events.NewFakeRecorder(10), Clock: clocktesting.NewFakeClock(tc.now), ClaimTTL: 2 * time.Minute}
			res, err := r.Reconcile(context.Background(), reconcile.Request{NamespacedName: types.NamespacedName{Namespace: "db", Name: "r"}})
			if err != nil {
				t.Fatal(err)
			}
			got := &agentv1alpha1.PodRestore{}
			_ = c.Get(context.Background(), types.NamespacedName{Namespace: "db", Name: "r"}, got)
			if got.Status.Phase != tc.wantPhase {
				t.Errorf("phase %q, want %q", got.Status.Phase, tc.wantPhase)
			}
			if tc.wantMessage != "" && got.Status.Message != tc.wantMessage {
				t.Errorf("message %q, want %q", got.Status.Message, tc.wantMessage)
			}
			if diff := cmp.Diff(tc.wantClaims, got.Status.Claims, cmpopts.EquateEmpty(), cmpopts.EquateApproxTime(time.Second)); diff != "" {
				t.Errorf("claims (-want +got):\n%s", diff)
			}
			if res.RequeueAfter != tc.wantAfter {
				t.Errorf("RequeueAfter %v, want %v", res.RequeueAfter, tc.wantAfter)
			}
		})
	}
}

// gatedPod is a target pod as the restore webhook admits it while its
// checkpoint images are pushed: annotated, labelled, gated, images untouched.
func gatedPod(name, checkpoint string, extraGates ...string) *corev1.Pod {
	p := restoredPod(name, name, corev1.PodPending, false)
	p.Annotations[agentv1alpha1.AnnotationRestoreCheckpoint] = checkpoint
	p.Spec.Containers = []corev1.Container{{Name: "app", Image: "livemigrate.io/labapp:latest"}, {Name: "sidecar", Image: "busybox"}}
	for _, g := range extraGates {
		p.Spec.SchedulingGates = append(p.Spec.SchedulingGates, corev1.PodSchedulingGate{Name: g})
	}
	p.Spec.SchedulingGates = append(p.Spec.SchedulingGates, corev1.PodSchedulingGate{Name: agentv1alpha1.SchedulingGateCheckpointImage})
	return p
}

// TestPodRestoreUngatesOncePushed checks that a gated pod stays gated, with
// its images untouched, while its checkpoint images are not recorded; that
// once they are, one pod update sets every checkpoint image and removes the
// gate (other gates kept); and that reconciling again writes nothing.
func TestPodRestoreUngatesOncePushed(t *testing.T) {
	ctx := context.Background()
	s := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(s)
	_ = agentv1alpha1.AddToScheme(s)
	pr := builder.MakePodRestore("db", "r", "m", "StatefulSet", "web").
		Checkpoint("web-0", nil, "app", ""). // not pushed yet
		Checkpoint("web-1", nil, "app", "reg.lab/lm/web-1-app@sha256:11").
		Phase(agentv1alpha1.PodRestoreRestoring).Claims(
		agentv1alpha1.RestoreClaim{Checkpoint: "web-0", Key: "web-0", Phase: agentv1alpha1.RestoreClaimClaimed, ClaimTime: metav1.NewTime(t0)},
		agentv1alpha1.RestoreClaim{Checkpoint: "web-1", Key: "web-1", Phase: agentv1alpha1.RestoreClaimClaimed, ClaimTime: metav1.NewTime(t0)},
	).Obj()
	updates := map[string]int{}
	c := fake.NewClientBuilder().WithScheme(s).
		WithObjects(pr, gatedPod("web-0", "web-0"), gatedPod("web-1", "web-1", "example.com/quota")).
		WithStatusSubresource(pr).
		WithInterceptorFuncs(interceptor.Funcs{Update: func(ctx context.Context, cl client.WithWatch, obj client.Object, opts ...client.UpdateOption) error {
			if _, ok := obj.(*corev1.Pod); ok {
				updates[obj.GetName()]++
			}
			return cl.Update(ctx, obj, opts...)
		}}).Build()
	r := &PodRestoreReconciler{Client: c, Recorder: events.NewFakeRecorder(10), Clock: clocktesting.NewFakeClock(t0), ClaimTTL: 2 * time.Minute}
	reconcileOnce := func() {
		t.Helper()
		if _, err := r.Reconcile(ctx, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: "db", Name: "r"}}); err != nil {
			t.Fatal(err)
		}
	}
	pod := func(name string) *corev1.Pod {
		t.Helper()
		p := &corev1.Pod{}
		if err := c.Get(ctx, types.NamespacedName{Namespace: "db", Name: name}, p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	imagesOf := func(p *corev1.Pod) []string {
		var out []string
		for _, c := range p.Spec.Containers {
			out = append(out, c.Image)
		}
		return out
	}
	gatesOf := func(p *corev1.Pod) []string {
		var out []string
		for _, g := range p.Spec.SchedulingGates {
			out = append(out, g.Name)
		}
		return out
	}

	reconcileOnce()
	reconcileOnce()
	// web-1's images are recorded: released once, its other gate kept.
	p1 := pod("web-1")
	if diff := cmp.Diff([]string{"reg.lab/lm/web-1-app@sha256:11", "busybox"}, imagesOf(p1)); diff != "" {
		t.Errorf("web-1 images (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"example.com/quota"}, gatesOf(p1)); diff != "" {
		t.Errorf("web-1 scheduling gates (-want +got):\n%s", diff)
	}
	// web-0's images are still pushed: untouched, gated.
	p0 := pod("web-0")
	if diff := cmp.Diff([]string{"livemigrate.io/labapp:latest", "busybox"}, imagesOf(p0)); diff != "" {
		t.Errorf("web-0 images changed before they were recorded (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{agentv1alpha1.SchedulingGateCheckpointImage}, gatesOf(p0)); diff != "" {
		t.Errorf("web-0 scheduling gates (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]int{"web-1": 1}, updates); diff != "" {
		t.Errorf("pod updates (-want +got):\n%s", diff)
	}

	// The push of web-0 ends: its image is recorded in the PodRestore.
	latest := &agentv1alpha1.PodRestore{}
	if err := c.Get(ctx, types.NamespacedName{Namespace: "db", Name: "r"}, latest); err != nil {
		t.Fatal(err)
	}
	latest.Spec.Checkpoints[0].Containers[0].Image = "reg.lab/lm/web-0-app@sha256:00"
	if err := c.Update(ctx, latest); err != nil {
		t.Fatal(err)
	}
	reconcileOnce()
	reconcileOnce()
	p0 = pod("web-0")
	if diff := cmp.Diff([]string{"reg.lab/lm/web-0-app@sha256:00", "busybox"}, imagesOf(p0)); diff != "" {
		t.Errorf("web-0 images (-want +got):\n%s", diff)
	}
	if len(p0.Spec.SchedulingGates) != 0 {
		t.Errorf("web-0 still gated: %v", gatesOf(p0))
	}
	if diff := cmp.Diff(map[string]int{"web-0": 1, "web-1": 1}, updates); diff != "" {
		t.Errorf("pod updates (-want +got):\n%s", diff)
	}
}
