package invariant

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// labApp builds the lab app once per test binary.
func labApp(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "labapp")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/livemigrate/livemigrate/test/labapp")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the lab app: %v\n%s", err, out)
	}
	return bin
}

// cgroup makes a cgroup v1 freezer cgroup for the test.
func cgroup(t *testing.T, name string) string {
	t.Helper()
	const mount = "/sys/fs/cgroup/freezer"
	if _, err := os.Stat(filepath.Join(mount, "cgroup.procs")); err != nil {
		t.Skipf("no cgroup v1 freezer at %s: %v", mount, err)
	}
	if os.Geteuid() != 0 {
		t.Skip("freezing needs root")
	}
	rel := fmt.Sprintf("livemigrate-invariant-test-%d/%s", os.Getpid(), name)
	dir := filepath.Join(mount, rel)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = os.WriteFile(filepath.Join(dir, "freezer.state"), []byte("THAWED"), 0)
		for i := 0; i < 50; i++ {
			if os.Remove(dir) == nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		_ = os.Remove(filepath.Dir(dir))
	})
	return rel
}

func setFreezer(t *testing.T, rel, state string) {
	t.Helper()
	p := filepath.Join("/sys/fs/cgroup/freezer", rel, "freezer.state")
	if err := os.WriteFile(p, []byte(state), 0); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100; i++ {
		b, _ := os.ReadFile(p)
		if strings.TrimSpace(string(b)) == state {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("cgroup %s not %s", rel, state)
}

// start runs a lab app in the cgroup, with HOSTNAME host, and waits until it
// published its layout.
func start(t *testing.T, bin, rel, host, logPath string) *exec.Cmd {
	t.Helper()
	state := t.TempDir()
	cmd := exec.Command(bin, "run", "--memory=1Mi", "--tick=5ms", "--log="+logPath, "--state-dir="+state)
	cmd.Env = append(os.Environ(), "HOSTNAME="+host)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = os.WriteFile(filepath.Join("/sys/fs/cgroup/freezer", rel, "freezer.state"), []byte("THAWED"), 0)
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	if err := os.WriteFile(filepath.Join("/sys/fs/cgroup/freezer", rel, "cgroup.procs"), []byte(strconv.Itoa(cmd.Process.Pid)), 0); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 200; i++ {
		if _, err := os.Stat(filepath.Join(state, "layout.json")); err == nil {
			return cmd
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("lab app did not publish its layout")
	return nil
}

// The monitor sees two copies of one identity only when both run unfrozen,
// and a process whose memory counter is behind its log.
func TestMonitorSeesTwoLiveCopiesAndLostState(t *testing.T) {
	bin := labApp(t)
	src, dst := cgroup(t, "src"), cgroup(t, "dst")
	dir := t.TempDir()
	a := start(t, bin, src, "db-0", filepath.Join(dir, "a.log"))
	setFreezer(t, src, "FROZEN")
	b := start(t, bin, dst, "db-0", filepath.Join(dir, "b.log"))
	other := start(t, bin, dst, "web-0", filepath.Join(dir, "c.log"))

	// The test's processes share the host's UTS namespace: name them by
	// their HOSTNAME as a container's would be.
	byHostname := func(p Process) string { return p.Env["HOSTNAME"] }
	m := &Monitor{Identity: byHostname}
	for i := 0; i < 5; i++ {
		m.Sample()
		time.Sleep(10 * time.Millisecond)
	}
	procs := map[int]Process{}
	for _, p := range m.Processes() {
		procs[p.PID] = p
	}
	for _, c := range []*exec.Cmd{a, b, other} {
		if _, ok := procs[c.Process.Pid]; !ok {
			t.Fatalf("process %d not seen: %+v", c.Process.Pid, procs)
		}
	}
	if !procs[a.Process.Pid].Frozen || procs[b.Process.Pid].Frozen {
		t.Fatalf("frozen: a=%v b=%v, want a frozen and b running", procs[a.Process.Pid].Frozen, procs[b.Process.Pid].Frozen)
	}
	if v, n := m.Violations(); len(v) != 0 || n != 5 {
		t.Fatalf("violations %v after %d samples while the source is frozen, want none after 5", v, n)
	}

	// The source is thawed while the target runs: two live copies.
	setFreezer(t, src, "THAWED")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	go m.Run(ctx)
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		if v, _ := m.Violations(); len(v) > 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	v, _ := m.Violations()
	if len(v) != 1 || !strings.Contains(v[0].Message, "two live copies of db-0") ||
		!strings.Contains(v[0].Message, strconv.Itoa(a.Process.Pid)) || !strings.Contains(v[0].Message, strconv.Itoa(b.Process.Pid)) {
		t.Fatalf("violations = %v, want one naming db-0 and both processes", v)
	}
	cancel()

	// Processes outside the monitor's scope (another lab's, another
	// test's) are not looked at: the same two live copies are not its own.
	scoped := &Monitor{Identity: byHostname, Scope: func(p Process) bool {
		return p.PID != a.Process.Pid && p.PID != b.Process.Pid
	}}
	scoped.Sample()
	if v, n := scoped.Violations(); len(v) != 0 || n != 1 {
		t.Fatalf("violations %v after %d samples of processes outside the scope, want none after 1", v, n)
	}

	// A copy that resumes behind what its log says it wrote lost state.
	lost := filepath.Join(dir, "lost.log")
	var sb strings.Builder
	for i := 1; i <= 100000; i++ {
		fmt.Fprintf(&sb, "%d\n", i)
	}
	if err := os.WriteFile(lost, []byte(sb.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	setFreezer(t, src, "FROZEN") // one live copy of db-0 again
	m2 := &Monitor{Identity: byHostname}
	m2.Sample() // the log is seen before the stale copy starts
	if v, _ := m2.Violations(); len(v) != 0 {
		t.Fatalf("violations = %v for a valid log, want none", v)
	}
	// A fresh start on it (its first value is 1) is a new sequence, noted.
	start(t, bin, dst, "cache-0", lost)
	time.Sleep(50 * time.Millisecond)
	m2.Sample()
	if v, _ := m2.Violations(); len(v) != 0 {
		t.Fatalf("violations = %v for a fresh start on an existing log, want none", v)
	}
	if n := m2.Notes(); len(n) != 1 || !strings.Contains(n[0].Message, "starts again at 1 after 100000") {
		t.Fatalf("notes = %v, want the fresh start noted", n)
	}

	// A copy resumed from a stale state continues with values the log
	// already holds: state lost.
	stale := filepath.Join(dir, "stale.log")
	if err := os.WriteFile(stale, []byte("1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(stale, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	m3 := &Monitor{}
	if _, ok := m3.tail(stale, time.Now()); !ok {
		t.Fatal("log not read")
	}
	fmt.Fprintln(f, 4) // resumed from the state after tick 3
	f.Close()
	m3.tail(stale, time.Now())
	if v, _ := m3.Violations(); len(v) != 1 || !strings.Contains(v[0].Message, "state lost: log "+stale+" goes from 10 to 4") {
		t.Fatalf("violations = %v, want state lost: the log going from 10 back to 4", v)
	}
}

// A plain process inherits its parent's HOSTNAME: it names no pod.
func TestDefaultIdentity(t *testing.T) {
	cases := []struct {
		p    Process
		want string
	}{
		{Process{Env: map[string]string{"HOSTNAME": "db-0"}, OwnUTS: true}, "db-0"},
		{Process{Env: map[string]string{"HOSTNAME": "buildhost"}, Cgroup: "/livemigrate-lab/member1-node-0/kubepods/burstable/pod0a1b2c3d-0000-4000-8000-00000000000a"},
			"pod-uid:0a1b2c3d-0000-4000-8000-00000000000a"},
		{Process{Env: map[string]string{"HOSTNAME": "buildhost"}, Cgroup: "/user.slice"}, ""},
	}
	for _, tc := range cases {
		if got := DefaultIdentity(tc.p); got != tc.want {
			t.Errorf("DefaultIdentity(%+v) = %q, want %q", tc.p, got, tc.want)
		}
	}
}

// A frozen process killed by its runtime is gone for the monitor, also
// during the thaw that lets the kill take effect.
func TestKilledFrozenProcessIsNoCopy(t *testing.T) {
	bin := labApp(t)
	rel := cgroup(t, "killed")
	c := start(t, bin, rel, "db-0", filepath.Join(t.TempDir(), "a.log"))
	setFreezer(t, rel, "FROZEN")
	m := &Monitor{Identity: func(p Process) string { return p.Env["HOSTNAME"] }}
	if n := len(m.Processes()); n == 0 {
		t.Fatalf("frozen process not seen")
	}
	if err := c.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	for _, p := range m.Processes() {
		if p.PID == c.Process.Pid {
			t.Fatalf("a killed frozen process is listed: %+v", p)
		}
	}
}

// An exiting process (PF_EXITING in /proc/<pid>/stat: its SIGKILL taken, its
// memory being torn down) or a zombie runs nothing: it is no second copy.
func TestExitingProcessIsNoCopy(t *testing.T) {
	procs := t.TempDir()
	write := func(pid int, state string, flags uint64) {
		t.Helper()
		dir := filepath.Join(procs, strconv.Itoa(pid))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		files := map[string]string{
			"cmdline": "/bin/labapp\x00run\x00--log=/data/counter.log\x00",
			"stat":    fmt.Sprintf("%d (labapp) %s 1 %d %d 0 -1 %d 0 0 0 0 1 2 0 0 20 0 8 0 100", pid, state, pid, pid, flags),
			"status":  "Name:\tlabapp\nSigPnd:\t0000000000000000\nShdPnd:\t0000000000000000\n",
			"environ": "HOSTNAME=db-0\x00",
			"cgroup":  "",
		}
		for name, content := range files {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	m := &Monitor{ProcRoot: procs, Identity: func(Process) string { return "db-0" }}
	write(100, "S", 0x400100)
	write(200, "R", 0x400100)
	m.Sample()
	if v, _ := m.Violations(); len(v) != 1 {
		t.Fatalf("two running copies: violations %v, want one", v)
	}

	m = &Monitor{ProcRoot: procs, Identity: func(Process) string { return "db-0" }}
	write(200, "R", 0x400100|pfExiting)
	m.Sample()
	if v, _ := m.Violations(); len(v) != 0 {
		t.Errorf("a running copy beside an exiting one: violations %v, want none", v)
	}
	write(200, "Z", 0x400100)
	m.Sample()
	if v, _ := m.Violations(); len(v) != 0 {
		t.Errorf("a running copy beside a zombie: violations %v, want none", v)
	}
	if got := len(m.Processes()); got != 1 {
		t.Errorf("Processes lists %d, want 1 (the exiting one left out)", got)
	}
}

// A frozen copy that its runtime kills and thaws while the monitor looks at
// it (between any two of its reads of the process's files) is no second
// copy: the monitor reads the freezer state first, so it sees the copy
// either still frozen or already killed.
func TestKillAndThawDuringTheLookIsNoCopy(t *testing.T) {
	for _, after := range []string{"cgroup", "freezer.state", "stat", "status"} {
		t.Run("after "+after, func(t *testing.T) {
			procs, freezerMount := t.TempDir(), t.TempDir()
			write := func(path, content string) {
				t.Helper()
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			const noSignal, sigkill = "SigPnd:\t0000000000000000\nShdPnd:\t0000000000000000\n", "SigPnd:\t0000000000000000\nShdPnd:\t0000000000000100\n"
			for pid, cg := range map[int]string{100: "/source", 200: "/target"} {
				dir := filepath.Join(procs, strconv.Itoa(pid))
				write(filepath.Join(dir, "cmdline"), "/bin/labapp\x00run\x00")
				write(filepath.Join(dir, "stat"), fmt.Sprintf("%d (labapp) S 1 %d %d 0 -1 4194560 0 0 0 0 1 2 0 0 20 0 8 0 100", pid, pid, pid))
				write(filepath.Join(dir, "status"), noSignal)
				write(filepath.Join(dir, "cgroup"), "7:freezer:"+cg+"\n")
			}
			write(filepath.Join(freezerMount, "source", "freezer.state"), "FROZEN\n")
			write(filepath.Join(freezerMount, "target", "freezer.state"), "THAWED\n")
			// The runtime kills and thaws the source (pid 100) right after
			// the monitor read that file of it.
			trigger := filepath.Join(procs, "100", after)
			if after == "freezer.state" {
				trigger = filepath.Join(freezerMount, "source", after)
			}
			stopped := false
			m := &Monitor{ProcRoot: procs, FreezerMount: freezerMount, Identity: func(Process) string { return "db-0" }}
			m.readFile = func(path string) ([]byte, error) {
				b, err := os.ReadFile(path)
				if path == trigger && !stopped {
					stopped = true
					write(filepath.Join(procs, "100", "status"), sigkill)
					write(filepath.Join(freezerMount, "source", "freezer.state"), "THAWED\n")
				}
				return b, err
			}
			m.Sample()
			if !stopped {
				t.Fatalf("the monitor never read %s", trigger)
			}
			if v, _ := m.Violations(); len(v) != 0 {
				t.Errorf("violations %v, want none: the source was frozen, then killed", v)
			}
		})
	}
}

// A frozen copy whose log another copy goes on writing (a checkpoint
// restored elsewhere on a shared volume, while the source stays frozen
// until it is deleted) has lost nothing while it stays frozen: its memory
// is compared with its log once it runs again.
func TestFrozenCopyBehindItsSharedLogIsNoLoss(t *testing.T) {
	bin := labApp(t)
	rel := cgroup(t, "shared")
	log := filepath.Join(t.TempDir(), "counter.log")
	start(t, bin, rel, "db-0", log)
	time.Sleep(100 * time.Millisecond)
	setFreezer(t, rel, "FROZEN")
	m := &Monitor{Identity: func(p Process) string { return p.Env["HOSTNAME"] }}
	m.Sample()
	b, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Fields(string(b))
	last, err := strconv.ParseUint(lines[len(lines)-1], 10, 64)
	if err != nil || last == 0 {
		t.Fatalf("the log ends with %q (%v)", lines[len(lines)-1], err)
	}
	// The restored copy goes on from the checkpoint, on the same log.
	f, err := os.OpenFile(log, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	for v := last + 1; v <= last+20; v++ {
		fmt.Fprintf(f, "%d\n", v)
	}
	f.Close()
	for i := 0; i < 3; i++ {
		m.Sample()
	}
	if v, _ := m.Violations(); len(v) != 0 {
		t.Fatalf("violations %v, want none while the copy behind its log stays frozen", v)
	}
	// Thawed, it runs with a memory behind what its log holds.
	setFreezer(t, rel, "THAWED")
	deadline := time.Now().Add(5 * time.Second)
	for {
		m.Sample()
		v, _ := m.Violations()
		if len(v) > 0 {
			if !strings.Contains(v[0].Message, "state lost") {
				t.Errorf("violation %s, want state lost", v[0])
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("no violation after the copy behind its log was thawed")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
