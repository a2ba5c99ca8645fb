package labnode

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/uuid"

	"github.com/livemigrate/livemigrate/agent/archive"
	"github.com/livemigrate/livemigrate/agent/checkpointimage"
	"github.com/livemigrate/livemigrate/agent/freezer"
	"github.com/livemigrate/livemigrate/agent/kubelet"
	"github.com/livemigrate/livemigrate/test/labapp/labstate"
)

func TestReadLazyPagesConfig(t *testing.T) {
	dir := t.TempDir()
	cases := map[string]struct {
		content string
		want    *LazyPages
		err     string
	}{
		"lazy":              {content: "lazy-pages\naddress 10.0.0.1\nport 27000\n", want: &LazyPages{Address: "10.0.0.1", Port: 27000}},
		"flags spelling":    {content: "# post-copy\n--lazy-pages\n--address 10.0.0.1\n--port 27000\n", want: &LazyPages{Address: "10.0.0.1", Port: 27000}},
		"not lazy":          {content: "address 10.0.0.1\nport 27000\n"},
		"no port":           {content: "lazy-pages\naddress 10.0.0.1\n", err: "lazy-pages needs address and port"},
		"port not a number": {content: "lazy-pages\naddress a\nport x\n", err: `port "x"`},
		"unknown option":    {content: "lazy-pages\naddress a\nport 1\ntcp-established\n", err: `option "tcp-established" is not supported`},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(name, " ", "-")+".conf")
			if err := os.WriteFile(p, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := readLazyPagesConfig(p)
			switch {
			case tc.err != "":
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
			case err != nil:
				t.Fatal(err)
			case (got == nil) != (tc.want == nil) || got != nil && *got != *tc.want:
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
	if got, err := readLazyPagesConfig(filepath.Join(dir, "absent.conf")); got != nil || err != nil {
		t.Fatalf("absent file: %+v, %v; want nothing", got, err)
	}
	p := filepath.Join(dir, "written", "c.conf")
	if err := WriteLazyPagesConfig(p, LazyPages{Address: "127.0.0.1", Port: 4000}); err != nil {
		t.Fatal(err)
	}
	if got, err := readLazyPagesConfig(p); err != nil || got == nil || *got != (LazyPages{Address: "127.0.0.1", Port: 4000}) {
		t.Fatalf("written config reads back as %+v, %v", got, err)
	}
	if err := WriteLazyPagesConfig(p, LazyPages{Address: "127.0.0.1"}); err == nil {
		t.Fatal("a config without a port was written")
	}
}

// TestLazyPagesNeedRunc checks that the memory stand-in refuses a lazy
// checkpoint instead of copying the whole memory under the name of one.
func TestLazyPagesNeedRunc(t *testing.T) {
	needRoot(t)
	parent := "livemigrate-labnode-test-" + string(uuid.NewUUID())[:8]
	t.Cleanup(func() { removeCgroupTree(parent) })
	src := newRuntime(t, "node-a", parent, Config{SkipAuth: true})
	ctx := context.Background()
	if err := src.RunPod(ctx, labPod("web-0", DefaultLabAppImage, t.TempDir())); err != nil {
		t.Fatal(err)
	}
	if err := WriteLazyPagesConfig(src.CRIUConfigPath("db", "web-0", "app"), LazyPages{Address: "127.0.0.1", Port: 1}); err != nil {
		t.Fatal(err)
	}
	kc, err := kubelet.New(kubelet.Config{CAFile: src.CAFile})
	if err != nil {
		t.Fatal(err)
	}
	host, port := splitHostPort(t, src.Addr)
	_, err = kc.Checkpoint(ctx, host, port, "db", "web-0", "app", 60*time.Second)
	if err == nil || !strings.Contains(err.Error(), "lazy pages (post-copy) need the runc runtime") {
		t.Fatalf("lazy checkpoint on the memory stand-in: err = %v", err)
	}
}

// TestRuncPostCopyCheckpointRestore is the node-level post-copy migration:
// the frozen source's container is dumped with lazy pages (its archive
// holds everything but the memory pages) and its page server stays up; the
// target restores it at once with a lazy-pages daemon pointed at that page
// server; the restored counter goes on from the frozen one, the source's
// dump reports the transfer finished, and the source stayed frozen until
// then.
func TestRuncPostCopyCheckpointRestore(t *testing.T) {
	needRoot(t)
	criu := criuBinary(t)
	reg, err := StartRegistry("", "")
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	parent := "livemigrate-labnode-test-" + string(uuid.NewUUID())[:8]
	pull := checkpointimage.PushOptions{Insecure: true}
	cfg := Config{SkipAuth: true, Registry: pull, ContainerRuntime: ContainerRuntimeRunc, CRIU: criu}
	t.Cleanup(func() { removeCgroupTree(parent) })
	src := newRuntime(t, "node-a", parent, cfg)
	dst := newRuntime(t, "node-b", parent, cfg)
	vol := t.TempDir()
	ctx := context.Background()

	const memory = 64 << 20
	pod := labPod("web-0", DefaultLabAppImage, vol)
	pod.Spec.Containers[0].Args[1] = "--memory=64Mi"
	if err := src.RunPod(ctx, pod); err != nil {
		t.Fatal(err)
	}
	waitCounter(t, src, "web-0", 50)

	f := &freezer.Freezer{Version: freezer.V1, Mount: "/sys/fs/cgroup/freezer", Parent: parent + "/node-a"}
	cg, err := f.PodPath(pod.UID)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Freeze(ctx, cg); err != nil {
		t.Fatal(err)
	}
	frozenAt := counter(t, src, "web-0")

	lp := LazyPages{Address: "127.0.0.1", Port: freeTCPPort(t)}
	if err := WriteLazyPagesConfig(src.CRIUConfigPath("db", "web-0", "app"), lp); err != nil {
		t.Fatal(err)
	}
	kc, err := kubelet.New(kubelet.Config{CAFile: src.CAFile})
	if err != nil {
		t.Fatal(err)
	}
	host, port := splitHostPort(t, src.Addr)
	items, err := kc.Checkpoint(ctx, host, port, "db", "web-0", "app", 60*time.Second)
	if err != nil {
		t.Fatalf("lazy checkpoint: %v", err)
	}
	dump, ok := src.LazyDump("db", "web-0", "app")
	if !ok {
		t.Fatal("no lazy dump recorded for the checkpoint")
	}
	select {
	case <-dump.Done:
		t.Fatalf("the source's page server ended before the target asked for a page: %v", dump.Err)
	default:
	}
	p, err := archive.Resolve(src.CheckpointDir(), items[0])
	if err != nil {
		t.Fatal(err)
	}
	info, err := archive.Inspect(p, archive.DefaultLimits)
	if err != nil {
		t.Fatalf("archive of a lazy checkpoint: %v", err)
	}
	// Everything but the pages: far less than the app's memory.
	if info.Summary.PagesBytes > memory/8 {
		t.Errorf("the lazy archive holds %d bytes of pages for a %d-byte memory", info.Summary.PagesBytes, memory)
	}
	t.Logf("lazy archive: %d bytes of pages, %d in all", info.Summary.PagesBytes, info.SizeBytes)
	if st, _ := f.State(cg); st != freezer.Frozen {
		t.Fatalf("the lazy checkpoint thawed the pod frozen by the agent (state %s)", st)
	}
	ref := checkpointimage.Repository(reg.Host+"/lm", "db", "web-0", "app") + ":mig-1"
	res, err := checkpointimage.PushArchive(ctx, p, info.ContainerName, info.Annotations, ref, pull)
	if err != nil {
		t.Fatal(err)
	}

	vol2 := t.TempDir()
	copyDir(t, vol, vol2)
	target := labPod("web-0", res.Reference, vol2)
	target.Spec.Containers[0].Args[1] = "--memory=64Mi"
	if err := WriteLazyPagesConfig(dst.CRIUConfigPath("db", "web-0", "app"), lp); err != nil {
		t.Fatal(err)
	}
	restoreStart := time.Now()
	if err := dst.RunPod(ctx, target); err != nil {
		t.Fatalf("lazy restore: %v", err)
	}
	t.Logf("restored and running after %v", time.Since(restoreStart))
	daemon, ok := dst.LazyRestore("db", "web-0", "app")
	if !ok {
		t.Fatal("no lazy-pages daemon recorded for the restore")
	}
	got := waitCounter(t, dst, "web-0", frozenAt+20)
	waitTransfer := func(what string, tr *LazyTransfer) {
		t.Helper()
		select {
		case <-tr.Done:
			if tr.Err != nil {
				t.Fatalf("%s: %v", what, tr.Err)
			}
		case <-time.After(2 * time.Minute):
			t.Fatalf("%s did not end within 2m; its log ends: %s", what, readTail(tr.Log, 2048))
		}
	}
	waitTransfer("the target's lazy-pages daemon", daemon)
	waitTransfer("the source's page server", dump)
	if log := readTail(dump.Log, 4096); !strings.Contains(log, "Lazy pages transfer finished successfully") {
		t.Errorf("the source's dump log does not say the transfer finished: %s", log)
	}
	if st, _ := f.State(cg); st != freezer.Frozen {
		t.Errorf("the source pod is not frozen once its pages moved (state %s)", st)
	}
	if c := counter(t, src, "web-0"); c != frozenAt {
		t.Errorf("the source's counter moved from %d to %d: two copies ran", frozenAt, c)
	}
	if n := waitCounter(t, dst, "web-0", got+20); n < got+20 {
		t.Errorf("restored counter stuck at %d", n)
	}
	// The restored memory is the frozen one: the log on the target's volume
	// goes on from the frozen value without a gap or a restart from zero.
	logged, err := os.ReadFile(filepath.Join(vol2, "counter.log"))
	if err != nil {
		t.Fatal(err)
	}
	values := strings.Fields(string(logged))
	for i, v := range values {
		if v != strconv.Itoa(i+1) {
			t.Fatalf("target volume's log has %s at line %d: not one run from 1", v, i+1)
		}
	}
	if uint64(len(values)) < frozenAt+20 {
		t.Errorf("restored app's log on the target volume ends at %d, want past %d", len(values), frozenAt+20)
	}
	if last, _ := labstate.LastLogged(filepath.Join(vol, "counter.log")); last > frozenAt+1 {
		t.Errorf("source volume's log went on to %d after the freeze at %d", last, frozenAt)
	}
	dst.StopPod(target.UID)
}

func freeTCPPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
