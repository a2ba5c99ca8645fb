package freezer

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/uuid"
)

func TestPodCgroupCandidates(t *testing.T) {
	uid := types.UID("1a2b-3c")
	cases := []struct {
		name   string
		parent string
		driver Driver
		want   []string
	}{
		{"cgroupfs", "", DriverCgroupfs, []string{"kubepods/pod1a2b-3c", "kubepods/burstable/pod1a2b-3c", "kubepods/besteffort/pod1a2b-3c"}},
		{"cgroupfs with parent", "/lab/node1", DriverCgroupfs, []string{"lab/node1/kubepods/pod1a2b-3c", "lab/node1/kubepods/burstable/pod1a2b-3c", "lab/node1/kubepods/besteffort/pod1a2b-3c"}},
		{"systemd", "", DriverSystemd, []string{
			"kubepods.slice/kubepods-pod1a2b_3c.slice",
			"kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1a2b_3c.slice",
			"kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1a2b_3c.slice",
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, PodCgroupCandidates(tc.parent, tc.driver, uid)); diff != "" {
				t.Errorf("candidates (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPodPathFindsEitherDriver(t *testing.T) {
	mount := t.TempDir()
	uid := types.UID("0f0e-11")
	cases := []struct {
		name string
		dir  string
	}{
		{"cgroupfs burstable", "kubepods/burstable/pod0f0e-11"},
		{"systemd besteffort", "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod0f0e_11.slice"},
		{"cgroupfs guaranteed", "kubepods/pod0f0e-11"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			os.RemoveAll(filepath.Join(mount, "kubepods"))
			os.RemoveAll(filepath.Join(mount, "kubepods.slice"))
			if err := os.MkdirAll(filepath.Join(mount, tc.dir), 0o755); err != nil {
				t.Fatal(err)
			}
			f := &Freezer{Version: V1, Mount: mount}
			got, err := f.PodPath(uid)
			if err != nil {
				t.Fatalf("PodPath: %v", err)
			}
			if got != tc.dir {
				t.Errorf("PodPath = %q, want %q", got, tc.dir)
			}
		})
	}
	f := &Freezer{Version: V1, Mount: t.TempDir()}
	if _, err := f.PodPath(uid); !IsPodCgroupNotFound(err) {
		t.Errorf("PodPath of a missing pod: got %v, want ErrPodCgroupNotFound", err)
	}
	if _, err := f.PodPath("../x"); err == nil {
		t.Errorf("PodPath accepted a UID with a path separator")
	}
}

// realCgroup creates <mount>/<test-parent>/kubepods/burstable/pod<uid> with a
// busy-looping child process in it and returns the freezer and the pid.
func realCgroup(t *testing.T, v Version, mount string, driver Driver) (*Freezer, types.UID, int) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("freezing real cgroups needs root")
	}
	probe := "cgroup.procs"
	if _, err := os.Stat(filepath.Join(mount, probe)); err != nil {
		t.Skipf("no cgroup hierarchy at %s on this host", mount)
	}
	parent := "livemigrate-freezer-test-" + string(uuid.NewUUID())[:8]
	uid := uuid.NewUUID()
	rel := PodCgroupCandidates(parent, driver, uid)[1]
	dir := filepath.Join(mount, rel)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("create cgroup: %v", err)
	}
	if v == V2 {
		if _, err := os.Stat(filepath.Join(dir, "cgroup.freeze")); err != nil {
			t.Skipf("kernel has no cgroup v2 freezer: %v", err)
		}
	}
	cmd := exec.Command("sh", "-c", "while :; do :; done")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	f := &Freezer{Version: v, Mount: mount, Parent: parent}
	t.Cleanup(func() {
		_ = f.Thaw(context.Background(), rel)
		_ = cmd.Process.Kill()
		_, _ = cmd.Process.Wait()
		// remove leaf to top
		for p := dir; p != mount && strings.HasPrefix(p, mount); p = filepath.Dir(p) {
			for i := 0; i < 50; i++ {
				if err := os.Remove(p); err == nil || os.IsNotExist(err) {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
	})
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0); err != nil {
		t.Fatalf("move child into cgroup: %v", err)
	}
	return f, uid, pid
}

// cpuTicks is utime+stime of pid from /proc/<pid>/stat.
func cpuTicks(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	fields := strings.Fields(s[strings.LastIndex(s, ")")+2:])
	// fields[0] is state (field 3); utime is field 14, stime field 15.
	u, _ := strconv.ParseInt(fields[11], 10, 64)
	st, _ := strconv.ParseInt(fields[12], 10, 64)
	return u + st
}

func advances(t *testing.T, pid int) bool {
	t.Helper()
	before := cpuTicks(t, pid)
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		if cpuTicks(t, pid) > before {
			return true
		}
	}
	return false
}

func TestFreezeThawRealProcess(t *testing.T) {
	cases := []struct {
		name    string
		version Version
		mount   string
		driver  Driver
	}{
		{"v1 cgroupfs", V1, "/sys/fs/cgroup/freezer", DriverCgroupfs},
		{"v1 systemd", V1, "/sys/fs/cgroup/freezer", DriverSystemd},
		{"v2 cgroupfs", V2, "/sys/fs/cgroup/unified", DriverCgroupfs},
		{"v2 systemd", V2, "/sys/fs/cgroup/unified", DriverSystemd},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f, uid, pid := realCgroup(t, tc.version, tc.mount, tc.driver)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			rel, err := f.PodPath(uid)
			if err != nil {
				t.Fatalf("PodPath: %v", err)
			}
			if !advances(t, pid) {
				t.Fatalf("child does not run before the freeze")
			}
			if err := f.Freeze(ctx, rel); err != nil {
				t.Fatalf("Freeze: %v", err)
			}
			if st, err := f.State(rel); err != nil || st != Frozen {
				t.Fatalf("State after Freeze = %q, %v; want FROZEN", st, err)
			}
			// Idempotent: freezing a frozen pod is fine.
			if err := f.Freeze(ctx, rel); err != nil {
				t.Fatalf("second Freeze: %v", err)
			}
			before := cpuTicks(t, pid)
			time.Sleep(500 * time.Millisecond)
			if after := cpuTicks(t, pid); after != before {
				t.Fatalf("frozen child kept running: cpu ticks %d -> %d", before, after)
			}
			if err := f.Thaw(ctx, rel); err != nil {
				t.Fatalf("Thaw: %v", err)
			}
			if st, err := f.State(rel); err != nil || st != Thawed {
				t.Fatalf("State after Thaw = %q, %v; want THAWED", st, err)
			}
			if !advances(t, pid) {
				t.Fatalf("thawed child does not run")
			}
		})
	}
}

func TestFreezeRefusesRootAndMissing(t *testing.T) {
	f := &Freezer{Version: V1, Mount: t.TempDir()}
	ctx := context.Background()
	if err := f.Freeze(ctx, "/"); err == nil {
		t.Errorf("Freeze of the root cgroup succeeded")
	}
	if err := f.Freeze(ctx, "kubepods/podnope"); !IsPodCgroupNotFound(err) {
		t.Errorf("Freeze of a missing cgroup: got %v, want ErrPodCgroupNotFound", err)
	}
}

func TestFreezeTimesOut(t *testing.T) {
	// A v1 "cgroup" in a plain directory never reports FROZEN: the state file
	// keeps what we wrote only if the kernel says so; simulate a stuck
	// FREEZING by a state file the kernel does not manage.
	mount := t.TempDir()
	dir := filepath.Join(mount, "kubepods", "podx")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	f := &Freezer{Version: V2, Mount: mount}
	if err := os.WriteFile(filepath.Join(dir, "cgroup.events"), []byte("populated 1\nfrozen 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := f.Freeze(ctx, "kubepods/podx")
	if !IsTimeout(err) {
		t.Fatalf("Freeze of a cgroup that never freezes: got %v, want TimeoutError", err)
	}
}
