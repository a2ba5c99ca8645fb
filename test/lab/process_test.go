package lab

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/klog/v2/ktesting"
)

func TestSupervisorReportsExit(t *testing.T) {
	logger, _ := ktesting.NewTestContext(t)
	sup, err := newSupervisor(t.TempDir(), logger)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sup.start("failing", "/bin/sh", []string{"-c", "echo first; echo second; echo last >&2; exit 3"}, nil); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := sup.watch(ctx); err == nil || ctx.Err() != nil {
		t.Fatalf("watch = %v, want the component's exit", err)
	}
	exits := sup.Exits()
	if len(exits) != 1 {
		t.Fatalf("got %d exits, want 1", len(exits))
	}
	got := exits[0]
	if diff := cmp.Diff("failing", got.Component); diff != "" {
		t.Errorf("component (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff("exit status 3", got.Status); diff != "" {
		t.Errorf("status (-want +got):\n%s", diff)
	}
	// The first log line is the command line the supervisor recorded.
	if diff := cmp.Diff([]string{"first", "second", "last"}, got.Tail[1:]); diff != "" {
		t.Errorf("log tail (-want +got):\n%s", diff)
	}
	if !strings.Contains(sup.exitErr().Error(), "failing exited (exit status 3)") {
		t.Errorf("exitErr = %q, want the name and status", sup.exitErr())
	}
}

// TestSupervisorWatchSeesEarlierExit: a component that exited before watch
// was called ends it at once, not at the next exit.
func TestSupervisorWatchSeesEarlierExit(t *testing.T) {
	logger, _ := ktesting.NewTestContext(t)
	sup, err := newSupervisor(t.TempDir(), logger)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sup.start("quick", "/bin/sh", []string{"-c", "exit 4"}, nil); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(sup.Exits()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the component's exit was never recorded")
		}
		time.Sleep(5 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := sup.watch(ctx); err == nil || ctx.Err() != nil || !strings.Contains(err.Error(), "quick exited (exit status 4)") {
		t.Fatalf("watch = %v, want the earlier exit at once", err)
	}
}

func TestSupervisorStopKillsProcessGroup(t *testing.T) {
	logger, _ := ktesting.NewTestContext(t)
	dir := t.TempDir()
	sup, err := newSupervisor(dir, logger)
	if err != nil {
		t.Fatal(err)
	}
	pidFile := filepath.Join(dir, "child.pid")
	// The shell ignores SIGTERM and starts a child that does too, so only
	// the SIGKILL to the whole group after the grace period ends both.
	script := `trap "" TERM; sh -c 'trap "" TERM; echo $$ > ` + pidFile + `; while :; do sleep 1; done' & wait`
	p, err := sup.start("stubborn", "/bin/sh", []string{"-c", script}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var child int
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := poll(ctx, "the child's PID file", func(context.Context) (bool, string, error) {
		raw, err := os.ReadFile(pidFile)
		if err != nil || len(strings.TrimSpace(string(raw))) == 0 {
			return false, "no PID yet", nil
		}
		_, err = fmtSscan(strings.TrimSpace(string(raw)), &child)
		return err == nil, "", nil
	}); err != nil {
		t.Fatal(err)
	}
	sup.stopAll(300 * time.Millisecond)
	if !p.state.Exited() && p.state.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Errorf("leader ended with %v, want SIGKILL", p.state)
	}
	if err := poll(ctx, "the child to die", func(context.Context) (bool, string, error) {
		return !processAlive(child), "still alive", nil
	}); err != nil {
		t.Error(err)
	}
	if len(sup.Exits()) != 0 {
		t.Errorf("a stopped component was reported as exited: %v", sup.Exits())
	}
}

func TestTailFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	var b strings.Builder
	for i := range 100 {
		b.WriteString(strings.Repeat("x", i%7))
		b.WriteString("\n")
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	// The last three lines were written for i = 97, 98, 99.
	want := []string{strings.Repeat("x", 97%7), strings.Repeat("x", 98%7), strings.Repeat("x", 99%7)}
	if diff := cmp.Diff(want, tailFile(path, 3)); diff != "" {
		t.Errorf("tailFile (-want +got):\n%s", diff)
	}
}

// TestSupervisorRestartsKilledProcess: a killed process is not an
// unexpected exit, and restartNamed runs its command line again (with its
// environment); a running one is not restarted.
func TestSupervisorRestartsKilledProcess(t *testing.T) {
	logger, _ := ktesting.NewTestContext(t)
	dir := t.TempDir()
	sup, err := newSupervisor(dir, logger)
	if err != nil {
		t.Fatal(err)
	}
	defer sup.stopAll(time.Second)
	out := filepath.Join(dir, "out")
	if _, err := sup.start("sleeper", "/bin/sh", []string{"-c", `echo "$LAB_WORD" >> ` + out + `; exec sleep 60`}, []string{"LAB_WORD=again"}); err != nil {
		t.Fatal(err)
	}
	first := sup.pids()["sleeper"]
	waitOutput := func(want string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			b, _ := os.ReadFile(out)
			if string(b) == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("the output is %q, want %q", b, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitOutput("again\n")
	if err := sup.restartNamed("sleeper"); err == nil {
		t.Error("restartNamed restarted a running process")
	}
	if n := sup.killNamed("sleeper"); n != 1 {
		t.Fatalf("killNamed = %d, want 1", n)
	}
	if err := sup.restartNamed("sleeper"); err != nil {
		t.Fatal(err)
	}
	second := sup.pids()["sleeper"]
	if second == 0 || second == first {
		t.Errorf("pid after the restart = %d, before %d: want a new process", second, first)
	}
	if err := sup.restartNamed("never-started"); err == nil {
		t.Error("restartNamed of a process never started succeeded")
	}
	waitOutput("again\nagain\n")
	if err := sup.exitErr(); err != nil {
		t.Errorf("a killed process counted as an unexpected exit: %v", err)
	}
}
