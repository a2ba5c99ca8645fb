package controller

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/registry"
	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/events"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/livemigrate/livemigrate/agent/archive"
	"github.com/livemigrate/livemigrate/agent/archive/layout"
	"github.com/livemigrate/livemigrate/agent/checkpointimage"
	"github.com/livemigrate/livemigrate/agent/freezer"
	"github.com/livemigrate/livemigrate/agent/kubelet"
	agentv1alpha1 "github.com/livemigrate/livemigrate/api/agent/v1alpha1"
	"github.com/livemigrate/livemigrate/test/builder"
)

var t0 = time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)

// journal records the order of side effects.
type journal struct {
	mu  sync.Mutex
	ops []string
}

func (j *journal) add(s string) { j.mu.Lock(); j.ops = append(j.ops, s); j.mu.Unlock() }
func (j *journal) list() []string {
	j.mu.Lock()
	defer j.mu.Unlock()
	return append([]string(nil), j.ops...)
}

type fakeFreezer struct {
	j      *journal
	frozen map[string]bool
	// clk, when set, advances by took during each freeze.
	clk  *clocktesting.FakeClock
	took time.Duration
	// gone makes every cgroup not found (the pods were deleted).
	gone bool
}

func (f *fakeFreezer) PodPath(uid types.UID) (string, error) {
	return "kubepods/burstable/pod" + string(uid), nil
}
func (f *fakeFreezer) Freeze(_ context.Context, p string) error {
	f.j.add("freeze " + p)
	if f.clk != nil {
		f.clk.Step(f.took)
	}
	f.frozen[p] = true
	return nil
}
func (f *fakeFreezer) Thaw(_ context.Context, p string) error {
	f.j.add("thaw " + p)
	f.frozen[p] = false
	return nil
}
func (f *fakeFreezer) State(p string) (freezer.State, error) {
	if f.gone {
		return "", freezer.ErrPodCgroupNotFound
	}
	if f.frozen[p] {
		return freezer.Frozen, nil
	}
	return freezer.Thawed, nil
}

// fakeKubelet writes CRI-O layout archives into dir like the kubelet does.
type fakeKubelet struct {
	j       *journal
	dir     string
	err     error
	corrupt bool
	clk     *clocktesting.FakeClock
	// during, when set, runs during each checkpoint call.
	during func()
}

func (k *fakeKubelet) Checkpoint(_ context.Context, host string, port int, ns, pod, c string, timeout time.Duration) ([]string, error) {
	k.j.add("checkpoint " + c)
	if k.during != nil {
		k.during()
	}
	if k.err != nil {
		return nil, k.err
	}
	k.clk.Step(time.Second)
	name := layout.ArchiveName(pod, ns, c, k.clk.Now())
	p := filepath.Join(k.dir, name)
	f, err := os.Create(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if k.corrupt {
		tw := tar.NewWriter(f)
		_ = tw.WriteHeader(&tar.Header{Name: "../../etc/evil", Typeflag: tar.TypeReg, Size: 1, Mode: 0o600})
		_, _ = tw.Write([]byte("x"))
		return []string{"/var/lib/kubelet/checkpoints/" + name}, tw.Close()
	}
	images := filepath.Join(k.dir, "images-"+c)
	_ = os.MkdirAll(images, 0o700)
	_ = os.WriteFile(filepath.Join(images, "pages-1.img"), []byte(strings.Repeat(c, 1000)), 0o600)
	err = layout.Write(f, layout.Container{Name: c, PodName: pod, PodNamespace: ns, Image: "livemigrate.io/labapp:latest",
		Runtime: "runc", RuntimeVersion: "1.2", CRIUVersion: "4.1", Architecture: "amd64", CheckpointedAt: k.clk.Now()}, images)
	return []string{"/var/lib/kubelet/checkpoints/" + name}, err
}

type env struct {
	r       *PodCheckpointReconciler
	c       client.Client
	j       *journal
	fr      *fakeFreezer
	kl      *fakeKubelet
	rec     *events.FakeRecorder
	regHost string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	s := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(s)
	_ = agentv1alpha1.AddToScheme(s)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web-0", Namespace: "db", UID: "pod-uid-1"},
		Spec:       corev1.PodSpec{NodeName: "node-a", Containers: []corev1.Container{{Name: "app"}, {Name: "side"}}},
	}
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-a"}, Status: corev1.NodeStatus{
		Addresses:       []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "10.0.0.7"}},
		DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: 10250}},
	}}
	c := fake.NewClientBuilder().WithScheme(s).WithObjects(pod, node).
		WithStatusSubresource(&agentv1alpha1.PodCheckpoint{}).Build()
	srv := httptest.NewServer(registry.New())
	t.Cleanup(srv.Close)
	regHost := strings.TrimPrefix(srv.URL, "http://")
	dir := t.TempDir()
	j := &journal{}
	clk := clocktesting.NewFakeClock(t0)
	fr := &fakeFreezer{j: j, frozen: map[string]bool{}}
	kl := &fakeKubelet{j: j, dir: dir, clk: clk}
	rec := events.NewFakeRecorder(100)
	r := &PodCheckpointReconciler{
		Client: c, Recorder: rec, Clock: clk,
		NodeName: "node-a", CheckpointDir: dir, Limits: archive.DefaultLimits,
		InsecureRegistries: []string{regHost},
		Freezer:            fr, Checkpointer: kl, Inspect: archive.Inspect, Push: checkpointimage.PushArchive,
	}
	return &env{r: r, c: c, j: j, fr: fr, kl: kl, rec: rec, regHost: regHost}
}

