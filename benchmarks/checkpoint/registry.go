package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/livemigrate/livemigrate/test/labnode"
)

// serveRegistryArg as the first argument makes the benchmark binary serve
// the registry (in its own process) instead of measuring.
const serveRegistryArg = "serve-registry"

// profileEnv passes --cpuprofile-dir to the registry process.
const profileEnv = "BENCH_CHECKPOINT_REGISTRY_PROFILE_DIR"

// registryProc is the registry both paths push to, in this process or in a
// child process.
type registryProc struct {
	host string
	// inproc is set when the registry runs in this process.
	inproc *labnode.Registry
	cmd    *exec.Cmd
	acks   *bufio.Reader
}

func startRegistry(where, gogc string) (*registryProc, error) {
	if where == "inproc" {
		reg, err := labnode.StartRegistry("", "")
		if err != nil {
			return nil, err
		}
		return &registryProc{host: reg.Host, inproc: reg}, nil
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, serveRegistryArg)
	cmd.Stderr = os.Stderr
	cmd.Env = os.Environ()
	if profileDir != "" {
		cmd.Env = append(cmd.Env, profileEnv+"="+profileDir)
	}
	if gogc != "" {
		cmd.Env = append(cmd.Env, "GOGC="+gogc)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	acks := bufio.NewReader(out)
	line, err := acks.ReadString('\n')
	if err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, fmt.Errorf("registry process: %w", err)
	}
	return &registryProc{host: strings.TrimSpace(line), cmd: cmd, acks: acks}, nil
}

// settle collects the registry's garbage (and, with freeOS, returns the freed
// heap to the kernel) and waits until it is done. In process it is part of
// the benchmark process's own settling.
func (r *registryProc) settle(freeOS bool) error {
	if r.cmd == nil {
		return nil
	}
	sig := syscall.SIGUSR2
	if freeOS {
		sig = syscall.SIGUSR1
	}
	if err := r.cmd.Process.Signal(sig); err != nil {
		return err
	}
	line, err := r.acks.ReadString('\n')
	if err != nil {
		return fmt.Errorf("registry process: %w", err)
	}
	if strings.TrimSpace(line) != "settled" {
		return fmt.Errorf("registry process said %q", line)
	}
	return nil
}

func (r *registryProc) pid() int {
	if r.cmd == nil {
		return 0
	}
	return r.cmd.Process.Pid
}

func (r *registryProc) close() {
	if r.inproc != nil {
		_ = r.inproc.Close()
		return
	}
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = r.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = r.cmd.Process.Kill()
		<-done
	}
}

// serveRegistry is the registry process: it prints its host:port, then on
// SIGUSR1 returns its freed heap to the OS, on SIGUSR2 collects garbage, and
// answers "settled" on stdout; SIGTERM stops it.
func serveRegistry() error {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGTERM, os.Interrupt)
	reg, err := labnode.StartRegistry("", "")
	if err != nil {
		return err
	}
	defer reg.Close()
	fmt.Println(reg.Host)
	// With profileEnv set, each settle starts a new CPU profile in that
	// directory (registry-<n>.pprof, n counting settles from 1), so that
	// profile n covers the timed section that follows the n-th settle.
	dir, n := os.Getenv(profileEnv), 0
	var prof *os.File
	stopProfile := func() {
		if prof != nil {
			pprof.StopCPUProfile()
			_ = prof.Close()
			prof = nil
		}
	}
	defer stopProfile()
	for s := range sigs {
		stopProfile()
		switch s {
		case syscall.SIGUSR1:
			debug.FreeOSMemory()
		case syscall.SIGUSR2:
			runtime.GC()
			runtime.GC()
		default:
			return nil
		}
		if dir != "" {
			n++
			f, err := os.Create(filepath.Join(dir, fmt.Sprintf("registry-%d.pprof", n)))
			if err != nil {
				return err
			}
			if err := pprof.StartCPUProfile(f); err != nil {
				_ = f.Close()
				return err
			}
			prof = f
		}
		fmt.Println("settled")
	}
	return nil
}
