package invariant

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/livemigrate/livemigrate/test/labapp/labstate"
)

// Process is one lab app process seen on the host.
type Process struct {
	PID int
	// Args are its arguments after "labapp run".
	Args []string
	// Env is its environment.
	Env map[string]string
	// Cgroup is its freezer cgroup (cgroup v1 freezer hierarchy, else the
	// unified one), relative to the mount.
	Cgroup string
	// Frozen is true when its cgroup (or a parent) is frozen or freezing.
	Frozen bool
	// OwnUTS is true when it runs in a UTS namespace of its own (a
	// container: its HOSTNAME is then the pod's).
	OwnUTS bool
	// LogPath and StateDir are its --log and --state-dir, as seen from
	// the host (relative to its root, /proc/<pid>/root, when it has one).
	LogPath, StateDir string
}

// Identity names the workload copy a process belongs to; "" leaves the
// process out of the two-copies check.
type Identity func(Process) string

// PodUIDPattern finds the pod UID in a kubelet-layout cgroup path.
var PodUIDPattern = regexp.MustCompile(`pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})`)

// DefaultIdentity is the HOSTNAME of the process's environment when it runs
// in a UTS namespace of its own (a container runtime sets both to the pod's
// hostname; a plain process only inherits its parent's), else the pod UID
// of its cgroup.
func DefaultIdentity(p Process) string {
	if h := p.Env["HOSTNAME"]; h != "" && p.OwnUTS {
		return h
	}
	if m := PodUIDPattern.FindStringSubmatch(p.Cgroup); m != nil {
		return "pod-uid:" + m[1]
	}
	return ""
}

// Violation is one breach seen.
type Violation struct {
	At      time.Time
	Message string
}

func (v Violation) String() string { return v.At.UTC().Format(time.RFC3339Nano) + " " + v.Message }

// Monitor samples the host's lab app processes.
type Monitor struct {
	// ProcRoot is /proc unless set.
	ProcRoot string
	// FreezerMount is the cgroup v1 freezer mount (/sys/fs/cgroup/freezer);
	// UnifiedMount the cgroup v2 mount (/sys/fs/cgroup/unified, else
	// /sys/fs/cgroup).
	FreezerMount, UnifiedMount string
	// Binary is the lab app's file name (argv[0]'s base), "labapp" unless set.
	Binary   string
	Identity Identity
	// Scope, when set, keeps only the processes it accepts: a lab whose
	// host runs other labs and tests ignores their lab app processes.
	Scope func(Process) bool
	// Interval between samples (20ms unless set).
	Interval time.Duration

	// readFile reads the process and cgroup files (os.ReadFile unless set:
	// tests interleave changes with the reads).
	readFile func(string) ([]byte, error)

	mu         sync.Mutex
	violations []Violation
	samples    int
	// reported keeps one violation per kind and subject.
	reported map[string]bool
	logs     map[string]*logTail
	notes    []Violation
}

func (m *Monitor) defaults() {
	if m.ProcRoot == "" {
		m.ProcRoot = "/proc"
	}
	if m.FreezerMount == "" {
		m.FreezerMount = "/sys/fs/cgroup/freezer"
	}
	if m.UnifiedMount == "" {
		m.UnifiedMount = "/sys/fs/cgroup/unified"
		if _, err := os.Stat(m.UnifiedMount); err != nil {
			m.UnifiedMount = "/sys/fs/cgroup"
		}
	}
	if m.Binary == "" {
		m.Binary = "labapp"
	}
	if m.Identity == nil {
		m.Identity = DefaultIdentity
	}
	if m.Interval <= 0 {
		m.Interval = 20 * time.Millisecond
	}
}

func (m *Monitor) read(path string) ([]byte, error) {
	if m.readFile != nil {
		return m.readFile(path)
	}
	return os.ReadFile(path)
}

// Run samples until ctx ends.
func (m *Monitor) Run(ctx context.Context) {
	m.defaults()
	t := time.NewTicker(m.Interval)
	defer t.Stop()
	for {
		m.Sample()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Notes returns what was seen that breaks no invariant but is worth a
// line in a test's output (a process started fresh on an existing log).
func (m *Monitor) Notes() []Violation {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]Violation(nil), m.notes...)
}

func (m *Monitor) note(now time.Time, format string, args ...any) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.notes = append(m.notes, Violation{At: now, Message: fmt.Sprintf(format, args...)})
}

// Violations returns what was seen so far, and how many samples were taken.
func (m *Monitor) Violations() ([]Violation, int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]Violation(nil), m.violations...), m.samples
}