func (e *env) create(t *testing.T, containers ...string) {
	t.Helper()
	pc := builder.MakePodCheckpoint("db", "mig-1-web-0", "node-a", "web-0", "mig-1").
		Containers(containers...).Repository(e.regHost + "/lm").Action(agentv1alpha1.CheckpointActionCheckpoint).TimeoutSeconds(30).Obj()
	if err := e.c.Create(context.Background(), pc); err != nil {
		t.Fatal(err)
	}
}

func (e *env) reconcile(t *testing.T) (*agentv1alpha1.PodCheckpoint, error) {
	t.Helper()
	_, err := e.r.Reconcile(context.Background(), reconcile.Request{NamespacedName: types.NamespacedName{Namespace: "db", Name: "mig-1-web-0"}})
	pc := &agentv1alpha1.PodCheckpoint{}
	if gerr := e.c.Get(context.Background(), types.NamespacedName{Namespace: "db", Name: "mig-1-web-0"}, pc); gerr != nil {
		t.Fatal(gerr)
	}
	return pc, err
}

func (e *env) setAction(t *testing.T, a agentv1alpha1.CheckpointAction) {
	t.Helper()
	pc := &agentv1alpha1.PodCheckpoint{}
	_ = e.c.Get(context.Background(), types.NamespacedName{Namespace: "db", Name: "mig-1-web-0"}, pc)
	pc.Spec.Action = a
	if err := e.c.Update(context.Background(), pc); err != nil {
		t.Fatal(err)
	}
}

func archives(t *testing.T, dir string) []string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(dir, "checkpoint-*.tar"))
	return m
}

// TestFrozenAtIsWhenTheFreezeWasRequested checks that status.frozenAt is
// the instant the agent asked the cgroup to freeze (before the freeze
// returned), kept to the microsecond.
func TestFrozenAtIsWhenTheFreezeWasRequested(t *testing.T) {
	e := newEnv(t)
	clk := e.r.Clock.(*clocktesting.FakeClock)
	clk.Step(123456 * time.Microsecond)
	requested := clk.Now()
	e.fr.clk, e.fr.took = clk, 300*time.Millisecond
	e.create(t)
	pc, err := e.reconcile(t)
	if err != nil {
		t.Fatalf("Reconcile: %v", err)
	}
	if pc.Status.FrozenAt == nil || !pc.Status.FrozenAt.Time.Equal(requested) {
		t.Errorf("frozenAt = %v, want %v (when the freeze was requested, to the microsecond)", pc.Status.FrozenAt, requested)
	}
}

