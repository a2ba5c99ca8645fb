package lab

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"k8s.io/klog/v2"
)

// tailLines is how many log lines are shown for a component that exits or
// when a test fails.
const tailLines = 40

// Exit reports a component that ended while the lab was running.
type Exit struct {
	// Component is the name of the process, e.g. "kube-apiserver-member1".
	Component string
	// Status is the exit status as the operating system reported it.
	Status string
	// Tail holds the last lines of the component's log.
	Tail []string
}

func (e Exit) String() string {
	return fmt.Sprintf("%s exited (%s); last log lines:\n  %s", e.Component, e.Status, strings.Join(e.Tail, "\n  "))
}

// process is one running component.
type process struct {
	name    string
	binary  string
	args    []string
	env     []string
	logPath string
	cmd     *exec.Cmd
	done    chan struct{}
	state   *os.ProcessState
	waitErr error

	mu       sync.Mutex
	stopping bool
}

// supervisor starts components in their own process groups, keeps their
// logs, and reports every component that exits before the lab stops it.
type supervisor struct {
	logDir string
	logger klog.Logger

	mu    sync.Mutex
	procs []*process
	exits []Exit
	// exited is closed and replaced whenever a component exits unexpectedly.
	exited chan struct{}
}

func newSupervisor(logDir string, logger klog.Logger) (*supervisor, error) {
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return nil, fmt.Errorf("creating %s: %w", logDir, err)
	}
	return &supervisor{logDir: logDir, logger: logger, exited: make(chan struct{})}, nil
}

// start runs binary with args; its stdout and stderr go to <logDir>/<name>.log.
// The process gets its own process group (so that stopping it also stops
// its children) and SIGKILL when the lab's process dies (Pdeathsig).
func (s *supervisor) start(name, binary string, args, env []string) (*process, error) {
	logPath := filepath.Join(s.logDir, name+".log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening the log of %s: %w", name, err)
	}
	fmt.Fprintf(logFile, "+ %s %s\n", binary, strings.Join(args, " "))
	cmd := exec.Command(binary, args...)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		_ = logFile.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &process{name: name, binary: binary, args: args, env: env, logPath: logPath, cmd: cmd, done: make(chan struct{})}
	s.mu.Lock()
	s.procs = append(s.procs, p)
	s.mu.Unlock()
	s.logger.V(2).Info("Started component", "component", name, "pid", cmd.Process.Pid)
	go func() {
		p.waitErr = cmd.Wait()
		p.state = cmd.ProcessState
		_ = logFile.Close()
		close(p.done)
		p.mu.Lock()
		stopping := p.stopping
		p.mu.Unlock()
		if stopping {
			return
		}
		e := Exit{Component: name, Status: exitStatus(p), Tail: tailFile(logPath, tailLines)}
		s.logger.Error(nil, "Component exited", "component", name, "status", e.Status, "logTail", strings.Join(e.Tail, "\n"))
		s.mu.Lock()
		s.exits = append(s.exits, e)
		close(s.exited)
		s.exited = make(chan struct{})
		s.mu.Unlock()
	}()
	return p, nil
}

func exitStatus(p *process) string {
	if p.state != nil {
		return p.state.String()
	}
	if p.waitErr != nil {
		return p.waitErr.Error()
	}
	return "unknown"
}

// Exits returns the components that ended unexpectedly so far.
func (s *supervisor) Exits() []Exit {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Exit(nil), s.exits...)
}

// exitedChan is closed at the next unexpected exit.
func (s *supervisor) exitedChan() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.exited
}

// exitErr returns an error naming every component that exited, or nil.
func (s *supervisor) exitErr() error {
	exits := s.Exits()
	if len(exits) == 0 {
		return nil
	}
	msgs := make([]string, 0, len(exits))
	for _, e := range exits {
		msgs = append(msgs, e.String())
	}
	return errors.New(strings.Join(msgs, "\n"))
}

// stop ends one process: SIGTERM to its process group, then SIGKILL after
// the grace period. It returns when the process has been reaped.
func (p *process) stop(grace time.Duration) {
	p.mu.Lock()
	p.stopping = true
	p.mu.Unlock()
	select {
	case <-p.done:
		return
	default:
	}
	pgid := p.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-p.done
	}
	// Children that outlived the leader still belong to the group.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
}

