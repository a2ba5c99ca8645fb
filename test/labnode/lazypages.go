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
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	metadata "github.com/checkpoint-restore/checkpointctl/lib"
	"github.com/checkpoint-restore/go-criu/v7/stats"
	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"

	"github.com/livemigrate/livemigrate/agent/archive/layout"
	"github.com/livemigrate/livemigrate/agent/freezer"
)

// Post-copy (CRIU lazy pages) on the runc runtime.
//
// Lazy mode reaches the node as a CRIU configuration file per container
// (CRIUConfigPath), in CRIU's own syntax: "lazy-pages", "address <host>",
// "port <port>", and for a page server with mutual TLS "tls",
// "tls-cacert <file>", "tls-cert <file>", "tls-key <file>". The kubelet
// checkpoint request and the pod are unchanged.
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
//
// Every runc container names its file in its org.criu.config annotation,
// so CRIU itself reads it on the source (the TLS options have no runc
// flag); the runtime reads it too, for what it must do around CRIU.

// LazyPages is where a lazy checkpoint's page server listens: on the
// source, what the dump binds; on the target, what the lazy-pages daemon
// connects to.
type LazyPages struct {
	Address string
	Port    int
	// TLS, when set, authenticates and encrypts the page server's link
	// with mutual TLS: both ends present a certificate of CACert, whose
	// names include Address (CRIU checks the peer's certificate against
	// the page server's address on both ends).
	TLS *PageServerTLS
}

// PageServerTLS are the PEM files of one end of a page server's link.
type PageServerTLS struct {
	CACert, Cert, Key string
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
	if t := lp.TLS; t != nil {
		if t.CACert == "" || t.Cert == "" || t.Key == "" {
			return errors.New("a page server with TLS needs the CA, the certificate and the key")
		}
		content += fmt.Sprintf("tls\ntls-cacert %s\ntls-cert %s\ntls-key %s\n", t.CACert, t.Cert, t.Key)
	}
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
	var lazy, useTLS bool
	lp := &LazyPages{}
	t := &PageServerTLS{}
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
		case "tls":
			useTLS = true
		case "tls-cacert":
			t.CACert = val
		case "tls-cert":
			t.Cert = val
		case "tls-key":
			t.Key = val
		case "action-script":
			// The runtime's own post-dump script (ensureActionScript):
			// CRIU runs it, nothing here to do.
		default:
			return nil, fmt.Errorf("%s: option %q is not supported by this runtime (lazy-pages, address, port, tls, tls-cacert, tls-cert, tls-key, action-script)", path, key)
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
	if useTLS {
		if t.CACert == "" || t.Cert == "" || t.Key == "" {
			return nil, fmt.Errorf("%s: tls needs tls-cacert, tls-cert and tls-key", path)
		}
		lp.TLS = t
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
	// cgroup is the restored container's cgroup (below the freezer mount),
	// work the restore's work directory.
	cgroup, work string
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
	pp, _ := r.find(namespace, pod)
	if pp == nil {
		return nil, false
	}
	return r.lazy.get(r.lazy.dumps, containerID(pp.pod.UID, container))
}

// LazyRestore returns the lazy-pages daemon of a restored pod's container
// on this node.
func (r *Runtime) LazyRestore(namespace, pod, container string) (*LazyTransfer, bool) {
	pp, _ := r.find(namespace, pod)
	if pp == nil {
		return nil, false
	}
	return r.lazy.get(r.lazy.restores, containerID(pp.pod.UID, container))
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
		"untilServing", serving, "podFrozen", podFrozen, "pageServer", net.JoinHostPort(lp.Address, strconv.Itoa(lp.Port)), "tls", lp.TLS != nil)
	return final, nil
}

