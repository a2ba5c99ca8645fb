package labnode

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"k8s.io/apimachinery/pkg/util/uuid"

	"github.com/livemigrate/livemigrate/agent/archive"
	"github.com/livemigrate/livemigrate/agent/checkpointimage"
	"github.com/livemigrate/livemigrate/agent/freezer"
	"github.com/livemigrate/livemigrate/agent/kubelet"
	"github.com/livemigrate/livemigrate/test/labapp/labstate"
)

// criuBinary returns the CRIU the project builds (hack/ensure-criu.sh builds
// it when missing) and sets what CRIU needs on these machines.
func criuBinary(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("../../hack/ensure-criu.sh").Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("hack/ensure-criu.sh: %v: %s", err, ee.Stderr)
		}
		t.Fatalf("hack/ensure-criu.sh: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	// Hardware breakpoints never fire in these virtual machines: without
	// CRIU's FI_NO_BREAKPOINTS fault switch a dump waits forever for its
	// tasks to trap. runc passes its environment on to CRIU.
	t.Setenv("CRIU_FAULT", "130")
	return lines[len(lines)-1]
}

// TestRuncCheckpointRestore is the node-level migration with real
// containers: the pod runs under runc, the agent's freezer freezes its pod
// cgroup, the kubelet API checkpoints it with runc checkpoint (CRIU) into
// CRI-O's archive, the agent's archive inspection accepts it, and another
// node restores it with runc restore from the checkpoint image onto a copy
// of the volume. The restored memory comes from CRIU: the restored process
// is a new one (new PID namespace, started after the checkpoint, no
// restore arguments) whose counter continues from the frozen one, and the
// target node keeps no copy of the memory once it runs.
func TestRuncCheckpointRestore(t *testing.T) {
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

	pod := labPod("web-0", DefaultLabAppImage, vol)
	if err := src.RunPod(ctx, pod); err != nil {
		t.Fatal(err)
	}
	waitCounter(t, src, "web-0", 50)
	srcInfo, _ := src.Container("db", "web-0", "app")
	if ns, host := pidNS(t, srcInfo.PID), pidNS(t, os.Getpid()); ns == host {
		t.Fatalf("container shares the host's PID namespace %s", ns)
	}

	f := &freezer.Freezer{Version: freezer.V1, Mount: "/sys/fs/cgroup/freezer", Parent: parent + "/node-a"}
	cg, err := f.PodPath(pod.UID)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Freeze(ctx, cg); err != nil {
		t.Fatal(err)
	}
	frozenAt := counter(t, src, "web-0")

	kc, err := kubelet.New(kubelet.Config{CAFile: src.CAFile})
	if err != nil {
		t.Fatal(err)
	}
	host, port := splitHostPort(t, src.Addr)
	checkpointAt := uptime(t)
	items, err := kc.Checkpoint(ctx, host, port, "db", "web-0", "app", 60*time.Second)
	if err != nil {
		t.Fatalf("checkpoint: %v", err)
	}
	p, err := archive.Resolve(src.CheckpointDir(), items[0])
	if err != nil {
		t.Fatal(err)
	}
	info, err := archive.Inspect(p, archive.DefaultLimits)
	if err != nil {
		t.Fatalf("archive from runc checkpoint: %v", err)
	}
	if info.ContainerName != "app" || info.PodName != "web-0" || info.PodNamespace != "db" || info.Image != DefaultLabAppImage || info.Runtime != "runc" {
		t.Errorf("archive metadata %+v", info)
	}
	// What CRIU itself recorded: its version and the host in dump.log, the
	// process tree in pstree.img and core-<pid>.img.
	criuVersion, err := ReadCRIUVersion(criu)
	if err != nil {
		t.Fatal(err)
	}
	var uts unix.Utsname
	_ = unix.Uname(&uts)
	if info.CRIUVersion != criuVersion || info.Kernel != unix.ByteSliceToString(uts.Release[:]) || info.Architecture != goruntime.GOARCH {
		t.Errorf("archive says CRIU %q, kernel %q, architecture %q; want %q, %q, %q", info.CRIUVersion, info.Kernel, info.Architecture, criuVersion, unix.ByteSliceToString(uts.Release[:]), goruntime.GOARCH)
	}
	if info.Processes != 1 || info.Command != "labapp" {
		t.Errorf("process tree of %d processes rooted at %q, want the one labapp", info.Processes, info.Command)
	}
	for _, m := range []string{"checkpoint/inventory.img", "checkpoint/pstree.img", "checkpoint/pagemap-1.img", "checkpoint/pages-1.img", "config.dump", "spec.dump", "stats-dump", "dump.log", "bind.mounts", "rootfs-diff.tar"} {
		if _, ok := info.Summary.Files[m]; !ok {
			t.Errorf("archive lacks %s", m)
		}
	}
	if info.Summary.PagesBytes < 4<<20 {
		t.Errorf("page images hold %d bytes, want at least the app's 4 MiB region", info.Summary.PagesBytes)
	}
	if info.PagesWritten == 0 || info.FrozenTime == 0 {
		t.Errorf("stats-dump from CRIU: pages written %d, frozen time %v", info.PagesWritten, info.FrozenTime)
	}
	if st, _ := f.State(cg); st != freezer.Frozen {
		t.Fatalf("checkpoint thawed a pod frozen by the agent (state %s)", st)
	}
	if c := counter(t, src, "web-0"); c != frozenAt {
		t.Fatalf("app advanced during checkpoint: %d -> %d", frozenAt, c)
	}
	// CRIU's page images hold exactly the frozen process's memory.
	l, err := labstate.ReadLayout(srcInfo.StateDir)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := labstate.OpenProcessRegion(l)
	if err != nil {
		t.Fatal(err)
	}
	frozenRegion, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	dumped, err := CRIUMemory(checkpointMembers(t, p), l.Address, int(l.Length))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(dumped, frozenRegion) {
		first := 0
		for first < len(dumped) && dumped[first] == frozenRegion[first] {
			first++
		}
		t.Fatalf("CRIU's page images differ from the frozen process's memory (%d bytes at %#x), first at byte %d: %v vs %v", len(dumped), l.Address, first, dumped[first:first+16], frozenRegion[first:first+16])
	}
	ref := checkpointimage.Repository(reg.Host+"/lm", "db", "web-0", "app") + ":mig-1"
	res, err := checkpointimage.PushArchive(ctx, p, info.ContainerName, info.Annotations, ref, pull)
	if err != nil {
		t.Fatal(err)
	}

	// The target's volume is a copy taken while the source is frozen, at
	// another path: the bind mount follows the target pod's volume.
	vol2 := t.TempDir()
	copyDir(t, vol, vol2)
	target := labPod("web-0", res.Reference, vol2)
	if err := dst.RunPod(ctx, target); err != nil {
		t.Fatalf("restore: %v", err)
	}
	dstInfo, ok := dst.Container("db", "web-0", "app")
	if !ok {
		t.Fatal("restored container not running")
	}
	got := waitCounter(t, dst, "web-0", frozenAt+20)
	if n := agreeWhileFrozen(t, dst, "web-0"); n < got {
		t.Errorf("restored counter %d below %d", n, got)
	}
	if pidNS(t, dstInfo.PID) == pidNS(t, srcInfo.PID) || pidNS(t, dstInfo.PID) == pidNS(t, os.Getpid()) {
		t.Errorf("restored process is not in a PID namespace of its own")
	}
	if started := startTime(t, dstInfo.PID); started < checkpointAt {
		t.Errorf("restored process started %v after boot, before the checkpoint at %v", started, checkpointAt)
	}
	cmdline, _ := os.ReadFile("/proc/" + strconv.Itoa(dstInfo.PID) + "/cmdline")
	if strings.Contains(string(cmdline), "--restore") {
		t.Errorf("restored process was started with restore arguments: %q", cmdline)
	}
	// The process did not start from zero: its counter went on from the
	// frozen one, and nothing but CRIU's images carried the memory there.
	var leftovers []string
	_ = filepath.WalkDir(dst.cfg.Root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && (strings.HasPrefix(d.Name(), "pages-") || strings.HasSuffix(d.Name(), ".tar") && strings.Contains(p, "/pods/")) {
			leftovers = append(leftovers, p)
		}
		return nil
	})
	if len(leftovers) > 0 {
		t.Errorf("target node keeps the checkpoint after the restore: %v", leftovers)
	}
	// The log on the target's volume goes on from the frozen value without
	// a gap or a restart from zero, and the restored lab app never ran its
	// start-up (which prints its starting counter) on the target.
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
	out, _ := os.ReadFile(filepath.Join(dst.podDir(target.UID), "app", "output.log"))
	if strings.Contains(string(out), "labapp: pid") {
		t.Errorf("the restored app started up on the target instead of being restored: %s", out)
	}
	if want := fmt.Sprintf("from the checkpoint at counter %d ", frozenAt); !strings.Contains(string(out), want) {
		t.Errorf("target's output %q does not say %q", out, want)
	}
	if last, _ := labstate.LastLogged(filepath.Join(vol, "counter.log")); last > frozenAt+1 {
		t.Errorf("source volume's log went on to %d after the freeze at %d", last, frozenAt)
	}
	dst.StopPod(target.UID)
	if err := f.Thaw(ctx, cg); err != nil {
		t.Fatal(err)
	}
	waitCounter(t, src, "web-0", frozenAt+30)
}