func TestCheckpointHappyPathThenRelease(t *testing.T) {
	e := newEnv(t)
	e.create(t)
	pc, err := e.reconcile(t)
	if err != nil {
		t.Fatalf("Reconcile: %v", err)
	}
	wantOps := []string{"freeze kubepods/burstable/podpod-uid-1", "checkpoint app", "checkpoint side"}
	if diff := cmp.Diff(wantOps, e.j.list()); diff != "" {
		t.Errorf("side effects (-want +got):\n%s", diff)
	}
	if pc.Status.Phase != agentv1alpha1.PodCheckpointCheckpointed {
		t.Fatalf("phase %q (%s), want Checkpointed", pc.Status.Phase, pc.Status.Message)
	}
	if pc.Status.FreezeStartTime == nil || !pc.Status.FreezeStartTime.Time.Equal(t0) {
		t.Errorf("freezeStartTime = %v, want %v", pc.Status.FreezeStartTime, t0)
	}
	if pc.Status.CheckpointDuration == nil || pc.Status.CheckpointDuration.Duration != 2*time.Second {
		t.Errorf("checkpointDuration = %v, want 2s (two kubelet calls on the fake clock)", pc.Status.CheckpointDuration)
	}
	if len(pc.Status.Containers) != 2 {
		t.Fatalf("containers status = %+v", pc.Status.Containers)
	}
	for _, c := range pc.Status.Containers {
		if !strings.HasPrefix(c.Image, e.regHost+"/lm/db-web-0-"+c.Name+"@sha256:") || c.Digest == "" {
			t.Errorf("container %s image %q digest %q", c.Name, c.Image, c.Digest)
		}
		if c.CRIUVersion != "4.1" || c.Runtime != "runc" || c.RuntimeVersion != "1.2" || c.Architecture != "amd64" || c.ContainerImage != "livemigrate.io/labapp:latest" {
			t.Errorf("container %s metadata %+v", c.Name, c)
		}
		fi, err := os.Stat(c.ArchivePath)
		if err != nil || fi.Size() != c.ArchiveSizeBytes || fi.Mode().Perm() != 0o600 {
			t.Errorf("archive %s: %v size %d mode %v", c.ArchivePath, err, c.ArchiveSizeBytes, fi.Mode())
		}
	}
	if !e.fr.frozen["kubepods/burstable/podpod-uid-1"] {
		t.Errorf("pod not frozen after checkpoint")
	}

	// A restarted agent does nothing more.
	if _, err := e.reconcile(t); err != nil {
		t.Fatal(err)
	}
	if n := len(e.j.list()); n != 3 {
		t.Errorf("second reconcile repeated side effects: %v", e.j.list())
	}

	// Release: archives gone, pod stays frozen.
	e.setAction(t, agentv1alpha1.CheckpointActionRelease)
	pc, err = e.reconcile(t)
	if err != nil {
		t.Fatal(err)
	}
	if pc.Status.Phase != agentv1alpha1.PodCheckpointReleased {
		t.Errorf("phase %q, want Released", pc.Status.Phase)
	}
	if a := archives(t, e.r.CheckpointDir); len(a) != 0 {
		t.Errorf("archives left after release: %v", a)
	}
	if !e.fr.frozen["kubepods/burstable/podpod-uid-1"] {
		t.Errorf("release thawed the pod")
	}
}

// TestStatusSaysCheckpointedWhilePushing checks that the archives are
// reported (phase Pushing, Checkpointed condition, archive sizes) before the
// first push starts, so that a watcher can tell the dump from the push.
func TestStatusSaysCheckpointedWhilePushing(t *testing.T) {
	e := newEnv(t)
	e.create(t)
	var seen []string
	push := e.r.Push
	e.r.Push = func(ctx context.Context, path, container string, ann map[string]string, ref string, o checkpointimage.PushOptions) (*checkpointimage.Result, error) {
		stored := &agentv1alpha1.PodCheckpoint{}
		if err := e.c.Get(ctx, types.NamespacedName{Namespace: "db", Name: "mig-1-web-0"}, stored); err != nil {
			t.Fatal(err)
		}
		var bytes int64
		for _, c := range stored.Status.Containers {
			bytes += c.ArchiveSizeBytes
		}
		seen = append(seen, fmt.Sprintf("%s: phase %s, checkpointed %v, archives %v",
			container, stored.Status.Phase, meta.IsStatusConditionTrue(stored.Status.Conditions, agentv1alpha1.ConditionCheckpointed), bytes > 0))
		return push(ctx, path, container, ann, ref, o)
	}
	pc, err := e.reconcile(t)
	if err != nil {
		t.Fatalf("Reconcile: %v", err)
	}
	if pc.Status.Phase != agentv1alpha1.PodCheckpointCheckpointed {
		t.Fatalf("phase %q (%s), want Checkpointed", pc.Status.Phase, pc.Status.Message)
	}
	want := []string{
		"app: phase Pushing, checkpointed true, archives true",
		"side: phase Pushing, checkpointed true, archives true",
	}
	if diff := cmp.Diff(want, seen); diff != "" {
		t.Errorf("stored status while pushing (-want +got):\n%s", diff)
	}
}

