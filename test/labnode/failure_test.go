package labnode

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/client-go/kubernetes/fake"
)

// TestStartFailureReportedAsKubeletDoes: a pod whose checkpoint image cannot
// be pulled gets the status a kubelet writes (Pending, container waiting
// with ErrImagePull, then ImagePullBackOff), and is not tried again before
// its back-off; a container that cannot be created gets
// CreateContainerError.
func TestStartFailureReportedAsKubeletDoes(t *testing.T) {
	needRoot(t)
	parent := "livemigrate-labnode-test-" + string(uuid.NewUUID())[:8]
	r := newRuntime(t, "node-a", parent, Config{SkipAuth: true})
	ctx := context.Background()

	status := func(cs *fake.Clientset, name string) corev1.PodStatus {
		t.Helper()
		p, err := cs.CoreV1().Pods("db").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return p.Status
	}
	waiting := func(st corev1.PodStatus) *corev1.ContainerStateWaiting {
		t.Helper()
		if len(st.ContainerStatuses) != 1 || st.ContainerStatuses[0].State.Waiting == nil {
			t.Fatalf("container statuses = %+v, want one waiting", st.ContainerStatuses)
		}
		return st.ContainerStatuses[0].State.Waiting
	}

	t.Run("pull", func(t *testing.T) {
		// Nothing listens on port 1: the pull fails at once.
		p := labPod("web-0", "127.0.0.1:1/db/web-0-app@sha256:"+strings.Repeat("a", 64), t.TempDir())
		p.Spec.NodeName, p.Labels = "node-a", map[string]string{LabelRuntime: RuntimeName}
		cs := fake.NewSimpleClientset(p)
		r.cfg.Client = cs

		r.onPod(ctx, p)
		st := status(cs, "web-0")
		w := waiting(st)
		if st.Phase != corev1.PodPending || w.Reason != ReasonErrImagePull || !strings.Contains(w.Message, "pulling checkpoint image") {
			t.Fatalf("phase %s, waiting %+v; want Pending, %s saying the pull failed", st.Phase, w, ReasonErrImagePull)
		}
		for _, c := range st.Conditions {
			if c.Type == corev1.PodReady && c.Status != corev1.ConditionFalse {
				t.Errorf("Ready = %s, want False", c.Status)
			}
		}
		if _, ok := r.Container("db", "web-0", "app"); ok {
			t.Fatal("a container runs although its image could not be pulled")
		}

		// An update within the back-off does not make another attempt.
		actions := len(cs.Actions())
		r.onPod(ctx, p)
		if n := len(cs.Actions()); n != actions {
			t.Fatalf("%d API calls during the back-off, want none", n-actions)
		}

		// After the back-off the next attempt fails again: ImagePullBackOff,
		// with a doubled back-off.
		r.mu.Lock()
		f := r.failures[p.UID]
		first := f.backOff
		f.retryAt = time.Now()
		r.mu.Unlock()
		r.onPod(ctx, p)
		if w := waiting(status(cs, "web-0")); w.Reason != ReasonImagePullBackOff {
			t.Fatalf("waiting %+v after a second failed pull, want %s", w, ReasonImagePullBackOff)
		}
		r.mu.Lock()
		second := r.failures[p.UID].backOff
		r.mu.Unlock()
		if first != initialBackOff || second != 2*initialBackOff {
			t.Errorf("back-offs %s then %s, want %s then %s", first, second, initialBackOff, 2*initialBackOff)
		}

		// A deleted pod is forgotten: no retry timer is left behind.
		del := p.DeepCopy()
		now := metav1.Now()
		del.DeletionTimestamp = &now
		r.onPod(ctx, del)
		r.mu.Lock()
		_, left := r.failures[p.UID]
		r.mu.Unlock()
		if left {
			t.Error("the failure of a deleted pod is still recorded")
		}
	})

	t.Run("create", func(t *testing.T) {
		p := labPod("web-1", DefaultLabAppImage, t.TempDir())
		p.Spec.NodeName, p.Labels = "node-a", map[string]string{LabelRuntime: RuntimeName}
		cs := fake.NewSimpleClientset(p)
		r.cfg.Client = cs
		bin := r.cfg.LabApp
		r.cfg.LabApp = "/nonexistent/labapp"
		defer func() { r.cfg.LabApp = bin }()

		r.onPod(ctx, p)
		st := status(cs, "web-1")
		if w := waiting(st); st.Phase != corev1.PodPending || w.Reason != ReasonCreateContainerError || w.Message == "" {
			t.Fatalf("phase %s, waiting %+v; want Pending, %s with the error", st.Phase, w, ReasonCreateContainerError)
		}
		r.forget(p.UID)
	})
}
