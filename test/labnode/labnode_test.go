package labnode

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/livemigrate/livemigrate/agent/archive"
	"github.com/livemigrate/livemigrate/agent/checkpointimage"
	"github.com/livemigrate/livemigrate/agent/freezer"
	"github.com/livemigrate/livemigrate/agent/kubelet"
	"github.com/livemigrate/livemigrate/test/labapp/labstate"
)

var labappBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "labnode-test-")
	if err != nil {
		panic(err)
	}
	labappBin = filepath.Join(dir, "labapp")
	cmd := exec.Command("go", "build", "-o", labappBin, "github.com/livemigrate/livemigrate/test/labapp")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		panic("building labapp: " + err.Error())
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the lab node runtime puts processes in cgroups and reads /proc/<pid>/mem: needs root")
	}
	if _, err := os.Stat("/sys/fs/cgroup/freezer/cgroup.procs"); err != nil {
		t.Skip("no cgroup v1 freezer on this host")
	}
}

func newRuntime(t *testing.T, node, parent string, cfg Config) *Runtime {
	t.Helper()
	cfg.NodeName, cfg.Root, cfg.LabApp = node, filepath.Join(t.TempDir(), node), labappBin
	cfg.FreezerMount, cfg.CgroupParent = "/sys/fs/cgroup/freezer", parent+"/"+node
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() {
		cancel()
		r.StopAll()
		_ = os.Remove(filepath.Join(cfg.FreezerMount, cfg.CgroupParent, "kubepods", "burstable"))
		_ = os.Remove(filepath.Join(cfg.FreezerMount, cfg.CgroupParent, "kubepods"))
		_ = os.Remove(filepath.Join(cfg.FreezerMount, cfg.CgroupParent))
		_ = os.Remove(filepath.Join(cfg.FreezerMount, parent))
	})
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return r
}

func labPod(name, image, volume string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "db", UID: uuid.NewUUID()},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{
				Name: "app", Image: image,
				Args:         []string{"run", "--memory=4Mi", "--dirty-rate=4Mi", "--tick=2ms", "--log=/data/counter.log"},
				VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"}},
			}},
			Volumes: []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: volume}}}},
		},
	}
}