func TestCheckpointResumesAfterCrash(t *testing.T) {
	e := newEnv(t)
	e.create(t)
	if _, err := e.reconcile(t); err != nil {
		t.Fatal(err)
	}
	// Simulate a crash after app's archive was recorded but before its push.
	pc, _ := e.reconcile(t)
	for i := range pc.Status.Containers {
		if pc.Status.Containers[i].Name == "side" {
			pc.Status.Containers[i].Digest, pc.Status.Containers[i].Image = "", ""
		}
	}
	pc.Status.Phase = agentv1alpha1.PodCheckpointPushing
	if err := e.c.Status().Update(context.Background(), pc); err != nil {
		t.Fatal(err)
	}
	before := len(e.j.list())
	pc, err := e.reconcile(t)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"freeze kubepods/burstable/podpod-uid-1"}, e.j.list()[before:]); diff != "" {
		t.Errorf("resumed reconcile side effects (-want +got):\n%s", diff)
	}
	if pc.Status.Phase != agentv1alpha1.PodCheckpointCheckpointed {
		t.Errorf("phase %q", pc.Status.Phase)
	}
}

func TestCheckpointFailuresKeepPodFrozenUntilThaw(t *testing.T) {
	cases := []struct {
		name       string
		kubeletErr error
		corrupt    bool
		wantInMsg  string
	}{
		{"feature gate off", &kubelet.Error{Reason: kubelet.ReasonFeatureDisabled, StatusCode: 404}, false, "KubeletFeatureDisabled"},
		{"runtime error", &kubelet.Error{Reason: kubelet.ReasonRuntimeError, StatusCode: 500, Message: "criu failed"}, false, "criu failed"},
		{"malicious archive", nil, true, "ArchiveRejected"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.kl.err, e.kl.corrupt = tc.kubeletErr, tc.corrupt
			e.create(t, "app")
			pc, err := e.reconcile(t)
			if err == nil || !errors.Is(err, reconcile.TerminalError(nil)) {
				t.Errorf("Reconcile error %v, want a terminal error", err)
			}
			if pc.Status.Phase != agentv1alpha1.PodCheckpointFailed || !strings.Contains(pc.Status.Message, tc.wantInMsg) {
				t.Errorf("phase %q message %q, want Failed with %q", pc.Status.Phase, pc.Status.Message, tc.wantInMsg)
			}
			if !e.fr.frozen["kubepods/burstable/podpod-uid-1"] {
				t.Errorf("failure thawed the pod; only the migration may")
			}
			if a := archives(t, e.r.CheckpointDir); len(a) != 0 {
				t.Errorf("rejected archive left on the node: %v", a)
			}
			e.setAction(t, agentv1alpha1.CheckpointActionThaw)
			pc, err = e.reconcile(t)
			if err != nil {
				t.Fatal(err)
			}
			if pc.Status.Phase != agentv1alpha1.PodCheckpointThawed || e.fr.frozen["kubepods/burstable/podpod-uid-1"] {
				t.Errorf("after Thaw: phase %q frozen %v", pc.Status.Phase, e.fr.frozen["kubepods/burstable/podpod-uid-1"])
			}
		})
	}
}

