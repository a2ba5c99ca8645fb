package labnode

import (
	"context"
	"errors"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/livemigrate/livemigrate/agent/freezer"
)

// deletion is a delete of a pod the fake API server saw.
type deletion struct {
	at    time.Time
	opts  metav1.DeleteOptions
	alive bool // the pod's lab app still ran at that instant
}

// TestDeletedPodRemovedOnceItsProcessesStopped: a deleted pod of the
// runtime (LabelRuntime) keeps its object until its lab app has exited,
// frozen or not, as a kubelet confirms a deletion only once the pod's
// containers stopped; the runtime then removes it with a grace period of 0
// and the pod's UID as precondition, retrying while the API server refuses
// (one restarting). A pod the runtime does not own (no label) is left to
// kwok. Both container runtimes: the memory stand-in and runc.
func TestDeletedPodRemovedOnceItsProcessesStopped(t *testing.T) {
	needRoot(t)
	t.Run(ContainerRuntimeProcess, func(t *testing.T) {
		testDeletedPodRemovedOnceStopped(t, Config{SkipAuth: true})
	})
	t.Run(ContainerRuntimeRunc, func(t *testing.T) {
		testDeletedPodRemovedOnceStopped(t, Config{SkipAuth: true, ContainerRuntime: ContainerRuntimeRunc, CRIU: criuBinary(t)})
	})
}

func testDeletedPodRemovedOnceStopped(t *testing.T, cfg Config) {
	parent := "livemigrate-labnode-test-" + string(uuid.NewUUID())[:8]
	if cfg.ContainerRuntime == ContainerRuntimeRunc {
		t.Cleanup(func() { removeCgroupTree(parent) })
	}
	r := newRuntime(t, "node-a", parent, cfg)
	ctx := context.Background()

	// start runs a pod on the runtime against a fake API server whose
	// first refused deletes fail as an unreachable API server does, and
	// returns the pod, the API server and the pod's lab app PID.
	start := func(t *testing.T, name string, labelled bool, refused int) (*corev1.Pod, *fake.Clientset, int, func() []deletion) {
		t.Helper()
		p := labPod(name, DefaultLabAppImage, t.TempDir())
		p.Spec.NodeName = "node-a"
		if labelled {
			p.Labels = map[string]string{LabelRuntime: RuntimeName}
		}
		cs := fake.NewSimpleClientset(p)
		r.cfg.Client = cs
		var mu sync.Mutex
		var dels []deletion
		pid := 0
		cs.PrependReactor("delete", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
			d := a.(k8stesting.DeleteActionImpl)
			mu.Lock()
			defer mu.Unlock()
			dels = append(dels, deletion{at: time.Now(), opts: d.DeleteOptions, alive: pidAlive(pid)})
			if len(dels) <= refused {
				return true, nil, apierrors.NewServiceUnavailable("the API server is restarting")
			}
			return false, nil, nil
		})
		r.onPod(ctx, p)
		ci, ok := r.Container("db", name, "app")
		if !ok {
			t.Fatalf("pod %s does not run", name)
		}
		mu.Lock()
		pid = ci.PID
		mu.Unlock()
		waitCounter(t, r, name, 20)
		return p, cs, ci.PID, func() []deletion {
			mu.Lock()
			defer mu.Unlock()
			return append([]deletion(nil), dels...)
		}
	}
	// markDeleted sets the pod's deletionTimestamp as the API server does
	// for a graceful delete, and hands the update to the runtime.
	markDeleted := func(t *testing.T, cs *fake.Clientset, p *corev1.Pod) *corev1.Pod {
		t.Helper()
		cur, err := cs.CoreV1().Pods(p.Namespace).Get(ctx, p.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		now := metav1.Now()
		grace := int64(30)
		cur.DeletionTimestamp, cur.DeletionGracePeriodSeconds = &metav1.Time{Time: now.Add(time.Duration(grace) * time.Second)}, &grace
		if cur, err = cs.CoreV1().Pods(p.Namespace).Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		return cur
	}
	waitGone := func(t *testing.T, cs *fake.Clientset, p *corev1.Pod) time.Time {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			_, err := cs.CoreV1().Pods(p.Namespace).Get(ctx, p.Name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				return time.Now()
			}
			if time.Now().After(deadline) {
				t.Fatalf("the object of the deleted pod %s is still there 30 s later (err %v)", p.Name, err)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	t.Run("frozen", func(t *testing.T) {
		p, cs, pid, dels := start(t, "web-0", true, 2)
		// Frozen, as the source of a migration is when it is deleted.
		f := &freezer.Freezer{Version: freezer.V1, Mount: "/sys/fs/cgroup/freezer", Parent: parent + "/node-a"}
		cg, err := f.PodPath(p.UID)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Freeze(ctx, cg); err != nil {
			t.Fatal(err)
		}
		r.onPod(ctx, markDeleted(t, cs, p))
		waitGone(t, cs, p)
		if pidAlive(pid) {
			t.Fatalf("the lab app (pid %d) of %s still runs although its pod object is gone", pid, p.Name)
		}
		ds := dels()
		if len(ds) != 3 {
			t.Fatalf("%d deletes, want 3 (two refused by the API server, then the one taken): %+v", len(ds), ds)
		}
		for i, d := range ds {
			if d.alive {
				t.Errorf("delete %d came while the lab app (pid %d) still ran", i, pid)
			}
			if d.opts.GracePeriodSeconds == nil || *d.opts.GracePeriodSeconds != 0 || d.opts.Preconditions == nil || d.opts.Preconditions.UID == nil || *d.opts.Preconditions.UID != p.UID {
				t.Errorf("delete %d with options %+v, want a grace period of 0 and the pod's UID %s as precondition", i, d.opts, p.UID)
			}
		}
	})

	t.Run("not the runtime's", func(t *testing.T) {
		p, cs, pid, dels := start(t, "web-2", false, 0)
		r.onPod(ctx, markDeleted(t, cs, p))
		if pidAlive(pid) {
			t.Errorf("the lab app (pid %d) of the deleted pod %s still runs", pid, p.Name)
		}
		time.Sleep(200 * time.Millisecond) // nothing to wait for: no delete may come
		if ds := dels(); len(ds) != 0 {
			t.Fatalf("%d deletes of a pod without %s, want none (kwok removes it)", len(ds), LabelRuntime)
		}
	})
}

// pidAlive tells whether a process runs (a zombie counts as gone).
func pidAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if errors.Is(err, os.ErrNotExist) {
		return false
	}
	if err != nil {
		return true
	}
	// pid (comm) S ...: the state follows the last ')'.
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] == ')' {
			return i+2 < len(b) && b[i+2] != 'Z'
		}
	}
	return true
}