func (m *Monitor) report(key string, now time.Time, format string, args ...any) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.reported == nil {
		m.reported = map[string]bool{}
	}
	if m.reported[key] {
		return
	}
	m.reported[key] = true
	m.violations = append(m.violations, Violation{At: now, Message: fmt.Sprintf(format, args...)})
}

// Sample takes one look at every lab app process and records what breaks
// an invariant now.
func (m *Monitor) Sample() {
	m.defaults()
	now := time.Now()
	procs := m.Processes()
	live := map[string][]int{}
	for _, p := range procs {
		if m.Scope != nil && !m.Scope(p) {
			continue
		}
		if p.Frozen {
			// A frozen copy runs nothing, and its memory may lag its log
			// while another copy writes it (a checkpoint restored on a
			// shared volume): it is compared once it runs again.
			continue
		}
		if id := m.Identity(p); id != "" {
			live[id] = append(live[id], p.PID)
		}
		m.checkCounter(p, now)
	}
	for id, pids := range live {
		if len(pids) > 1 {
			sort.Ints(pids)
			m.report("two:"+id+":"+fmt.Sprint(pids), now, "two live copies of %s: processes %v run unfrozen at the same instant", id, pids)
		}
	}
	m.mu.Lock()
	m.samples++
	m.mu.Unlock()
}

// logTail follows one counter log: how far it was read and the last value.
type logTail struct {
	ino    uint64
	offset int64
	last   uint64
}

// tail reads the complete lines appended to the log since the last sample
// and reports a value that does not follow the one before it (the log is
// 1, 2, 3, ... for an app that never lost state: a copy resumed from a
// stale state appends a value it already wrote). It returns the last
// value read. A log replaced by another file (a new inode, or shorter) is
// read again from its start.
func (m *Monitor) tail(path string, now time.Time) (uint64, bool) {
	f, err := os.Open(path)
	if err != nil {
		return 0, false
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, false
	}
	var ino uint64
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		ino = st.Ino
	}
	m.mu.Lock()
	if m.logs == nil {
		m.logs = map[string]*logTail{}
	}
	lt := m.logs[path]
	if lt == nil || lt.ino != ino || fi.Size() < lt.offset {
		lt = &logTail{ino: ino}
		m.logs[path] = lt
	}
	m.mu.Unlock()
	if fi.Size() == lt.offset {
		return lt.last, true
	}
	buf := make([]byte, fi.Size()-lt.offset)
	n, _ := f.ReadAt(buf, lt.offset)
	buf = buf[:n]
	end := bytes.LastIndexByte(buf, '\n')
	if end < 0 {
		return lt.last, true
	}
	for _, line := range bytes.Split(buf[:end], []byte("\n")) {
		v, err := strconv.ParseUint(string(line), 10, 64)
		if err != nil {
			m.report("garbled:"+path, now, "log %s holds %q, not a counter value", path, line)
			break
		}
		switch v {
		case lt.last + 1:
		case 1:
			// A process started fresh on this volume (a container
			// restarted, or a target pod admitted without its
			// checkpoint, which the migration catches and rolls
			// back): a new sequence, not a copy resumed from a stale
			// state.
			m.note(now, "log %s starts again at 1 after %d: a process started fresh on it", path, lt.last)
		default:
			m.report(fmt.Sprintf("order:%s:%d", path, lt.last), now,
				"state lost: log %s goes from %d to %d (a value skipped or written again)", path, lt.last, v)
		}
		lt.last = v
	}
	lt.offset += int64(end) + 1
	return lt.last, true
}

// checkCounter follows the process's log, then compares its committed
// memory counter with the last value logged: the app appends value c,
// then commits counter = c, so read in that order the counter is at most
// one behind the log.
func (m *Monitor) checkCounter(p Process, now time.Time) {
	if p.LogPath == "" || p.StateDir == "" {
		return
	}
	logged, ok := m.tail(p.LogPath, now)
	if !ok {
		return
	}
	l, err := labstate.ReadLayout(p.StateDir)
	if err != nil || l.PID <= 0 {
		return // not published yet (a restore loads first)
	}
	// Inside a PID namespace the layout holds the namespaced PID: read
	// the memory through the host PID.
	l.PID = p.PID
	counter, err := labstate.PeekCounter(l)
	if err != nil {
		return // exited meanwhile
	}
	// A fresh start has not ticked yet: its first value, 1, starts a new
	// sequence in the log (see tail).
	if counter > 0 && counter+1 < logged {
		m.report(fmt.Sprintf("lost:%d", p.PID), now, "state lost: process %d (%s) holds counter %d in memory but its log %s already has %d",
			p.PID, m.Identity(p), counter, p.LogPath, logged)
	}
}