// removeCgroupTree removes a test's cgroups from every v1 hierarchy (runc
// creates a container's cgroup in all of them).
func removeCgroupTree(parent string) {
	hs, _ := os.ReadDir("/sys/fs/cgroup")
	for _, h := range hs {
		root := filepath.Join("/sys/fs/cgroup", h.Name(), parent)
		var dirs []string
		_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			_ = os.Remove(dirs[i])
		}
	}
}

// checkpointMembers reads the checkpoint/ members of an archive.
func checkpointMembers(t *testing.T, p string) map[string][]byte {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string][]byte{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		if name, ok := strings.CutPrefix(h.Name, "checkpoint/"); ok && h.Typeflag == tar.TypeReg {
			if out[name], err = io.ReadAll(tr); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func pidNS(t *testing.T, pid int) string {
	t.Helper()
	ns, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/ns/pid")
	if err != nil {
		t.Fatal(err)
	}
	return ns
}

// startTime is when a process started, as time since boot
// (/proc/<pid>/stat, in clock ticks of 10 ms).
func startTime(t *testing.T, pid int) time.Duration {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	fields := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	ticks, err := strconv.ParseInt(fields[19], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return time.Duration(ticks) * 10 * time.Millisecond
}

// uptime is the time since boot (/proc/uptime).
func uptime(t *testing.T) time.Duration {
	t.Helper()
	b, err := os.ReadFile("/proc/uptime")
	if err != nil {
		t.Fatal(err)
	}
	s, err := strconv.ParseFloat(strings.Fields(string(b))[0], 64)
	if err != nil {
		t.Fatal(err)
	}
	return time.Duration(s * float64(time.Second))
}

func copyDir(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.WalkDir(from, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		dst := filepath.Join(to, rel)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		in, err := os.Open(p)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.Create(dst)
		if err != nil {
			return err
		}
		_, err = io.Copy(out, in)
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// The slowest steps of a CRIU log are the lines that came longest after
// their predecessor, in log order.
func TestSlowestSteps(t *testing.T) {
	p := filepath.Join(t.TempDir(), "dump.log")
	log := "(00.000010) Version: 4.2.1\n(00.000020) a\nnot a log line\n(02.500000) seized\n(02.500100) b\n(03.000100) written\n"
	if err := os.WriteFile(p, []byte(log), 0o600); err != nil {
		t.Fatal(err)
	}
	got := slowestSteps(p, 2)
	want := []string{"+2.500s at 2.500s: seized", "+0.500s at 3.000s: written"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("slowestSteps = %q, want %q", got, want)
	}
}
