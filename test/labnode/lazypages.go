package labnode

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	metadata "github.com/checkpoint-restore/checkpointctl/lib"
	"github.com/checkpoint-restore/go-criu/v7/stats"
	"k8s.io/klog/v2"

	"github.com/livemigrate/livemigrate/agent/archive/layout"
	"github.com/livemigrate/livemigrate/agent/freezer"
)

// Post-copy (CRIU lazy pages) on the runc runtime.
//
// Lazy mode reaches the node as a CRIU configuration file per container
// (CRIUConfigPath), in CRIU's own syntax: "lazy-pages", "address <host>",
// "port <port>". The kubelet checkpoint request and the pod are unchanged.
// That is the one channel a Kubernetes node has today: runc hands CRIU the
// file named by the container's org.criu.config annotation (else
// /etc/criu/runc.conf), and CRIU lets it override every setting of the
// runtime's request. What no runtime does upstream, and this runtime does in
// CRI-O's place, is what follows from lazy mode:
//
//   - checkpoint: CRIU's dump only ends once the last page was served, so
//     the runtime answers the checkpoint request as soon as CRIU's page
//     server listens (runc --status-fd), with an archive of the images
//     written so far (everything but the pages); the dump goes on serving
//     pages, the source's tasks held by CRIU, until the target has them all
//     or the link breaks (LazyDump reports how it ended);
//   - restore: a lazy-pages daemon (criu lazy-pages --page-server) is
//     started on the checkpoint's images, pointed at the source's page
//     server (the address and port of the target container's
//     configuration file), and runc restore --lazy-pages restores through
//     it; the process runs at once and its pages follow (LazyRestore
//     reports when the daemon ended).

// LazyPages is where a lazy checkpoint's page server listens: on the
// source, what the dump binds; on the target, what the lazy-pages daemon
// connects to.
type LazyPages struct {
	Address string
	Port    int
}

// CRIUConfigPath is the CRIU configuration file of a pod's container on
// this node. Absent, a checkpoint or restore copies the whole memory.
func (r *Runtime) CRIUConfigPath(namespace, pod, container string) string {
	return filepath.Join(r.cfg.Root, "criu", namespace+"_"+pod+"_"+container+".conf")
}