// Processes lists the lab app processes on the host.
func (m *Monitor) Processes() []Process {
	m.defaults()
	ents, err := os.ReadDir(m.ProcRoot)
	if err != nil {
		return nil
	}
	var out []Process
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		p, ok := m.process(pid)
		if ok {
			out = append(out, p)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].PID < out[j].PID })
	return out
}

func (m *Monitor) process(pid int) (Process, bool) {
	dir := filepath.Join(m.ProcRoot, strconv.Itoa(pid))
	raw, err := os.ReadFile(filepath.Join(dir, "cmdline"))
	if err != nil || len(raw) == 0 {
		return Process{}, false
	}
	argv := strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
	if len(argv) < 2 || filepath.Base(argv[0]) != m.Binary || argv[1] != "run" {
		return Process{}, false
	}
	// The freezer state is read before whether the process is killed or
	// exiting: a runtime stops a frozen container by killing it, then
	// thawing it so that the kill takes effect. Read the other way round,
	// a kill and thaw between the two reads would show a process neither
	// killed nor frozen, running as far as the monitor could tell.
	cgroup, frozen := m.freezer(dir)
	if stat, err := m.read(filepath.Join(dir, "stat")); err == nil && exiting(stat) {
		return Process{}, false
	}
	if m.killed(dir) {
		// Killed while frozen: the thaw that lets the kill take effect
		// runs nothing of it.
		return Process{}, false
	}
	p := Process{PID: pid, Args: argv[2:], Env: map[string]string{}, Cgroup: cgroup, Frozen: frozen}
	if env, err := os.ReadFile(filepath.Join(dir, "environ")); err == nil {
		for _, kv := range strings.Split(string(env), "\x00") {
			if k, v, ok := strings.Cut(kv, "="); ok {
				p.Env[k] = v
			}
		}
	}
	root := ""
	if r, err := os.Readlink(filepath.Join(dir, "root")); err == nil && r != "/" {
		root = filepath.Join(dir, "root")
	}
	for _, a := range p.Args {
		if v, ok := strings.CutPrefix(a, "--log="); ok && v != "" {
			p.LogPath = filepath.Join(root, v)
		}
		if v, ok := strings.CutPrefix(a, "--state-dir="); ok && v != "" {
			p.StateDir = filepath.Join(root, v)
		}
	}
	own, _ := os.Readlink(filepath.Join(dir, "ns", "uts"))
	mine, _ := os.Readlink(filepath.Join(m.ProcRoot, "self", "ns", "uts"))
	p.OwnUTS = own != "" && mine != "" && own != mine
	return p, true
}

// freezer returns the process's freezer cgroup and whether it is frozen.
func (m *Monitor) freezer(procDir string) (string, bool) {
	b, err := m.read(filepath.Join(procDir, "cgroup"))
	if err != nil {
		return "", false
	}
	var unified string
	for _, line := range strings.Split(string(b), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[0] == "0" && parts[1] == "" {
			unified = parts[2]
		}
		for _, c := range strings.Split(parts[1], ",") {
			if c == "freezer" {
				st, err := m.read(filepath.Join(m.FreezerMount, parts[2], "freezer.state"))
				s := strings.TrimSpace(string(st))
				return parts[2], err == nil && (s == "FROZEN" || s == "FREEZING")
			}
		}
	}
	if unified == "" {
		return "", false
	}
	ev, err := m.read(filepath.Join(m.UnifiedMount, unified, "cgroup.events"))
	return unified, err == nil && bytes.Contains(ev, []byte("frozen 1"))
}

// pfExiting is the kernel's PF_EXITING task flag: the task is in do_exit
// and never returns to user code.
const pfExiting = 0x4

// exiting reports, from /proc/<pid>/stat, whether the process has exited
// (a zombie) or is exiting: a killed process whose SIGKILL was taken
// (no longer pending) spends a while tearing down its memory before it is a
// zombie, and runs nothing of its own meanwhile.
func exiting(stat []byte) bool {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return false
	}
	// After the command: state (field 3), ppid, pgrp, session, tty_nr,
	// tpgid, flags (field 9).
	f := strings.Fields(string(stat[i+1:]))
	if len(f) > 0 && f[0] == "Z" {
		return true
	}
	if len(f) > 6 {
		if flags, err := strconv.ParseUint(f[6], 10, 64); err == nil && flags&pfExiting != 0 {
			return true
		}
	}
	return false
}

// killed reports whether a SIGKILL is pending for the process.
func (m *Monitor) killed(procDir string) bool {
	b, err := m.read(filepath.Join(procDir, "status"))
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || (k != "SigPnd" && k != "ShdPnd") {
			continue
		}
		mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		if err == nil && mask&(1<<(uint(syscall.SIGKILL)-1)) != 0 {
			return true
		}
	}
	return false
}