func TestThawRemovesArchivesIncludingUnrecorded(t *testing.T) {
	e := newEnv(t)
	e.create(t, "app")
	if _, err := e.reconcile(t); err != nil {
		t.Fatal(err)
	}
	// An archive taken before a crash and never recorded.
	stray := filepath.Join(e.r.CheckpointDir, layout.ArchiveName("web-0", "db", "app", t0.Add(-time.Hour)))
	if err := os.WriteFile(stray, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(e.r.CheckpointDir, layout.ArchiveName("web-1", "db", "app", t0))
	if err := os.WriteFile(other, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	e.setAction(t, agentv1alpha1.CheckpointActionThaw)
	pc, err := e.reconcile(t)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{other}, archives(t, e.r.CheckpointDir)); diff != "" {
		t.Errorf("archives left (-want +got):\n%s", diff)
	}
	if pc.Status.Phase != agentv1alpha1.PodCheckpointThawed {
		t.Errorf("phase %q", pc.Status.Phase)
	}
	if got := e.j.list(); got[len(got)-1] != "thaw kubepods/burstable/podpod-uid-1" {
		t.Errorf("last side effect %q, want thaw", got[len(got)-1])
	}
}

func TestOtherNodesCheckpointIgnored(t *testing.T) {
	e := newEnv(t)
	e.r.NodeName = "node-b"
	e.create(t)
	pc, err := e.reconcile(t)
	if err != nil {
		t.Fatal(err)
	}
	if pc.Status.Phase != "" || len(e.j.list()) != 0 {
		t.Errorf("agent of another node acted: phase %q ops %v", pc.Status.Phase, e.j.list())
	}
}

func frozenGauge(t *testing.T) float64 {
	t.Helper()
	var d dto.Metric
	if err := frozenPods.Write(&d); err != nil {
		t.Fatal(err)
	}
	return d.GetGauge().GetValue()
}

// restart forgets which pods the reconciler holds frozen and zeroes the
// gauge, as a restarted agent process starts.
func (e *env) restart() {
	e.r.frozen = frozenSet{}
	frozenPods.Set(0)
}

func TestFrozenPodsGaugeRebuiltAfterRestart(t *testing.T) {
	const cg = "kubepods/burstable/podpod-uid-1"
	cases := []struct {
		name string
		// before the restart: the action after the checkpoint (none when
		// empty), and whether the pod's cgroup is still frozen.
		action     agentv1alpha1.CheckpointAction
		stillFroze bool
		want       float64
	}{
		{"checkpointed and frozen", "", true, 1},
		{"checkpointed, thawed by someone else", "", false, 0},
		{"released", agentv1alpha1.CheckpointActionRelease, true, 0},
		{"thawed", agentv1alpha1.CheckpointActionThaw, false, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.create(t, "app")
			if _, err := e.reconcile(t); err != nil {
				t.Fatal(err)
			}
			if g := frozenGauge(t); g != 1 {
				t.Fatalf("frozen pods after the checkpoint = %v, want 1", g)
			}
			if tc.action != "" {
				e.setAction(t, tc.action)
				if _, err := e.reconcile(t); err != nil {
					t.Fatal(err)
				}
			}
			e.fr.frozen[cg] = tc.stillFroze
			e.restart()
			if _, err := e.reconcile(t); err != nil {
				t.Fatal(err)
			}
			if g := frozenGauge(t); g != tc.want {
				t.Errorf("frozen pods after restart = %v, want %v", g, tc.want)
			}
			// A second reconcile counts the pod once.
			if _, err := e.reconcile(t); err != nil {
				t.Fatal(err)
			}
			if g := frozenGauge(t); g != tc.want {
				t.Errorf("frozen pods after a second reconcile = %v, want %v", g, tc.want)
			}
		})
	}
}

func TestFrozenPodsGaugeThawAfterRestart(t *testing.T) {
	e := newEnv(t)
	e.create(t, "app")
	if _, err := e.reconcile(t); err != nil {
		t.Fatal(err)
	}
	e.restart()
	e.setAction(t, agentv1alpha1.CheckpointActionThaw)
	if _, err := e.reconcile(t); err != nil {
		t.Fatal(err)
	}
	if g := frozenGauge(t); g != 0 {
		t.Errorf("frozen pods after a thaw following a restart = %v, want 0", g)
	}
	// Deleting the PodCheckpoint forgets it.
	e.restart()
	e.setAction(t, agentv1alpha1.CheckpointActionCheckpoint)
	pc := &agentv1alpha1.PodCheckpoint{}
	_ = e.c.Get(context.Background(), types.NamespacedName{Namespace: "db", Name: "mig-1-web-0"}, pc)
	pc.Status.Phase = agentv1alpha1.PodCheckpointCheckpointed
	if err := e.c.Status().Update(context.Background(), pc); err != nil {
		t.Fatal(err)
	}
	e.fr.frozen["kubepods/burstable/podpod-uid-1"] = true
	if _, err := e.reconcile(t); err != nil {
		t.Fatal(err)
	}
	if g := frozenGauge(t); g != 1 {
		t.Fatalf("frozen pods = %v, want 1", g)
	}
	pc.Finalizers = nil
	if err := e.c.Update(context.Background(), pc); err != nil {
		t.Fatal(err)
	}
	if err := e.c.Delete(context.Background(), pc); err != nil {
		t.Fatal(err)
	}
	if _, err := e.r.Reconcile(context.Background(), reconcile.Request{NamespacedName: types.NamespacedName{Namespace: "db", Name: "mig-1-web-0"}}); err != nil {
		t.Fatal(err)
	}
	if g := frozenGauge(t); g != 0 {
		t.Errorf("frozen pods after the PodCheckpoint is gone = %v, want 0", g)
	}
}

