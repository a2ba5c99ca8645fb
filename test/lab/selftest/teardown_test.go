package selftest

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/klog/v2/ktesting"

	"github.com/livemigrate/livemigrate/test/lab"
)

// childEnv makes the test binary start a lab, record it and wait to be killed.
const childEnv = "LIVEMIGRATE_LAB_SELFTEST_CHILD"

// record is what a lab leaves to check: its processes and ports.
type record struct {
	PIDs  map[string]int `json:"pids"`
	Ports map[string]int `json:"ports"`
}

func smallLab(dir string) lab.Options {
	return lab.Options{Members: 1, NodesPerMember: 1, Components: []string{}, Dir: dir, SkipProjectBuild: true}
}

func TestStopLeavesNothing(t *testing.T) {
	_, ctx := ktesting.NewTestContext(t)
	l, err := lab.Start(ctx, smallLab(""))
	if err != nil {
		t.Fatal(err)
	}
	rec := record{PIDs: l.PIDs(), Ports: l.Ports()}
	dir := l.Dir
	if len(rec.PIDs) < 7 {
		t.Errorf("only %d processes running: %v", len(rec.PIDs), rec.PIDs)
	}
	l.Stop()
	// Stop returns after reaping every process group.
	assertGone(t, rec, 0)
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("lab directory %s still exists after Stop (err %v)", dir, err)
	}
}

// TestKilledTestBinaryLeavesNothing kills (SIGKILL, no chance to clean up)
// a test binary that runs a lab and checks that every component dies with it.
func TestKilledTestBinaryLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+dir)
	out, err := os.Create(filepath.Join(dir, "child.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	cmd.Stdout, cmd.Stderr = out, out
	// The child dies with this test binary too, whatever stops it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	recPath := filepath.Join(dir, "record.json")
	var rec record
	err = wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, 3*time.Minute, true, func(context.Context) (bool, error) {
		select {
		case err := <-exited:
			return false, fmt.Errorf("the child exited early: %v", err)
		default:
		}
		raw, err := os.ReadFile(recPath)
		if err != nil {
			return false, nil
		}
		return true, json.Unmarshal(raw, &rec)
	})
	if err != nil {
		raw, _ := os.ReadFile(out.Name())
		t.Fatalf("waiting for the child's lab: %v\n%s", err, raw)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := <-exited; err == nil {
		t.Error("the killed child exited successfully")
	}
	// The kernel delivers Pdeathsig at once, but dying takes a moment.
	assertGone(t, rec, 10*time.Second)
}

func runChild(dir string) int {
	l, err := lab.Start(context.Background(), smallLab(filepath.Join(dir, "lab")))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	raw, err := json.Marshal(record{PIDs: l.PIDs(), Ports: l.Ports()})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := os.WriteFile(filepath.Join(dir, "record.json"), raw, 0o644); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	select {} // until killed
}

// assertGone checks, within timeout, that no recorded process runs and no
// recorded port accepts connections.
func assertGone(t *testing.T, rec record, timeout time.Duration) {
	t.Helper()
	var left []string
	_ = wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		left = nil
		for name, pid := range rec.PIDs {
			if alive(pid) {
				left = append(left, fmt.Sprintf("process %s (PID %d)", name, pid))
			}
		}
		for name, port := range rec.Ports {
			c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
			if err == nil {
				_ = c.Close()
				left = append(left, fmt.Sprintf("port %s (%d)", name, port))
			}
		}
		return len(left) == 0, nil
	})
	if len(left) > 0 {
		t.Errorf("left behind: %s", strings.Join(left, ", "))
	}
}

// alive reports whether pid runs and is not a zombie.
func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil {
		return false
	}
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(raw)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return len(fields) > 0 && fields[0] != "Z"
}