func counter(t *testing.T, r *Runtime, pod string) uint64 {
	t.Helper()
	ci, ok := r.Container("db", pod, "app")
	if !ok {
		t.Fatalf("pod %s not running", pod)
	}
	l, err := labstate.ReadLayout(ci.StateDir)
	if err != nil {
		t.Fatal(err)
	}
	c, err := labstate.PeekCounter(l)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func waitCounter(t *testing.T, r *Runtime, pod string, atLeast uint64) uint64 {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		c := counter(t, r, pod)
		if c >= atLeast {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("counter of %s stuck at %d, want %d", pod, c, atLeast)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// agreeWhileFrozen freezes the pod, checks that its memory and its log agree
// (both read while it is frozen), thaws it, and returns the counter.
func agreeWhileFrozen(t *testing.T, r *Runtime, pod string) uint64 {
	t.Helper()
	ci, _ := r.Container("db", pod, "app")
	ctx := context.Background()
	if err := r.Freezer().Freeze(ctx, ci.Cgroup); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = r.Freezer().Thaw(ctx, ci.Cgroup) }()
	l, _ := labstate.ReadLayout(ci.StateDir)
	rc, err := labstate.OpenProcessRegion(l)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	n, err := labstate.Agree(b, ci.LogPath)
	if err != nil {
		t.Fatalf("pod %s: memory and disk disagree: %v", pod, err)
	}
	return n
}

// TestCheckpointRestoreAndRollback is the node-level migration: freeze with
// the agent's freezer, checkpoint through the kubelet API with the agent's
// client, push with the agent's image code, restore on another node from the
// registry; and the rollback: thaw, nothing lost.
func TestCheckpointRestoreAndRollback(t *testing.T) {
	needRoot(t)
	reg, err := StartRegistry("", "")
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	parent := "livemigrate-labnode-test-" + string(uuid.NewUUID())[:8]
	pull := checkpointimage.PushOptions{Insecure: true}
	src := newRuntime(t, "node-a", parent, Config{SkipAuth: true, Registry: pull})
	dst := newRuntime(t, "node-b", parent, Config{SkipAuth: true, Registry: pull})
	vol := t.TempDir()
	ctx := context.Background()

	pod := labPod("web-0", DefaultLabAppImage, vol)
	if err := src.RunPod(ctx, pod); err != nil {
		t.Fatal(err)
	}
	waitCounter(t, src, "web-0", 50)

	// Freeze with the agent's freezer, finding the cgroup from the pod UID.
	f := &freezer.Freezer{Version: freezer.V1, Mount: "/sys/fs/cgroup/freezer", Parent: parent + "/node-a"}
	cg, err := f.PodPath(pod.UID)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Freeze(ctx, cg); err != nil {
		t.Fatal(err)
	}
	frozenAt := counter(t, src, "web-0")
	time.Sleep(300 * time.Millisecond)
	if c := counter(t, src, "web-0"); c != frozenAt {
		t.Fatalf("frozen app advanced from %d to %d", frozenAt, c)
	}

	// Checkpoint through the kubelet API.
	kc, err := kubelet.New(kubelet.Config{CAFile: src.CAFile})
	if err != nil {
		t.Fatal(err)
	}
	host, port := splitHostPort(t, src.Addr)
	items, err := kc.Checkpoint(ctx, host, port, "db", "web-0", "app", 30*time.Second)
	if err != nil {
		t.Fatalf("checkpoint: %v", err)
	}
	p, err := archive.Resolve(src.CheckpointDir(), items[0])
	if err != nil {
		t.Fatal(err)
	}
	info, err := archive.Inspect(p, archive.DefaultLimits)
	if err != nil {
		t.Fatalf("archive from the lab runtime: %v", err)
	}
	if info.ContainerName != "app" || info.PodName != "web-0" || info.CRIUVersion != CRIUVersion || info.Runtime != RuntimeName {
		t.Errorf("archive metadata %+v", info)
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o600 {
		t.Errorf("archive mode %v, want 0600", fi.Mode().Perm())
	}
	if st, _ := f.State(cg); st != freezer.Frozen {
		t.Fatalf("checkpoint thawed a pod frozen by the agent (state %s)", st)
	}
	if c := counter(t, src, "web-0"); c != frozenAt {
		t.Fatalf("app advanced during checkpoint: %d -> %d", frozenAt, c)
	}
	ref := checkpointimage.Repository(reg.Host+"/lm", "db", "web-0", "app") + ":mig-1"
	res, err := checkpointimage.PushArchive(ctx, p, info.ContainerName, info.Annotations, ref, pull)
	if err != nil {
		t.Fatal(err)
	}

	// Restore on node-b from the checkpoint image, same volume.
	target := labPod("web-0", res.Reference, vol)
	if err := dst.RunPod(ctx, target); err != nil {
		t.Fatalf("restore: %v", err)
	}
	got := waitCounter(t, dst, "web-0", frozenAt+20)
	n := agreeWhileFrozen(t, dst, "web-0")
	if n < got {
		t.Errorf("restored counter %d below %d", n, got)
	}
	restoredOut, _ := os.ReadFile(filepath.Join(dst.podDir(target.UID), "app", "output.log"))
	if !strings.Contains(string(restoredOut), "counter "+itoa(frozenAt)+" ") && !strings.Contains(string(restoredOut), "counter "+itoa(frozenAt+1)+" ") {
		t.Errorf("restored app did not start from the frozen counter %d: %s", frozenAt, restoredOut)
	}
	dst.StopPod(target.UID)

	// Rollback variant on a fresh pod: thaw, the source continues.
	vol2 := t.TempDir()
	pod2 := labPod("web-1", DefaultLabAppImage, vol2)
	if err := src.RunPod(ctx, pod2); err != nil {
		t.Fatal(err)
	}
	waitCounter(t, src, "web-1", 30)
	cg2, _ := f.PodPath(pod2.UID)
	if err := f.Freeze(ctx, cg2); err != nil {
		t.Fatal(err)
	}
	at := counter(t, src, "web-1")
	if _, err := kc.Checkpoint(ctx, host, port, "db", "web-1", "app", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := f.Thaw(ctx, cg2); err != nil {
		t.Fatal(err)
	}
	waitCounter(t, src, "web-1", at+30)
	if n := agreeWhileFrozen(t, src, "web-1"); n < at+30 {
		t.Errorf("after rollback: counter %d, want at least %d", n, at+30)
	}
}

func itoa(v uint64) string { return strconv.FormatUint(v, 10) }

func splitHostPort(t *testing.T, addr string) (string, int) {
	t.Helper()
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return host, port
}

func TestKubeletAPIAnswers(t *testing.T) {
	needRoot(t)
	cs := fake.NewSimpleClientset()
	cs.PrependReactor("create", "tokenreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		tr := a.(k8stesting.CreateAction).GetObject().(*authenticationv1.TokenReview)
		switch tr.Spec.Token {
		case "agent-token":
			tr.Status = authenticationv1.TokenReviewStatus{Authenticated: true, User: authenticationv1.UserInfo{Username: "system:serviceaccount:livemigrate-system:livemigrate-agent"}}
		case "other-token":
			tr.Status = authenticationv1.TokenReviewStatus{Authenticated: true, User: authenticationv1.UserInfo{Username: "system:serviceaccount:default:nobody"}}
		}
		return true, tr, nil
	})
	cs.PrependReactor("create", "subjectaccessreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		sar := a.(k8stesting.CreateAction).GetObject().(*authorizationv1.SubjectAccessReview)
		ra := sar.Spec.ResourceAttributes
		sar.Status.Allowed = sar.Spec.User == "system:serviceaccount:livemigrate-system:livemigrate-agent" &&
			ra != nil && ra.Verb == "create" && ra.Resource == "nodes" && ra.Subresource == "checkpoint" && ra.Name == "node-a"
		return true, sar, nil
	})
	parent := "livemigrate-labnode-test-" + string(uuid.NewUUID())[:8]
	r := newRuntime(t, "node-a", parent, Config{})
	r.cfg.Client = cs
	if err := r.RunPod(context.Background(), labPod("web-0", DefaultLabAppImage, t.TempDir())); err != nil {
		t.Fatal(err)
	}
	off := newRuntime(t, "node-off", parent, Config{DisableCheckpointAPI: true, SkipAuth: true})
	host, port := splitHostPort(t, r.Addr)
	_, offPort := splitHostPort(t, off.Addr)
	tok := func(s string) string {
		p := filepath.Join(t.TempDir(), "token")
		_ = os.WriteFile(p, []byte(s), 0o600)
		return p
	}
	cases := []struct {
		name      string
		token     string
		ca        string
		port      int
		pod, cont string
		check     func(error) bool
	}{
		{"no token", "", r.CAFile, port, "web-0", "app", kubelet.IsUnauthorized},
		{"unknown token", "bogus", r.CAFile, port, "web-0", "app", kubelet.IsUnauthorized},
		{"no nodes/checkpoint", "other-token", r.CAFile, port, "web-0", "app", kubelet.IsUnauthorized},
		{"unknown pod", "agent-token", r.CAFile, port, "web-9", "app", kubelet.IsNotFound},
		{"unknown container", "agent-token", r.CAFile, port, "web-0", "nope", kubelet.IsNotFound},
		{"feature gate off", "", off.CAFile, offPort, "web-0", "app", kubelet.IsFeatureDisabled},
		{"allowed", "agent-token", r.CAFile, port, "web-0", "app", func(err error) bool { return err == nil }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := kubelet.Config{CAFile: tc.ca}
			if tc.token != "" {
				cfg.TokenFile = tok(tc.token)
			}
			kc, err := kubelet.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			_, err = kc.Checkpoint(context.Background(), host, tc.port, "db", tc.pod, tc.cont, 10*time.Second)
			if !tc.check(err) {
				t.Errorf("got %v", err)
			}
		})
	}
	// The allowed checkpoint left the running app running.
	before := counter(t, r, "web-0")
	waitCounter(t, r, "web-0", before+10)
}

func TestMemberAt(t *testing.T) {
	dir := t.TempDir()
	pages := bytes.Repeat([]byte("0123456789abcdef"), 4096)
	write := func(name string, hdrs ...*tar.Header) string {
		t.Helper()
		p := filepath.Join(dir, name)
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		tw := tar.NewWriter(f)
		for _, h := range hdrs {
			data := []byte("x")
			if h.Name == pagesMember {
				data = pages
			}
			if h.Typeflag == tar.TypeReg {
				h.Size = int64(len(data))
			}
			if err := tw.WriteHeader(h); err != nil {
				t.Fatal(err)
			}
			if h.Typeflag == tar.TypeReg {
				if _, err := tw.Write(data); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := tw.Close(); err != nil {
			t.Fatal(err)
		}
		_ = f.Close()
		return p
	}
	reg := func(name string) *tar.Header { return &tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o600} }
	// A PAX header (long name) before the member moves its data.
	p := write("ok.tar", reg("config.dump"), &tar.Header{Name: "checkpoint/", Typeflag: tar.TypeDir, Mode: 0o700},
		reg("checkpoint/"+strings.Repeat("n", 120)), reg(pagesMember), reg("spec.dump"))
	off, size, err := memberAt(p, pagesMember)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	if size != int64(len(pages)) || !bytes.Equal(b[off:off+size], pages) {
		t.Fatalf("memberAt = %d, %d: not the member's bytes", off, size)
	}
	if _, _, err := memberAt(write("none.tar", reg("config.dump")), pagesMember); err == nil {
		t.Error("memberAt found a missing member")
	}
	// A PAX 0.1 sparse member (archive/tar does not write one): its
	// extended header is a member "pax" retyped to 'x' below.
	rec := ""
	for _, kv := range []string{"GNU.sparse.numblocks=1\n", "GNU.sparse.map=0,16\n"} {
		rec += fmt.Sprintf("%d %s", len(kv)+3, kv)
	}
	pax := reg("pax")
	p = write("sparse.tar", reg("config.dump"), pax, reg(pagesMember))
	b, _ = os.ReadFile(p)
	// Second header block: after config.dump's header and data block.
	h := b[1024 : 1024+512]
	if string(h[:3]) != "pax" {
		t.Fatal("unexpected tar layout")
	}
	// Rewrite its data and size for the record, and its type and checksum.
	copy(b[1536:2048], append([]byte(rec), make([]byte, 512-len(rec))...))
	copy(h[124:136], fmt.Sprintf("%011o\x00", len(rec)))
	h[156] = tar.TypeXHeader
	copy(h[148:156], "        ")
	sum := 0
	for _, c := range h {
		sum += int(c)
	}
	copy(h[148:156], fmt.Sprintf("%06o\x00 ", sum))
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := memberAt(p, pagesMember); err == nil || !strings.Contains(err.Error(), "sparse") {
		t.Errorf("memberAt of a sparse member = %v", err)
	}
}