// deleteCheckpoint deletes the PodCheckpoint (it stays while a finalizer
// holds it).
func (e *env) deleteCheckpoint(t *testing.T) {
	t.Helper()
	pc := &agentv1alpha1.PodCheckpoint{ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: "mig-1-web-0"}}
	if err := e.c.Delete(context.Background(), pc); err != nil {
		t.Fatal(err)
	}
}

func (e *env) reconcileGone(t *testing.T) (bool, error) {
	t.Helper()
	_, err := e.r.Reconcile(context.Background(), reconcile.Request{NamespacedName: types.NamespacedName{Namespace: "db", Name: "mig-1-web-0"}})
	pc := &agentv1alpha1.PodCheckpoint{}
	gerr := e.c.Get(context.Background(), types.NamespacedName{Namespace: "db", Name: "mig-1-web-0"}, pc)
	return apierrors.IsNotFound(gerr), err
}

// A deleted PodCheckpoint that froze its pod is not a thaw: it stays, the
// pod frozen, until spec.action says Thaw (then the pod is thawed before it
// goes) or Release, so that "gone" always means "not holding the pod frozen".
func TestDeletedCheckpointHoldsThePodFrozenUntilThawOrRelease(t *testing.T) {
	const cg = "kubepods/burstable/podpod-uid-1"
	for _, action := range []agentv1alpha1.CheckpointAction{agentv1alpha1.CheckpointActionThaw, agentv1alpha1.CheckpointActionRelease} {
		t.Run(string(action), func(t *testing.T) {
			e := newEnv(t)
			e.create(t, "app")
			if _, err := e.reconcile(t); err != nil {
				t.Fatal(err)
			}
			e.deleteCheckpoint(t)
			gone, err := e.reconcileGone(t)
			if err != nil {
				t.Fatal(err)
			}
			if gone {
				t.Fatalf("PodCheckpoint deleted while it holds the pod frozen (frozen=%v): a thaw would be assumed", e.fr.frozen[cg])
			}
			pc, _ := e.reconcile(t)
			if c := meta.FindStatusCondition(pc.Status.Conditions, agentv1alpha1.ConditionFrozen); c == nil || c.Reason != ReasonDeletionBlocked {
				t.Errorf("Frozen condition = %+v, want reason %s", c, ReasonDeletionBlocked)
			}
			if !e.fr.frozen[cg] {
				t.Fatalf("deletion thawed the pod")
			}
			e.setAction(t, action)
			if gone, err = e.reconcileGone(t); err != nil || !gone {
				t.Fatalf("after action %s: gone=%v err=%v, want gone", action, gone, err)
			}
			if want := action == agentv1alpha1.CheckpointActionRelease; e.fr.frozen[cg] != want {
				t.Errorf("after action %s and deletion: frozen=%v, want %v", action, e.fr.frozen[cg], want)
			}
			if a := archives(t, e.r.CheckpointDir); len(a) != 0 {
				t.Errorf("archives left: %v", a)
			}
		})
	}
}

// A deleted PodCheckpoint whose pod is gone, or that never froze it, goes.
func TestDeletedCheckpointGoesWhenNothingIsFrozen(t *testing.T) {
	e := newEnv(t)
	e.create(t, "app")
	if _, err := e.reconcile(t); err != nil {
		t.Fatal(err)
	}
	e.fr.frozen["kubepods/burstable/podpod-uid-1"] = false // thawed by someone else, or the pod restarted
	e.deleteCheckpoint(t)
	if gone, err := e.reconcileGone(t); err != nil || !gone {
		t.Fatalf("gone=%v err=%v, want gone", gone, err)
	}
}