// stopAll stops every process in reverse start order, in groups: the
// processes started after the first apiserver first, then the rest.
func (s *supervisor) stopAll(grace time.Duration) {
	s.mu.Lock()
	procs := append([]*process(nil), s.procs...)
	s.mu.Unlock()
	for _, p := range procs {
		p.mu.Lock()
		p.stopping = true
		p.mu.Unlock()
	}
	for i := len(procs) - 1; i >= 0; i-- {
		procs[i].stop(grace)
	}
}

// stopWhere stops, concurrently, every process whose name matches.
func (s *supervisor) stopWhere(match func(name string) bool, grace time.Duration) {
	s.mu.Lock()
	var sel []*process
	for _, p := range s.procs {
		if match(p.name) {
			sel = append(sel, p)
		}
	}
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range sel {
		p.mu.Lock()
		p.stopping = true
		p.mu.Unlock()
	}
	for _, p := range sel {
		wg.Add(1)
		go func() { defer wg.Done(); p.stop(grace) }()
	}
	wg.Wait()
}

// pids returns the process IDs of the running components by name.
func (s *supervisor) pids() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]int{}
	for _, p := range s.procs {
		select {
		case <-p.done:
		default:
			out[p.name] = p.cmd.Process.Pid
		}
	}
	return out
}

// logs returns the log file of every component, in start order.
func (s *supervisor) logs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.procs))
	for _, p := range s.procs {
		out = append(out, p.logPath)
	}
	return out
}

// dumpLogs writes the tail of every component's log to w.
func (s *supervisor) dumpLogs(w io.Writer, lines int) {
	for _, path := range s.logs() {
		fmt.Fprintf(w, "===== %s (last %d lines) =====\n", path, lines)
		for _, l := range tailFile(path, lines) {
			fmt.Fprintln(w, l)
		}
	}
}

// tailFile returns the last n lines of a file.
func tailFile(path string, n int) []string {
	f, err := os.Open(path)
	if err != nil {
		return []string{fmt.Sprintf("(cannot read %s: %v)", path, err)}
	}
	defer f.Close()
	// Read at most the last 256 KiB.
	if st, err := f.Stat(); err == nil && st.Size() > 256<<10 {
		_, _ = f.Seek(st.Size()-256<<10, io.SeekStart)
	}
	ring := make([]string, 0, n)
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if len(ring) == n {
			ring = ring[1:]
		}
		ring = append(ring, sc.Text())
	}
	return ring
}

// watch waits for ctx or for a component to exit, whichever comes first;
// a component that exited before the call ends it at once (its exit closed
// the channel of that moment, which is replaced since).
func (s *supervisor) watch(ctx context.Context) error {
	exited := s.exitedChan()
	if err := s.exitErr(); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-exited:
		return s.exitErr()
	}
}

// kill ends a process at once, as a crash would: SIGKILL to its process
// group, without reporting it as an unexpected exit.
func (p *process) kill() {
	p.mu.Lock()
	p.stopping = true
	p.mu.Unlock()
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// killNamed kills the running processes of that name.
func (s *supervisor) killNamed(name string) int {
	s.mu.Lock()
	var sel []*process
	for _, p := range s.procs {
		select {
		case <-p.done:
			continue
		default:
		}
		if p.name == name {
			sel = append(sel, p)
		}
	}
	s.mu.Unlock()
	for _, p := range sel {
		p.kill()
	}
	return len(sel)
}

// restartNamed starts again, with the same command line and environment,
// the last process of that name, which must have ended (killNamed).
func (s *supervisor) restartNamed(name string) error {
	s.mu.Lock()
	var last *process
	for _, p := range s.procs {
		if p.name == name {
			last = p
		}
	}
	s.mu.Unlock()
	if last == nil {
		return fmt.Errorf("no process %s was ever started", name)
	}
	select {
	case <-last.done:
	default:
		return fmt.Errorf("%s is still running", name)
	}
	_, err := s.start(name, last.binary, last.args, last.env)
	return err
}