// startLazyPagesDaemon starts, for the restore of a container from images
// (in work/images), a lazy-pages daemon pointed at the source's page server
// lp, with its own copy of the images (the restore's are removed once it
// ran) and its socket in work, where runc restore's CRIU looks for it.
// It returns once the daemon listens. When the daemon fails, the restored
// memory has holes that nothing will fill: failed is called and the
// container, if it runs, is killed.
func (r *Runtime) startLazyPagesDaemon(ctx context.Context, id, cgroup, cdir, images string, lp *LazyPages, failed func()) error {
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
	args := []string{"lazy-pages", "--page-server", "--address", lp.Address, "--port", strconv.Itoa(lp.Port),
		"--images-dir", own, "--work-dir", filepath.Dir(images), "--log-file", logFile, "-v4", "--status-fd", "3"}
	if t := lp.TLS; t != nil {
		args = append(args, "--tls", "--tls-cacert", t.CACert, "--tls-cert", t.Cert, "--tls-key", t.Key)
	}
	cmd := exec.Command(r.cfg.CRIU, args...)
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
	t := &LazyTransfer{Done: done, Log: logFile, kill: func() { _ = cmd.Process.Kill() }, cgroup: cgroup, work: filepath.Dir(images)}
	r.lazy.put(&r.lazy.restores, id, t)
	go func() {
		err := cmd.Wait()
		if err != nil {
			err = fmt.Errorf("lazy-pages daemon: %w: %s %s", err, strings.TrimSpace(out.String()), readTail(logFile, 1024))
		}
		t.Err = err
		if err != nil {
			failed()
			if kerr := r.runcRun(context.Background(), "kill", id, "KILL"); kerr == nil {
				r.log.Info("Killed a container whose lazy pages cannot arrive", "id", id)
			}
		}
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

// stopLazyRestore ends the lazy-pages daemon of a restore that failed, and
// removes what a runc restore stopped halfway leaves: tasks CRIU had
// created in the container's cgroup, the root file system it mounted, and
// the container's state.
func (r *Runtime) stopLazyRestore(id string) {
	t, ok := r.lazy.get(r.lazy.restores, id)
	if !ok {
		return
	}
	t.kill()
	b, _ := os.ReadFile(filepath.Join(r.cfg.FreezerMount, t.cgroup, "cgroup.procs"))
	for _, f := range strings.Fields(string(b)) {
		if pid, err := strconv.Atoi(f); err == nil {
			_ = unix.Kill(pid, unix.SIGKILL)
		}
	}
	state := filepath.Join(r.runcRoot(), id)
	// A CRIU stopped halfway leaves the cgroup hierarchies it mounted in
	// its work directory (.criu.cgyard.*): they go before anything removes
	// that directory, which would otherwise walk into every cgroup of the
	// host.
	for _, m := range mountsUnder(t.work, state) {
		if err := unix.Unmount(m, unix.MNT_DETACH); err != nil {
			r.log.Error(err, "Cannot unmount what a restore stopped halfway left", "id", id, "mount", m)
		}
	}
	_ = r.runcRun(context.Background(), "delete", "--force", id)
	_ = os.RemoveAll(state)
}

// lazyRestoreArgs are the runc restore flags of a container restored from
// images: none without a lazy-pages configuration; else --lazy-pages, once
// the lazy-pages daemon it needs runs. The context it returns is ctx, ended
// as well when the daemon fails: a restore waiting for pages that will
// never come is stopped.
func (r *Runtime) lazyRestoreArgs(ctx context.Context, pp *podProc, container, id, cdir, images string) ([]string, context.Context, error) {
	lp, err := readLazyPagesConfig(r.CRIUConfigPath(pp.pod.Namespace, pp.pod.Name, container))
	if err != nil || lp == nil {
		return nil, ctx, err
	}
	restoreCtx, cancel := context.WithCancel(ctx)
	if err := r.startLazyPagesDaemon(ctx, id, containerCgroup(pp.cgroup, id), cdir, images, lp, cancel); err != nil {
		cancel()
		return nil, ctx, err
	}
	return []string{"--lazy-pages"}, restoreCtx, nil
}

// killGroupOnCancel makes cmd a process group leader and its cancellation
// kill the whole group: runc and the CRIU it runs.
func killGroupOnCancel(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
}

// mountsUnder returns the mount points below (or at) any of dirs, deepest
// first, from /proc/self/mountinfo.
func mountsUnder(dirs ...string) []string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		// Mount points escape spaces and such as octal (\040).
		mp := unescapeMountPoint(f[4])
		for _, d := range dirs {
			if mp == d || strings.HasPrefix(mp, d+"/") {
				out = append(out, mp)
				break
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out
}

func unescapeMountPoint(s string) string {
	if !strings.Contains(s, "\\") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