// WriteLazyPagesConfig writes a CRIU configuration file that selects lazy
// pages with a page server at lp.
func WriteLazyPagesConfig(path string, lp LazyPages) error {
	if lp.Address == "" || lp.Port <= 0 || lp.Port > 65535 {
		return fmt.Errorf("lazy pages need a page server address and port, got %q and %d", lp.Address, lp.Port)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	content := fmt.Sprintf("lazy-pages\naddress %s\nport %d\n", lp.Address, lp.Port)
	return os.WriteFile(path, []byte(content), 0o600)
}

// readLazyPagesConfig reads a container's CRIU configuration file: nil
// when it is absent or does not select lazy pages. Options it does not
// know are an error: CRIU would apply them, this runtime would not.
func readLazyPagesConfig(path string) (*LazyPages, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var lazy bool
	lp := &LazyPages{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		key, val, _ := strings.Cut(line, " ")
		key, val = strings.TrimPrefix(key, "--"), strings.TrimSpace(val)
		switch key {
		case "lazy-pages":
			lazy = true
		case "address":
			lp.Address = val
		case "port":
			if lp.Port, err = strconv.Atoi(val); err != nil {
				return nil, fmt.Errorf("%s: port %q: %w", path, val, err)
			}
		default:
			return nil, fmt.Errorf("%s: option %q is not supported by this runtime (lazy-pages, address, port)", path, key)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if !lazy {
		return nil, nil
	}
	if lp.Address == "" || lp.Port <= 0 || lp.Port > 65535 {
		return nil, fmt.Errorf("%s: lazy-pages needs address and port (1-65535)", path)
	}
	return lp, nil
}

// lazyPipeMaxSize is the fs.pipe-max-size lazy pages need here. CRIU's
// page server moves pages through a pipe it grows with F_SETPIPE_SZ; past
// fs.pipe-max-size (1 MiB by default) that takes CAP_SYS_RESOURCE, which
// root lacks in these virtual machines (a real node's root has it). CRIU
// ignores the failed resize and its transfer breaks later ("page-pipe: tee:
// 65536: Operation not permitted", "Lazy pages transfer FAILED"), so the
// lab raises the limit instead.
const lazyPipeMaxSize = 16 << 20

// ensurePipeMaxSize raises fs.pipe-max-size to lazyPipeMaxSize.
func ensurePipeMaxSize() error {
	const p = "/proc/sys/fs/pipe-max-size"
	b, err := os.ReadFile(p)
	if err != nil {
		return err
	}
	if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && n >= lazyPipeMaxSize {
		return nil
	}
	if err := os.WriteFile(p, []byte(strconv.Itoa(lazyPipeMaxSize)), 0o644); err != nil {
		return fmt.Errorf("raising fs.pipe-max-size for CRIU's lazy pages: %w", err)
	}
	return nil
}

// LazyTransfer is how a lazy page transfer of one container ended.
type LazyTransfer struct {
	// Done is closed when it ended; Err is then nil on success.
	Done <-chan struct{}
	Err  error
	// Log is CRIU's log of it (the dump's or the daemon's).
	Log string

	kill func()
}

// lazyState is what the runtime tracks of its lazy transfers, by container
// ID.
type lazyState struct {
	mu       sync.Mutex
	dumps    map[string]*LazyTransfer
	restores map[string]*LazyTransfer
}

func (s *lazyState) put(m *map[string]*LazyTransfer, id string, t *LazyTransfer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if *m == nil {
		*m = map[string]*LazyTransfer{}
	}
	(*m)[id] = t
}

func (s *lazyState) get(m map[string]*LazyTransfer, id string) (*LazyTransfer, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := m[id]
	return t, ok
}

// LazyDump returns the lazy dump (page server) of a pod's container on
// this node, the latest one.
func (r *Runtime) LazyDump(namespace, pod, container string) (*LazyTransfer, bool) {
	pp := r.findPod(namespace, pod)
	if pp == nil {
		return nil, false
	}
	return r.lazy.get(r.lazy.dumps, containerID(pp.pod.UID, container))
}

// LazyRestore returns the lazy-pages daemon of a restored pod's container
// on this node.
func (r *Runtime) LazyRestore(namespace, pod, container string) (*LazyTransfer, bool) {
	pp := r.findPod(namespace, pod)
	if pp == nil {
		return nil, false
	}
	return r.lazy.get(r.lazy.restores, containerID(pp.pod.UID, container))
}

// findPod returns a running pod of this node by name.
func (r *Runtime) findPod(namespace, name string) *podProc {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, pp := range r.pods {
		if pp.pod.Namespace == namespace && pp.pod.Name == name {
			return pp
		}
	}
	return nil
}

// checkpointRuncLazy is checkpointRunc in lazy mode: the same pause and
// hand-over of the pod's freeze, runc checkpoint --lazy-pages with a page
// server at lp; it returns the archive once the page server listens. By
// then CRIU holds the tasks (seized, their pages captured), and the pod's
// freeze is given back at once, as after a whole dump: whatever becomes of
// the dump afterwards (the target has every page, or the link broke and
// CRIU gave up), the pod's freeze keeps the source stopped until the agent
// thaws or deletes it.
func (r *Runtime) checkpointRuncLazy(ctx context.Context, pp *podProc, cp *containerProc, lp *LazyPages) (_ string, retErr error) {
	if err := ensurePipeMaxSize(); err != nil {
		return "", err
	}
	podState, err := r.freezer.State(pp.cgroup)
	if err != nil {
		return "", err
	}
	podFrozen := podState == freezer.Frozen
	now := time.Now().UTC()
	work := filepath.Join(r.podDir(pp.pod.UID), cp.name, "checkpoint-"+strconv.FormatInt(now.UnixNano(), 10))
	if err := os.MkdirAll(work, 0o700); err != nil {
		return "", err
	}
	if err := r.runcRun(ctx, "pause", cp.id); err != nil {
		_ = os.RemoveAll(work)
		return "", fmt.Errorf("failed to pause container %q before checkpointing: %w", cp.id, err)
	}
	if podFrozen {
		if err := r.freezer.Thaw(ctx, pp.cgroup); err != nil {
			_ = r.runcRun(context.Background(), "resume", cp.id)
			_ = os.RemoveAll(work)
			return "", fmt.Errorf("hand the pod's freeze over to the container: %w", err)
		}
	}
	var handBackOnce sync.Once
	handBack := func() {
		handBackOnce.Do(func() {
			if podFrozen {
				if err := r.freezer.Freeze(context.Background(), pp.cgroup); err != nil {
					r.log.Error(err, "Cannot freeze the pod again after the dump", "pod", klog.KObj(pp.pod))
				}
			}
			if err := r.runcRun(context.Background(), "resume", cp.id); err != nil {
				r.log.Error(err, "Cannot unpause container", "id", cp.id)
			}
		})
	}
	statusR, statusW, err := os.Pipe()
	if err != nil {
		handBack()
		_ = os.RemoveAll(work)
		return "", err
	}
	defer statusR.Close()
	// The dump outlives the request: it serves the pages until the target
	// has them all.
	cmd := r.runcCmd(context.Background(), "checkpoint", "--leave-running", "--lazy-pages",
		"--page-server", net.JoinHostPort(lp.Address, strconv.Itoa(lp.Port)), "--status-fd", "3",
		"--image-path", filepath.Join(work, metadata.CheckpointDirectory), "--work-path", work, cp.id)
	cmd.ExtraFiles = []*os.File{statusW}
	out := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = out, out
	dumpStart := time.Now()
	if err := cmd.Start(); err != nil {
		statusW.Close()
		handBack()
		_ = os.RemoveAll(work)
		return "", fmt.Errorf("runc checkpoint: %w", err)
	}
	statusW.Close()
	logFile := filepath.Join(work, metadata.DumpLogFile)
	done := make(chan struct{})
	t := &LazyTransfer{Done: done, Log: logFile}
	r.lazy.put(&r.lazy.dumps, cp.id, t)
	go func() {
		err := cmd.Wait()
		handBack()
		if err == nil && !strings.Contains(readTail(logFile, 4096), "Lazy pages transfer finished successfully") {
			err = errors.New("CRIU did not report the lazy pages transfer finished")
		}
		if err != nil {
			err = fmt.Errorf("lazy dump: %w: %s %s", err, strings.TrimSpace(out.String()), readTail(logFile, 1024))
		}
		t.Err = err
		r.log.Info("Lazy pages transfer of the source ended", "pod", klog.KObj(pp.pod), "container", cp.name,
			"duration", time.Since(dumpStart), "err", err)
		close(done)
		// The work directory holds CRIU's log until the node goes.
	}()
	ready := make(chan error, 1)
	go func() {
		b := make([]byte, 1)
		_, err := statusR.Read(b)
		ready <- err
	}()
	select {
	case err := <-ready:
		if err != nil {
			<-done
			return "", fmt.Errorf("CRIU's lazy page server did not start: %w", t.Err)
		}
	case <-done:
		return "", fmt.Errorf("CRIU's lazy page server did not start: %w", t.Err)
	case <-ctx.Done():
		_ = cmd.Process.Kill()
		<-done
		return "", ctx.Err()
	}
	handBack()
	defer func() {
		if retErr != nil {
			// Nobody will fetch the pages: end the page server.
			_ = cmd.Process.Kill()
		}
	}()
	serving := time.Since(dumpStart)
	if err := r.writeCheckpointFiles(pp, cp, work, now); err != nil {
		return "", err
	}
	name := layout.ArchiveName(pp.pod.Name, pp.pod.Namespace, cp.name, now)
	final := filepath.Join(r.CheckpointDir(), name)
	tmp := final + ".partial"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp)
	err = tarDir(f, work, []string{metadata.DumpLogFile, metadata.CheckpointDirectory, metadata.ConfigDumpFile, metadata.SpecDumpFile, "bind.mounts", metadata.RootFsDiffTar})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", err
	}
	if err := os.Rename(tmp, final); err != nil {
		return "", err
	}
	r.log.Info("CRIU lazy dump serving pages", "pod", klog.KObj(pp.pod), "container", cp.name, "criuVersion", r.runc.criuVersion,
		"untilServing", serving, "podFrozen", podFrozen, "pageServer", net.JoinHostPort(lp.Address, strconv.Itoa(lp.Port)))
	return final, nil
}

// startLazyPagesDaemon starts, for the restore of a container from images
// (in work/images), a lazy-pages daemon pointed at the source's page server
// lp, with its own copy of the images (the restore's are removed once it
// ran) and its socket in work, where runc restore's CRIU looks for it.
// It returns once the daemon listens.
func (r *Runtime) startLazyPagesDaemon(ctx context.Context, id, cdir, images string, lp *LazyPages) error {
	if err := ensurePipeMaxSize(); err != nil {
		return err
	}
	own := filepath.Join(cdir, "lazy-images")
	_ = os.RemoveAll(own)
	if out, err := exec.CommandContext(ctx, "cp", "-a", images, own).CombinedOutput(); err != nil {
		return fmt.Errorf("copy the images for the lazy-pages daemon: %w: %s", err, out)
	}
	statusR, statusW, err := os.Pipe()
	if err != nil {
		return err
	}
	defer statusR.Close()
	logFile := filepath.Join(cdir, "lazy-pages.log")
	cmd := exec.Command(r.cfg.CRIU, "lazy-pages", "--page-server", "--address", lp.Address, "--port", strconv.Itoa(lp.Port),
		"--images-dir", own, "--work-dir", filepath.Dir(images), "--log-file", logFile, "-v4", "--status-fd", "3")
	cmd.ExtraFiles = []*os.File{statusW}
	out := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = out, out
	start := time.Now()
	if err := cmd.Start(); err != nil {
		statusW.Close()
		return fmt.Errorf("criu lazy-pages: %w", err)
	}
	statusW.Close()
	done := make(chan struct{})
	t := &LazyTransfer{Done: done, Log: logFile, kill: func() { _ = cmd.Process.Kill() }}
	r.lazy.put(&r.lazy.restores, id, t)
	go func() {
		err := cmd.Wait()
		if err != nil {
			err = fmt.Errorf("lazy-pages daemon: %w: %s %s", err, strings.TrimSpace(out.String()), readTail(logFile, 1024))
		}
		t.Err = err
		_ = os.RemoveAll(own)
		var pages []any
		if d, derr := os.Open(filepath.Dir(logFile)); derr == nil {
			if st, serr := stats.CriuGetRestoreStats(d); serr == nil {
				pages = []any{"criuPagesRestored", st.GetPagesRestored()}
			}
			d.Close()
		}
		r.log.Info("Lazy pages transfer of the target ended", append([]any{"id", id, "duration", time.Since(start), "err", err}, pages...)...)
		close(done)
	}()
	ready := make(chan error, 1)
	go func() {
		b := make([]byte, 1)
		_, err := statusR.Read(b)
		ready <- err
	}()
	select {
	case err := <-ready:
		if err == nil {
			return nil
		}
		<-done
	case <-done:
	case <-ctx.Done():
		_ = cmd.Process.Kill()
		<-done
		return ctx.Err()
	}
	return fmt.Errorf("the lazy-pages daemon did not start: %w", t.Err)
}

// stopLazyRestore ends the lazy-pages daemon of a restore that failed.
func (r *Runtime) stopLazyRestore(id string) {
	if t, ok := r.lazy.get(r.lazy.restores, id); ok && t.kill != nil {
		t.kill()
	}
}

// lazyRestoreArgs are the runc restore flags of a container restored from
// images: none without a lazy-pages configuration; else --lazy-pages, once
// the lazy-pages daemon it needs runs.
func (r *Runtime) lazyRestoreArgs(ctx context.Context, pp *podProc, container, id, cdir, images string) ([]string, error) {
	lp, err := readLazyPagesConfig(r.CRIUConfigPath(pp.pod.Namespace, pp.pod.Name, container))
	if err != nil || lp == nil {
		return nil, err
	}
	if err := r.startLazyPagesDaemon(ctx, id, cdir, images, lp); err != nil {
		return nil, err
	}
	return []string{"--lazy-pages"}, nil
}