// A deleted PodCheckpoint held for its frozen pod looks again later, so
// that it goes once the pod is gone (a namespace being deleted) even if
// no spec.action ever comes.
func TestDeletedCheckpointRechecksUntilThePodIsGone(t *testing.T) {
	e := newEnv(t)
	e.create(t, "app")
	if _, err := e.reconcile(t); err != nil {
		t.Fatal(err)
	}
	e.deleteCheckpoint(t)
	key := types.NamespacedName{Namespace: "db", Name: "mig-1-web-0"}
	res, err := e.r.Reconcile(context.Background(), reconcile.Request{NamespacedName: key})
	if err != nil || res.RequeueAfter <= 0 {
		t.Fatalf("Reconcile = %+v, %v; want a requeue while the pod is held frozen", res, err)
	}
	delete(e.fr.frozen, "kubepods/burstable/podpod-uid-1") // the pod and its cgroup went
	e.fr.gone = true
	if gone, err := e.reconcileGone(t); err != nil || !gone {
		t.Fatalf("gone=%v err=%v once the pod is gone, want gone", gone, err)
	}
}

// Two migrations checkpointing one pod: the PodCheckpoint created second is
// refused (PodBusy) without freezing, and its rollback's Thaw neither thaws
// the pod the first holds frozen nor removes the first one's archives.
func TestSecondCheckpointOfAPodIsRefused(t *testing.T) {
	const cg = "kubepods/burstable/podpod-uid-1"
	e := newEnv(t)
	e.create(t, "app")
	ctx := context.Background()
	second := builder.MakePodCheckpoint("db", "mig-2-web-0", "node-a", "web-0", "mig-2").PodUID("pod-uid-1").
		Containers("app").Repository(e.regHost + "/lm").Action(agentv1alpha1.CheckpointActionCheckpoint).Created(t0.Add(time.Second)).Obj()
	if err := e.c.Create(ctx, second); err != nil {
		t.Fatal(err)
	}
	secondKey := types.NamespacedName{Namespace: "db", Name: "mig-2-web-0"}
	reconcileSecond := func() *agentv1alpha1.PodCheckpoint {
		t.Helper()
		_, _ = e.r.Reconcile(ctx, reconcile.Request{NamespacedName: secondKey})
		pc := &agentv1alpha1.PodCheckpoint{}
		if err := e.c.Get(ctx, secondKey, pc); err != nil {
			t.Fatal(err)
		}
		return pc
	}
	// The first froze and checkpointed the pod.
	first, err := e.reconcile(t)
	if err != nil || first.Status.Phase != agentv1alpha1.PodCheckpointCheckpointed {
		t.Fatalf("first: phase %s, %v", first.Status.Phase, err)
	}
	kept := archives(t, e.r.CheckpointDir)
	freezes := strings.Count(strings.Join(e.j.list(), "\n"), "freeze "+cg)

	pc := reconcileSecond()
	if pc.Status.Phase != agentv1alpha1.PodCheckpointFailed || !strings.Contains(pc.Status.Message, ReasonPodBusy) ||
		!strings.Contains(pc.Status.Message, "mig-1-web-0") {
		t.Fatalf("second: phase %q message %q, want Failed with %s naming mig-1-web-0", pc.Status.Phase, pc.Status.Message, ReasonPodBusy)
	}
	if n := strings.Count(strings.Join(e.j.list(), "\n"), "freeze "+cg); n != freezes || pc.Status.FreezeStartTime != nil {
		t.Fatalf("the refused PodCheckpoint froze the pod: %v", e.j.list())
	}
	// Its migration rolls back.
	pc.Spec.Action = agentv1alpha1.CheckpointActionThaw
	if err := e.c.Update(ctx, pc); err != nil {
		t.Fatal(err)
	}
	if pc = reconcileSecond(); pc.Status.Phase != agentv1alpha1.PodCheckpointThawed {
		t.Fatalf("second after Thaw: phase %q", pc.Status.Phase)
	}
	if !e.fr.frozen[cg] {
		t.Fatalf("the refused migration's rollback thawed the pod the other one holds frozen")
	}
	if diff := cmp.Diff(kept, archives(t, e.r.CheckpointDir)); diff != "" || len(kept) == 0 {
		t.Errorf("the first one's archives changed (-want +got):\n%s", diff)
	}
}

