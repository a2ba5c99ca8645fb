package checkpoint

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/livemigrate/livemigrate/agent/checkpointimage"
	"github.com/livemigrate/livemigrate/agent/freezer"
	agentv1alpha1 "github.com/livemigrate/livemigrate/api/agent/v1alpha1"
	"github.com/livemigrate/livemigrate/test/builder"
	"github.com/livemigrate/livemigrate/test/e2e/migration/scenario"
	"github.com/livemigrate/livemigrate/test/lab"
	"github.com/livemigrate/livemigrate/test/labapp/labstate"
	"github.com/livemigrate/livemigrate/test/labnode"
)

// appImage is the image the lab node runtimes run the lab app for.
const appImage = lab.LabAppImage

func statefulSet(ns, name, volume string) *appsv1.StatefulSet {
	labels := map[string]string{"app": name}
	return &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: appsv1.StatefulSetSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					Containers: []corev1.Container{{
						Name: "app", Image: appImage,
						Args:         []string{"run", "--memory=16Mi", "--dirty-rate=8Mi", "--tick=5ms", "--log=/data/counter.log"},
						VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"}},
					}},
					Volumes: []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: volume}}}},
				},
			},
		},
	}
}

// poll calls f every 100ms until it is done; it fails the test when ctx ends first.
func poll(ctx context.Context, t *testing.T, what string, f func() (bool, string)) {
	t.Helper()
	err := lab.Poll(ctx, what, 100*time.Millisecond, func(context.Context) (bool, string, error) {
		ok, msg := f()
		return ok, msg, nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func createNamespace(ctx context.Context, t *testing.T, me *scenario.Cluster, ns string) {
	t.Helper()
	err := me.CR.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

// runningPod waits for the pod to be bound and its lab app process to run,
// and returns it with its lab app as the host sees it.
func runningPod(ctx context.Context, t *testing.T, me *scenario.Cluster, ns, name string, want func(*corev1.Pod) error) (*corev1.Pod, *scenario.Pod) {
	t.Helper()
	pod := &corev1.Pod{}
	var p *scenario.Pod
	poll(ctx, t, "pod "+ns+"/"+name+" running in "+me.Name, func() (bool, string) {
		if err := me.CR.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, pod); err != nil {
			return false, err.Error()
		}
		if pod.Spec.NodeName == "" {
			return false, "not bound"
		}
		if want != nil {
			if err := want(pod); err != nil {
				return false, err.Error()
			}
		}
		p = env.host.PodOf(me.Name, pod)
		l, err := labstate.ReadLayout(p.StateDir)
		if err != nil {
			return false, "no lab app process yet: " + err.Error()
		}
		p.Layout = l
		if !p.Alive() {
			return false, fmt.Sprintf("lab app process %d not running", l.PID)
		}
		return true, ""
	})
	return pod, p
}

func counter(t *testing.T, p *scenario.Pod) uint64 {
	t.Helper()
	c, err := p.Counter()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func waitCounter(ctx context.Context, t *testing.T, p *scenario.Pod, atLeast uint64) {
	t.Helper()
	poll(ctx, t, fmt.Sprintf("counter of %s to reach %d", p.Name, atLeast), func() (bool, string) {
		c := counter(t, p)
		return c >= atLeast, fmt.Sprintf("counter %d", c)
	})
}

// readRegion reads the app's memory; the caller makes sure it is frozen.
func readRegion(t *testing.T, p *scenario.Pod) []byte {
	t.Helper()
	rc, err := labstate.OpenProcessRegion(p.Layout)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// hostFreezer freezes and thaws the pods' cgroups (paths below the mount).
var hostFreezer = &freezer.Freezer{Version: freezer.V1, Mount: "/sys/fs/cgroup/freezer", Drivers: []freezer.Driver{freezer.DriverCgroupfs}}

// agreeWhileFrozen freezes the pod, checks memory against the log (1..n,
// nothing skipped or repeated), thaws it, and returns n.
func agreeWhileFrozen(ctx context.Context, t *testing.T, p *scenario.Pod) uint64 {
	t.Helper()
	if err := hostFreezer.Freeze(ctx, p.Cgroup); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = hostFreezer.Thaw(context.Background(), p.Cgroup) }()
	n, err := labstate.Agree(readRegion(t, p), p.LogPath())
	if err != nil {
		t.Fatalf("%s: memory and disk disagree: %v", p.Name, err)
	}
	return n
}

func podCheckpoint(ns, name string, pod *corev1.Pod, migration, repo string) *agentv1alpha1.PodCheckpoint {
	return builder.MakePodCheckpoint(ns, name, pod.Spec.NodeName, pod.Name, migration).PodUID(string(pod.UID)).
		Repository(repo).Insecure().Obj()
}

func waitCheckpoint(ctx context.Context, t *testing.T, me *scenario.Cluster, key client.ObjectKey, phases ...agentv1alpha1.PodCheckpointPhase) *agentv1alpha1.PodCheckpoint {
	t.Helper()
	pc := &agentv1alpha1.PodCheckpoint{}
	poll(ctx, t, fmt.Sprintf("PodCheckpoint %s in %v", key, phases), func() (bool, string) {
		if err := me.CR.Get(ctx, key, pc); err != nil {
			return false, err.Error()
		}
		if pc.Status.Phase == agentv1alpha1.PodCheckpointFailed {
			t.Fatalf("PodCheckpoint failed: %s", pc.Status.Message)
		}
		for _, p := range phases {
			if pc.Status.Phase == p {
				return true, ""
			}
		}
		return false, "phase " + string(pc.Status.Phase)
	})
	return pc
}

func setAction(ctx context.Context, t *testing.T, me *scenario.Cluster, key client.ObjectKey, a agentv1alpha1.CheckpointAction) {
	t.Helper()
	pc := &agentv1alpha1.PodCheckpoint{}
	if err := me.CR.Get(ctx, key, pc); err != nil {
		t.Fatal(err)
	}
	patch := client.MergeFrom(pc.DeepCopy())
	pc.Spec.Action = a
	if err := me.CR.Patch(ctx, pc, patch); err != nil {
		t.Fatal(err)
	}
}

// archivesOf lists the checkpoint archives in the kubelet checkpoint
// directory of the node's runtime.
func archivesOf(t *testing.T, node string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(env.host.Paths.NodeRoot(node), "checkpoints", "checkpoint-*.tar"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// memoryOfImage pulls the checkpoint image and returns the lab app's
// memory region as the image holds it: from CRIU's page images at the
// region's address (runc), or the stand-in's pages-1.img.
func memoryOfImage(ctx context.Context, t *testing.T, ref string, app *scenario.Pod) []byte {
	t.Helper()
	var buf bytes.Buffer
	if _, err := checkpointimage.Pull(ctx, ref, &buf, checkpointimage.PushOptions{Insecure: true}); err != nil {
		t.Fatalf("pull %s: %v", ref, err)
	}
	images := map[string][]byte{}
	tr := tar.NewReader(&buf)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if name, ok := strings.CutPrefix(h.Name, "checkpoint/"); ok && h.Typeflag == tar.TypeReg {
			if images[name], err = io.ReadAll(tr); err != nil {
				t.Fatal(err)
			}
		}
	}
	if env.lab.NodeRuntime() == lab.NodeRuntimeRunc {
		b, err := labnode.CRIUMemory(images, app.Layout.Address, int(app.Layout.Length))
		if err != nil {
			t.Fatalf("memory in %s: %v", ref, err)
		}
		return b
	}
	b, ok := images["pages-1.img"]
	if !ok {
		t.Fatalf("no checkpoint/pages-1.img in %s", ref)
	}
	return b
}

// TestMigrateBetweenClusters: freeze and checkpoint in member1, restore in
// member2 from the checkpoint image, release the source.
func TestMigrateBetweenClusters(t *testing.T) {
	e := requireEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	src, dst := e.member(0), e.member(1)
	const ns, migration = "e2e-migrate", "mig-e2e-1"
	createNamespace(ctx, t, src, ns)
	createNamespace(ctx, t, dst, ns)
	vol := e.volume(t, ns)

	// The source workload runs in member1.
	if err := src.CR.Create(ctx, statefulSet(ns, "web", vol)); err != nil {
		t.Fatal(err)
	}
	pod, srcApp := runningPod(ctx, t, src, ns, "web-0", nil)
	waitCounter(ctx, t, srcApp, 100)

	// Freeze + checkpoint by the agent of the pod's node.
	key := client.ObjectKey{Namespace: ns, Name: migration + "-web-0"}
	if err := src.CR.Create(ctx, podCheckpoint(ns, key.Name, pod, migration, e.registry+"/livemigrate")); err != nil {
		t.Fatal(err)
	}
	waitCheckpoint(ctx, t, src, key, agentv1alpha1.PodCheckpointFrozen, agentv1alpha1.PodCheckpointCheckpointing,
		agentv1alpha1.PodCheckpointPushing, agentv1alpha1.PodCheckpointCheckpointed)
	frozenAt := counter(t, srcApp)
	time.Sleep(500 * time.Millisecond)
	if c := counter(t, srcApp); c != frozenAt {
		t.Fatalf("frozen source advanced: %d -> %d", frozenAt, c)
	}
	pc := waitCheckpoint(ctx, t, src, key, agentv1alpha1.PodCheckpointCheckpointed)
	if len(pc.Status.Containers) != 1 {
		t.Fatalf("status containers %+v", pc.Status.Containers)
	}
	cs := pc.Status.Containers[0]
	wantCRIU, wantRuntime := labnode.CRIUVersion, labnode.RuntimeName
	if env.lab.NodeRuntime() == lab.NodeRuntimeRunc {
		// What CRIU recorded in its dump.log, and the OCI runtime CRI-O names.
		v, err := labnode.ReadCRIUVersion(env.lab.CRIU())
		if err != nil {
			t.Fatal(err)
		}
		wantCRIU, wantRuntime = v, "runc"
	}
	if cs.Image == "" || cs.Digest == "" || cs.ArchiveSizeBytes < 16<<20 || cs.CRIUVersion != wantCRIU ||
		cs.Runtime != wantRuntime || cs.ContainerImage != appImage || pc.Status.FreezeStartTime == nil || pc.Status.CheckpointDuration == nil {
		t.Errorf("checkpoint status incomplete: %+v freeze %v duration %v", cs, pc.Status.FreezeStartTime, pc.Status.CheckpointDuration)
	}
	if c := counter(t, srcApp); c != frozenAt {
		t.Fatalf("source advanced during the checkpoint: %d -> %d", frozenAt, c)
	}
	// The image holds exactly the frozen memory.
	srcRegion := readRegion(t, srcApp)
	if !bytes.Equal(memoryOfImage(ctx, t, cs.Image, srcApp), srcRegion) {
		t.Fatalf("checkpoint image memory differs from the frozen source's memory")
	}
	frozenCounter, inFlight, err := labstate.VerifyRegion(srcRegion)
	if err != nil {
		t.Fatal(err)
	}
	resumeAt := frozenCounter
	if inFlight != 0 {
		resumeAt = inFlight
	}

	// Restore in member2.
	pr := builder.MakePodRestore(ns, migration, migration, "StatefulSet", "web").
		Checkpoint("web-0", ptr.To[int32](0), "app", cs.Image).Obj()
	if err := dst.CR.Create(ctx, pr); err != nil {
		t.Fatal(err)
	}
	if err := dst.CR.Create(ctx, statefulSet(ns, "web", vol)); err != nil {
		t.Fatal(err)
	}
	tpod, dstApp := runningPod(ctx, t, dst, ns, "web-0", func(p *corev1.Pod) error {
		if p.Annotations[agentv1alpha1.AnnotationRestore] != migration {
			return fmt.Errorf("pod not rewritten by the restore webhook (annotations %v)", p.Annotations)
		}
		return nil
	})
	if tpod.Spec.Containers[0].Image != cs.Image || tpod.Annotations[agentv1alpha1.AnnotationRestoreCheckpoint] != "web-0" {
		t.Fatalf("restored pod image %q annotations %v", tpod.Spec.Containers[0].Image, tpod.Annotations)
	}
	if c := counter(t, srcApp); c != frozenAt {
		t.Fatalf("source advanced while the target started: %d -> %d", frozenAt, c)
	}
	waitCounter(ctx, t, dstApp, resumeAt+50)
	// The shared log is 1..n without a gap or a repeat: the target went on
	// from exactly the frozen state, and memory agrees with it.
	if n := agreeWhileFrozen(ctx, t, dstApp); n < resumeAt+50 {
		t.Errorf("restored app at %d, want at least %d", n, resumeAt+50)
	}
	poll(ctx, t, "PodRestore Restored", func() (bool, string) {
		got := &agentv1alpha1.PodRestore{}
		if err := dst.CR.Get(ctx, client.ObjectKeyFromObject(pr), got); err != nil {
			return false, err.Error()
		}
		if len(got.Status.Claims) == 1 && got.Status.Claims[0].PodUID != string(tpod.UID) && got.Status.Claims[0].PodUID != "" {
			t.Fatalf("claim names pod %s, want %s", got.Status.Claims[0].PodUID, tpod.UID)
		}
		return got.Status.Phase == agentv1alpha1.PodRestoreRestored, fmt.Sprintf("phase %s claims %+v", got.Status.Phase, got.Status.Claims)
	})

	// Success: release the source's archives; the source stays frozen until
	// it is deleted.
	setAction(ctx, t, src, key, agentv1alpha1.CheckpointActionRelease)
	waitCheckpoint(ctx, t, src, key, agentv1alpha1.PodCheckpointReleased)
	if a := archivesOf(t, pod.Spec.NodeName); len(a) != 0 {
		t.Errorf("archives left on the source node after release: %v", a)
	}
	if c := counter(t, srcApp); c != frozenAt {
		t.Fatalf("released source advanced: %d -> %d", frozenAt, c)
	}
	if err := src.CR.Delete(ctx, &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns}}); err != nil {
		t.Fatal(err)
	}
	poll(ctx, t, "source process gone", func() (bool, string) {
		return !srcApp.Alive(), "still running"
	})
	if n := agreeWhileFrozen(ctx, t, dstApp); n <= resumeAt {
		t.Errorf("target stopped at %d", n)
	}
}

// TestRollbackThaws: freeze and checkpoint, then roll back: the source
// continues from where it stopped, no value lost, archives deleted.
func TestRollbackThaws(t *testing.T) {
	e := requireEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	src := e.member(0)
	const ns, migration = "e2e-rollback", "mig-e2e-2"
	createNamespace(ctx, t, src, ns)
	vol := e.volume(t, ns)
	if err := src.CR.Create(ctx, statefulSet(ns, "db", vol)); err != nil {
		t.Fatal(err)
	}
	pod, app := runningPod(ctx, t, src, ns, "db-0", nil)
	waitCounter(ctx, t, app, 100)
	key := client.ObjectKey{Namespace: ns, Name: migration + "-db-0"}
	if err := src.CR.Create(ctx, podCheckpoint(ns, key.Name, pod, migration, e.registry+"/livemigrate")); err != nil {
		t.Fatal(err)
	}
	waitCheckpoint(ctx, t, src, key, agentv1alpha1.PodCheckpointCheckpointed)
	frozenAt := counter(t, app)
	time.Sleep(300 * time.Millisecond)
	if c := counter(t, app); c != frozenAt {
		t.Fatalf("frozen source advanced: %d -> %d", frozenAt, c)
	}
	if len(archivesOf(t, pod.Spec.NodeName)) == 0 {
		t.Fatalf("no archive on the node after the checkpoint")
	}
	setAction(ctx, t, src, key, agentv1alpha1.CheckpointActionThaw)
	waitCheckpoint(ctx, t, src, key, agentv1alpha1.PodCheckpointThawed)
	waitCounter(ctx, t, app, frozenAt+50)
	if n := agreeWhileFrozen(ctx, t, app); n < frozenAt+50 {
		t.Errorf("after rollback at %d, want at least %d", n, frozenAt+50)
	}
	if a := archivesOf(t, pod.Spec.NodeName); len(a) != 0 {
		t.Errorf("archives left after rollback: %v", a)
	}
}