// Of two PodCheckpoints of one pod created before either froze it, the
// older proceeds, whichever is reconciled first.
func TestOlderOfTwoNewCheckpointsProceeds(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	older := builder.MakePodCheckpoint("db", "mig-0-web-0", "node-a", "web-0", "mig-0").
		Containers("app").Repository(e.regHost + "/lm").Action(agentv1alpha1.CheckpointActionCheckpoint).Created(t0.Add(-time.Minute)).Obj()
	newer := builder.MakePodCheckpoint("db", "mig-1-web-0", "node-a", "web-0", "mig-1").
		Containers("app").Repository(e.regHost + "/lm").Action(agentv1alpha1.CheckpointActionCheckpoint).Created(t0).Obj()
	for _, pc := range []*agentv1alpha1.PodCheckpoint{newer, older} {
		if err := e.c.Create(ctx, pc); err != nil {
			t.Fatal(err)
		}
	}
	pc, _ := e.reconcile(t)
	if pc.Status.Phase != agentv1alpha1.PodCheckpointFailed || !strings.Contains(pc.Status.Message, "mig-0-web-0") {
		t.Fatalf("newer: phase %q message %q, want Failed naming the older mig-0-web-0", pc.Status.Phase, pc.Status.Message)
	}
	if len(e.j.list()) != 0 {
		t.Errorf("side effects for the refused one: %v", e.j.list())
	}
}

// A container the kubelet restarts while it is frozen (its liveness probe
// timed out against the frozen process) lost its memory: the checkpoint
// fails instead of shipping a fresh start, the pod stays frozen until the
// rollback's Thaw, and the thaw says the state is lost.
func TestContainerRestartedWhileFrozenFailsTheCheckpoint(t *testing.T) {
	for _, when := range []string{"before the dump", "during the dump"} {
		t.Run(when, func(t *testing.T) {
			e := newEnv(t)
			ctx := context.Background()
			clk := e.r.Clock.(*clocktesting.FakeClock)
			restart := func() {
				pod := &corev1.Pod{}
				if err := e.c.Get(ctx, types.NamespacedName{Namespace: "db", Name: "web-0"}, pod); err != nil {
					t.Fatal(err)
				}
				pod.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "app", RestartCount: 1,
					State:                corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(clk.Now().Add(2 * time.Second))}},
					LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 137, FinishedAt: metav1.NewTime(clk.Now().Add(time.Second))}},
				}}
				if err := e.c.Status().Update(ctx, pod); err != nil {
					t.Fatal(err)
				}
			}
			pod := &corev1.Pod{}
			_ = e.c.Get(ctx, types.NamespacedName{Namespace: "db", Name: "web-0"}, pod)
			pod.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "app",
				State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(t0.Add(-time.Hour))}}}}
			if err := e.c.Status().Update(ctx, pod); err != nil {
				t.Fatal(err)
			}
			e.create(t, "app")
			if when == "before the dump" {
				// Frozen first, restarted before the next reconcile dumps.
				e.r.Checkpointer = blockingKubelet{}
				pc, _ := e.reconcile(t)
				if pc.Status.FreezeStartTime == nil {
					t.Fatalf("not frozen: %+v", pc.Status)
				}
				restart()
				e.r.Checkpointer = e.kl
				e.kl.during = func() { t.Errorf("checkpoint called for a container restarted while frozen") }
			} else {
				e.kl.during = restart
			}
			pc, err := e.reconcile(t)
			if err == nil || pc.Status.Phase != agentv1alpha1.PodCheckpointFailed || !strings.Contains(pc.Status.Message, ReasonContainerRestarted) ||
				!strings.Contains(pc.Status.Message, "liveness probe") {
				t.Fatalf("phase %q message %q err %v, want Failed with %s explaining the liveness probe", pc.Status.Phase, pc.Status.Message, err, ReasonContainerRestarted)
			}
			if a := archives(t, e.r.CheckpointDir); len(a) != 0 {
				t.Errorf("archive of the restarted container left: %v", a)
			}
			if !e.fr.frozen["kubepods/burstable/podpod-uid-1"] {
				t.Errorf("the failure thawed the pod; only the migration may")
			}
			e.setAction(t, agentv1alpha1.CheckpointActionThaw)
			pc, err = e.reconcile(t)
			if err != nil || pc.Status.Phase != agentv1alpha1.PodCheckpointThawed || !strings.Contains(pc.Status.Message, "memory is lost") {
				t.Fatalf("after Thaw: phase %q message %q err %v, want Thawed saying the memory is lost", pc.Status.Phase, pc.Status.Message, err)
			}
		})
	}
}

// blockingKubelet answers every checkpoint call with a retryable error, so
// a reconcile freezes the pod and stops before any dump.
type blockingKubelet struct{}

func (blockingKubelet) Checkpoint(context.Context, string, int, string, string, string, time.Duration) ([]string, error) {
	return nil, errors.New("kubelet busy")
}
