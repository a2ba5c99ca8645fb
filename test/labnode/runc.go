package labnode

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	metadata "github.com/checkpoint-restore/checkpointctl/lib"
	"github.com/checkpoint-restore/go-criu/v7/stats"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	spec "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"

	"github.com/livemigrate/livemigrate/agent/archive"
	"github.com/livemigrate/livemigrate/agent/archive/layout"
	"github.com/livemigrate/livemigrate/agent/checkpointimage"
	"github.com/livemigrate/livemigrate/agent/freezer"
	"github.com/livemigrate/livemigrate/test/labapp/labstate"
)

// Container runtimes of a node.
const (
	// ContainerRuntimeProcess runs the lab app as a plain process in the
	// pod's cgroup and copies its memory into the archive itself: the
	// stand-in for machines where CRIU does not work (criu check fails).
	ContainerRuntimeProcess = "process"
	// ContainerRuntimeRunc runs every container with runc and checkpoints
	// and restores it with CRIU (runc checkpoint / runc restore), as CRI-O
	// does.
	ContainerRuntimeRunc = "runc"
)

// appStateDir is where the lab app publishes its layout inside its
// container: in the container's root file system, so a checkpoint carries
// it in rootfs-diff.tar.
const appStateDir = "/run/labapp"

// containerMounts are the mounts CRI-O leaves out of rootfs-diff.tar and
// bind.mounts (CRI-O's internal/lib/checkpoint.go).
var containerMounts = map[string]bool{
	"/dev": true, "/dev/shm": true, "/proc": true, "/run": true,
	"/run/.containerenv": true, "/run/secrets": true, "/sys": true,
}

// runcState is what the runc backend of a runtime keeps.
type runcState struct {
	// layer is the lab app image's layer (tar) on disk, unpacked into
	// every container's root file system.
	layer string
	// imageRef is the image's digest (the CRI's image reference).
	imageRef string
	// base lists the image's files (path → header) for rootfs-diff.tar.
	base map[string]*tar.Header
	// template is runc's default spec (runc spec).
	template spec.Spec
	// version is runc's version line, criuVersion criu's.
	version, criuVersion string
}

// initRunc prepares the runc backend: the lab app image, runc's default
// spec, the versions; and removes the containers a previous run of this
// node left behind (the node's containers end with its runtime, as the
// stand-in's processes do).
func (r *Runtime) initRunc() error {
	if r.cfg.Runc == "" {
		r.cfg.Runc = "runc"
	}
	if r.cfg.CRIU == "" {
		return errors.New("the runc runtime needs the criu binary (--criu)")
	}
	st := &runcState{}
	out, err := exec.Command(r.cfg.Runc, "--version").Output()
	if err != nil {
		return fmt.Errorf("runc --version: %w", err)
	}
	st.version = strings.TrimPrefix(strings.SplitN(string(out), "\n", 2)[0], "runc version ")
	if st.criuVersion, err = ReadCRIUVersion(r.cfg.CRIU); err != nil {
		return err
	}
	img, err := LabAppImage(r.cfg.LabApp)
	if err != nil {
		return fmt.Errorf("lab app image: %w", err)
	}
	d, err := img.Digest()
	if err != nil {
		return err
	}
	st.imageRef = d.String()
	dir := filepath.Join(r.cfg.Root, "images")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	st.layer = filepath.Join(dir, d.Hex+".tar")
	rc := mutate.Extract(img)
	f, err := os.Create(st.layer)
	if err != nil {
		rc.Close()
		return err
	}
	st.base = map[string]*tar.Header{}
	tr := tar.NewReader(io.TeeReader(rc, f))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			rc.Close()
			f.Close()
			return err
		}
		st.base["/"+strings.TrimSuffix(path.Clean(h.Name), "/")] = h
	}
	_, _ = io.Copy(f, rc)
	rc.Close()
	if err := f.Close(); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "labnode-spec-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if out, err := exec.Command(r.cfg.Runc, "spec", "--bundle", tmp).CombinedOutput(); err != nil {
		return fmt.Errorf("runc spec: %w: %s", err, out)
	}
	b, err := os.ReadFile(filepath.Join(tmp, "config.json"))
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, &st.template); err != nil {
		return fmt.Errorf("runc spec: %w", err)
	}
	if err := r.writeCRIUConfig(); err != nil {
		return err
	}
	r.runc = st
	r.removeLeftoverContainers()
	return nil
}

// freezePodEnv names, in CRIU's environment, the pod cgroup (its freezer
// directory) that the post-dump action script freezes.
const freezePodEnv = "LABNODE_FREEZE_POD_AFTER_DUMP"

// postDumpScript is CRIU's action script for every container (CRIU runs it
// with CRTOOLS_SCRIPT_ACTION set; runc's RPC notifications come first).
// After a dump it freezes the pod cgroup named by freezePodEnv, if any, and
// waits until the kernel reports it FROZEN. CRIU runs post-dump while it
// still holds the tasks under ptrace, before it freezes the container's
// cgroup again (without waiting for FROZEN) and lets them go: so a pod the
// agent holds frozen is frozen again before any task is released, and a
// frozen v1 cgroup counts its traced tasks as frozen. A failure fails the
// dump (CRIU then lets the tasks go as they were; the runtime freezes the
// pod again after runc returns either way).
const postDumpScript = `#!/bin/sh
[ "$CRTOOLS_SCRIPT_ACTION" = post-dump ] || exit 0
[ -n "$` + freezePodEnv + `" ] || exit 0
f="$` + freezePodEnv + `/freezer.state"
i=0
while :; do
	echo FROZEN >"$f" || exit 1
	read -r st <"$f" || exit 1
	[ "$st" = FROZEN ] && exit 0
	i=$((i + 1))
	if [ "$i" -ge 2000 ]; then
		echo "post-dump: $f stays $st" >&2
		exit 1
	fi
	sleep 0.001
done
`

// postDumpScriptPath is where the runtime writes postDumpScript.
func (r *Runtime) postDumpScriptPath() string {
	return filepath.Join(r.cfg.Root, "criu", "post-dump.sh")
}

// writeCRIUConfig writes the action script that every container's CRIU
// configuration file (CRIUConfigPath, named by its org.criu.config
// annotation) names: see ensureActionScript.
func (r *Runtime) writeCRIUConfig() error {
	script := r.postDumpScriptPath()
	if err := os.MkdirAll(filepath.Dir(script), 0o700); err != nil {
		return err
	}
	return os.WriteFile(script, []byte(postDumpScript), 0o700)
}

// ensureActionScript adds "action-script <postDumpScript>" to a
// container's CRIU configuration file (creating the file when absent)
// unless it names it already: runc hands CRIU that one file, which may
// also hold the container's lazy-pages settings.
func (r *Runtime) ensureActionScript(path string) error {
	line := "action-script " + r.postDumpScriptPath()
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.TrimSpace(l) == line {
			return nil
		}
	}
	if len(b) > 0 && !bytes.HasSuffix(b, []byte("\n")) {
		b = append(b, '\n')
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return os.WriteFile(path, append(b, line+"\n"...), 0o600)
}

// ReadCRIUVersion runs criu --version and returns the version ("4.2.1").
func ReadCRIUVersion(criu string) (string, error) {
	out, err := exec.Command(criu, "--version").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%s --version: %w: %s", criu, err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "Version:"); ok {
			return strings.TrimSpace(v), nil
		}
	}
	return "", fmt.Errorf("%s --version: no version in %q", criu, out)
}

func (r *Runtime) runcRoot() string { return filepath.Join(r.cfg.Root, "runc") }

// runcCmd is a runc command on this node's state directory, with criu from
// the configuration. CRIU inherits the runtime's environment.
func (r *Runtime) runcCmd(ctx context.Context, args ...string) *exec.Cmd {
	all := append([]string{"--root", r.runcRoot(), "--criu", r.cfg.CRIU}, args...)
	return exec.CommandContext(ctx, r.cfg.Runc, all...)
}

func (r *Runtime) runcRun(ctx context.Context, args ...string) error {
	out, err := r.runcCmd(ctx, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("runc %s: %w: %s", args[0], err, strings.TrimSpace(string(out)))
	}
	return nil
}

func (r *Runtime) removeLeftoverContainers() {
	out, err := r.runcCmd(context.Background(), "list", "-q").Output()
	if err != nil {
		return
	}
	for _, id := range strings.Fields(string(out)) {
		_ = r.runcRun(context.Background(), "delete", "--force", id)
		r.log.Info("Removed a container left behind", "id", id)
	}
}

// containerID is the runc container ID of a pod's container.
func containerID(uid types.UID, name string) string {
	return fmt.Sprintf("%s-%s", uid, name)
}

// containerCgroup is a container's cgroup below its pod's, as CRI-O names it
// with the cgroupfs driver.
func containerCgroup(podCgroup, id string) string {
	return path.Join(podCgroup, "crio-"+id)
}

// startRuncContainer runs a container with runc: from the lab app image, or
// restored by CRIU from a checkpoint image as CRI-O restores one (the base
// image's root file system, rootfs-diff.tar on top, the images under
// checkpoint/, the bind mounts pointed at this pod's volumes).
func (r *Runtime) startRuncContainer(ctx context.Context, pp *podProc, c corev1.Container) (_ *containerProc, retErr error) {
	cdir := filepath.Join(r.podDir(pp.pod.UID), c.Name)
	bundle := filepath.Join(cdir, "bundle")
	rootfs := filepath.Join(bundle, "rootfs")
	id := containerID(pp.pod.UID, c.Name)
	// A failed attempt may have left a container and a bundle behind.
	_ = r.runcRun(ctx, "delete", "--force", id)
	if err := os.RemoveAll(bundle); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(rootfs, 0o755); err != nil {
		return nil, err
	}
	paths, err := r.hostPaths(ctx, pp.pod, c)
	if err != nil {
		return nil, err
	}
	for _, hp := range paths {
		if err := os.MkdirAll(hp, 0o755); err != nil {
			return nil, err
		}
	}
	args := append([]string(nil), c.Args...)
	if len(args) == 0 || args[0] != "run" {
		args = append([]string{"run"}, args...)
	}
	args = append(args, "--state-dir="+appStateDir)
	cp := &containerProc{name: c.Name, image: c.Image, stateDir: filepath.Join(cdir, "state"), done: make(chan struct{}), id: id, bundle: bundle, paths: paths}
	for _, a := range mapArgs(args, paths) {
		if v, ok := strings.CutPrefix(a, "--log="); ok {
			cp.logPath = v
		}
	}
	cp.args = args
	if err := r.unpackImage(rootfs); err != nil {
		return nil, fmt.Errorf("unpack image: %w", err)
	}
	var images string
	if c.Image != r.cfg.LabAppImage {
		images = filepath.Join(cdir, "restore", metadata.CheckpointDirectory)
		// The images and the pulled archive hold the process's memory:
		// they go once CRIU has restored it, or failed to.
		defer func() {
			_ = os.RemoveAll(filepath.Join(cdir, "restore"))
			_ = os.Remove(filepath.Join(cdir, "checkpoint.tar"))
		}()
		if err := r.pullForRestore(ctx, c.Image, cdir, c.Name, rootfs, images); err != nil {
			return nil, err
		}
	}
	sp := r.containerSpec(pp, c, args, paths, id)
	b, err := json.MarshalIndent(sp, "", "\t")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), b, 0o600); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cp.stateDir, 0o700); err != nil {
		return nil, err
	}
	_ = os.Remove(filepath.Join(cp.stateDir, labstate.LayoutFile))
	out, err := os.OpenFile(filepath.Join(cdir, "output.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	// The container's stdout and stderr are a pipe, as conmon gives them:
	// CRIU cannot dump a host file as stdio, and restores a pipe onto the
	// restoring runc's.
	pr, pw, err := os.Pipe()
	if err != nil {
		out.Close()
		return nil, err
	}
	go func() {
		_, _ = io.Copy(out, pr)
		pr.Close()
		out.Close()
	}()
	if images != "" {
		// Say where the restore starts from, as a restored lab app's first
		// line would: the counter in the dumped memory's header page.
		fmt.Fprintln(out, r.restoreLine(rootfs, images))
	}
	pidFile := filepath.Join(cdir, "pid")
	_ = os.Remove(pidFile)
	var cmd *exec.Cmd
	launched := time.Now()
	if images == "" {
		cmd = r.runcCmd(ctx, "run", "--detach", "--bundle", bundle, "--pid-file", pidFile, id)
	} else {
		restore := []string{"restore", "--detach", "--bundle", bundle, "--image-path", images, "--work-path", filepath.Dir(images), "--pid-file", pidFile}
		lazy, restoreCtx, err := r.lazyRestoreArgs(ctx, pp, c.Name, id, cdir, images)
		if err != nil {
			pw.Close()
			return nil, err
		}
		defer func() {
			if retErr != nil {
				r.stopLazyRestore(id)
			}
		}()
		cmd = r.runcCmd(restoreCtx, append(append(restore, lazy...), id)...)
		if lazy != nil {
			killGroupOnCancel(cmd)
		}
	}
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		pw.Close()
		return nil, err
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = devnull, pw, pw
	err = cmd.Run()
	devnull.Close()
	pw.Close()
	if err != nil {
		time.Sleep(50 * time.Millisecond)
		msg := readTail(filepath.Join(cdir, "output.log"), 1024)
		if images != "" {
			msg += " " + readTail(filepath.Join(filepath.Dir(images), "restore.log"), 1024)
		}
		_ = r.runcRun(context.Background(), "delete", "--force", id)
		return nil, fmt.Errorf("runc %s: %w: %s", cmd.Args[5], err, msg)
	}
	defer func() {
		if retErr != nil {
			_ = r.runcRun(context.Background(), "delete", "--force", id)
		}
	}()
	pb, err := os.ReadFile(pidFile)
	if err != nil {
		return nil, err
	}
	if cp.pid, err = strconv.Atoi(strings.TrimSpace(string(pb))); err != nil {
		return nil, fmt.Errorf("pid file: %w", err)
	}
	if cp.pidfd, err = unix.PidfdOpen(cp.pid, 0); err != nil {
		return nil, fmt.Errorf("pidfd of %d: %w", cp.pid, err)
	}
	go func() {
		fds := []unix.PollFd{{Fd: int32(cp.pidfd), Events: unix.POLLIN}}
		for {
			if _, err := unix.Poll(fds, -1); err != nil && errors.Is(err, unix.EINTR) {
				continue
			}
			break
		}
		_ = unix.Close(cp.pidfd)
		cp.err = fmt.Errorf("container %s exited", id)
		close(cp.done)
	}()
	// The lab app publishes its layout once it runs; a restored one has it
	// from rootfs-diff.tar.
	appLayout := filepath.Join(rootfs, appStateDir, labstate.LayoutFile)
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if _, err := os.Stat(appLayout); err == nil {
			break
		}
		select {
		case <-cp.done:
			return nil, fmt.Errorf("lab app exited: %s", readTail(filepath.Join(cdir, "output.log"), 512))
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return nil, errors.New("lab app did not publish its layout")
		}
	}
	if err := r.publishHostLayout(cp, appLayout); err != nil {
		return nil, err
	}
	kv := []any{"pod", klog.KObj(pp.pod), "container", c.Name, "id", id, "pid", cp.pid, "restored", images != "", "duration", time.Since(launched)}
	if images != "" {
		kv = append(kv, restoreStats(filepath.Dir(images))...)
	}
	r.log.Info("Container started", kv...)
	return cp, nil
}

// publishHostLayout writes the lab app's layout as the host sees it into the
// container's state directory: the host PID, the log's host path.
func (r *Runtime) publishHostLayout(cp *containerProc, appLayout string) error {
	b, err := os.ReadFile(appLayout)
	if err != nil {
		return err
	}
	var l labstate.Layout
	if err := json.Unmarshal(b, &l); err != nil {
		return fmt.Errorf("lab app layout: %w", err)
	}
	l.PID = cp.pid
	l.Config.StateDir = cp.stateDir
	if l.Config.LogPath != "" {
		l.Config.LogPath = strings.TrimPrefix(mapArgs([]string{"--log=" + l.Config.LogPath}, cp.paths)[0], "--log=")
	}
	b, _ = json.Marshal(l)
	tmp := filepath.Join(cp.stateDir, labstate.LayoutFile+".tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(cp.stateDir, labstate.LayoutFile))
}

func readTail(p string, n int) string {
	b, _ := os.ReadFile(p)
	return strings.TrimSpace(tail(string(b), n))
}

// unpackImage unpacks the lab app image into a container's root file system.
func (r *Runtime) unpackImage(rootfs string) error {
	f, err := os.Open(r.runc.layer)
	if err != nil {
		return err
	}
	defer f.Close()
	return extractTar(f, rootfs)
}

// containerSpec is the OCI runtime spec of a container: runc's defaults,
// the pod's volumes bind-mounted, its own PID, mount, network, IPC and UTS
// namespaces, a cgroup below the pod's, and the annotations CRI-O sets.
func (r *Runtime) containerSpec(pp *podProc, c corev1.Container, args []string, paths map[string]string, id string) *spec.Spec {
	var sp spec.Spec
	b, _ := json.Marshal(r.runc.template)
	_ = json.Unmarshal(b, &sp)
	sp.Process.Terminal = false
	sp.Process.Args = append([]string{labAppEntrypoint}, args...)
	sp.Process.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin"}
	sp.Process.Cwd = "/"
	sp.Root = &spec.Root{Path: "rootfs"}
	sp.Hostname = pp.pod.Name
	dsts := make([]string, 0, len(paths))
	for d := range paths {
		dsts = append(dsts, d)
	}
	sort.Strings(dsts)
	for _, d := range dsts {
		sp.Mounts = append(sp.Mounts, spec.Mount{Destination: d, Type: "bind", Source: paths[d], Options: []string{"rbind", "rw"}})
	}
	sp.Linux.CgroupsPath = "/" + containerCgroup(pp.cgroup, id)
	cm, _ := json.Marshal(map[string]any{"name": c.Name, "attempt": 0})
	sp.Annotations = map[string]string{
		"io.container.manager":                 "cri-o",
		"io.kubernetes.cri-o.ContainerID":      id,
		"io.kubernetes.cri-o.ContainerType":    "container",
		"io.kubernetes.cri-o.Metadata":         string(cm),
		"io.kubernetes.cri-o.ImageName":        c.Image,
		"io.kubernetes.cri-o.ImageRef":         r.runc.imageRef,
		"io.kubernetes.cri-o.Name":             fmt.Sprintf("k8s_%s_%s_%s_%s_0", c.Name, pp.pod.Name, pp.pod.Namespace, pp.pod.UID),
		"io.kubernetes.container.name":         c.Name,
		"io.kubernetes.pod.name":               pp.pod.Name,
		"io.kubernetes.pod.namespace":          pp.pod.Namespace,
		"io.kubernetes.pod.uid":                string(pp.pod.UID),
		"io.kubernetes.cri-o.SandboxName":      fmt.Sprintf("k8s_%s_%s_%s_0", pp.pod.Name, pp.pod.Namespace, pp.pod.UID),
		"io.kubernetes.container.restartCount": "0",
		// runc hands this file to CRIU, whose options override runc's
		// (lazypages.go); CRIU ignores a file that does not exist.
		"org.criu.config": r.CRIUConfigPath(pp.pod.Namespace, pp.pod.Name, c.Name),
	}
	return &sp
}

// checkpointRunc checkpoints a container as CRI-O does (runc pause, runc
// checkpoint --leave-running, rootfs-diff.tar and the dump files, runc
// resume) and writes CRI-O's archive.
//
// CRI-O pauses the container's own cgroup and CRIU thaws it after seizing
// the tasks: a task frozen by its pod's cgroup (the agent's whole-pod
// freeze) would never stop for CRIU (the dump fails after its freeze
// timeout). So while the pod is frozen the runtime hands the freeze over to
// the container's cgroup for the dump (the container's cgroup frozen first,
// then the pod's thawed; the pod's frozen again before the container's is
// resumed): no task runs in between. The pod's freeze is back before CRIU
// lets the tasks go: CRIU's post-dump action script (postDumpScript) freezes
// the pod while CRIU still holds them. That handover is the one thing a
// CRI-O node does not do.
func (r *Runtime) checkpointRunc(ctx context.Context, pp *podProc, cp *containerProc) (string, error) {
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
	defer os.RemoveAll(work)
	if err := r.runcRun(ctx, "pause", cp.id); err != nil {
		return "", fmt.Errorf("failed to pause container %q before checkpointing: %w", cp.id, err)
	}
	if podFrozen {
		if err := r.freezer.Thaw(ctx, pp.cgroup); err != nil {
			_ = r.runcRun(context.Background(), "resume", cp.id)
			return "", fmt.Errorf("hand the pod's freeze over to the container: %w", err)
		}
	}
	// handBack makes sure the pod is frozen again (CRIU's post-dump action
	// script froze it before CRIU let the tasks go, unless the dump failed
	// before that) and resumes the container.
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
	defer handBack()
	if err := r.ensureActionScript(r.CRIUConfigPath(pp.pod.Namespace, pp.pod.Name, cp.name)); err != nil {
		return "", fmt.Errorf("CRIU configuration: %w", err)
	}
	dumpStart := time.Now()
	cmd := r.runcCmd(ctx, "checkpoint", "--leave-running", "--image-path", filepath.Join(work, metadata.CheckpointDirectory), "--work-path", work, cp.id)
	if podFrozen {
		// CRIU's post-dump action script freezes the pod again before
		// CRIU lets the tasks go.
		cmd.Env = append(os.Environ(), freezePodEnv+"="+filepath.Join(r.cfg.FreezerMount, pp.cgroup))
	}
	out, err := cmd.CombinedOutput()
	handBack()
	if err != nil {
		return "", fmt.Errorf("runc checkpoint: %w: %s: %s", err, strings.TrimSpace(string(out)), readTail(filepath.Join(work, metadata.DumpLogFile), 1024))
	}
	dumpTime := time.Since(dumpStart)
	if dumpTime > slowDump {
		r.log.Info("Slow CRIU dump: its longest steps", "pod", klog.KObj(pp.pod), "container", cp.name, "dump", dumpTime, "steps", slowestSteps(filepath.Join(work, metadata.DumpLogFile), 4))
	}
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
	err = tarDir(f, work, []string{stats.StatsDump, metadata.DumpLogFile, metadata.CheckpointDirectory, metadata.ConfigDumpFile, metadata.SpecDumpFile, "bind.mounts", metadata.RootFsDiffTar})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", err
	}
	if err := os.Rename(tmp, final); err != nil {
		return "", err
	}
	r.log.Info("CRIU dump", append([]any{"pod", klog.KObj(pp.pod), "container", cp.name, "criuVersion", r.runc.criuVersion, "dump", dumpTime, "podFrozen", podFrozen}, dumpStats(work)...)...)
	return final, nil
}

// writeCheckpointFiles writes config.dump, spec.dump, bind.mounts and
// rootfs-diff.tar into the checkpoint's directory, as CRI-O's
// prepareCheckpointExport and exportCheckpoint do.
func (r *Runtime) writeCheckpointFiles(pp *podProc, cp *containerProc, dir string, now time.Time) error {
	cfg := metadata.ContainerConfig{
		ID: cp.id, Name: fmt.Sprintf("k8s_%s_%s_%s_%s_0", cp.name, pp.pod.Name, pp.pod.Namespace, pp.pod.UID),
		RootfsImage: cp.image, RootfsImageRef: r.runc.imageRef, RootfsImageName: r.cfg.LabAppImage,
		OCIRuntime: "runc", CreatedTime: pp.started, CheckpointedAt: now,
	}
	if cp.image != r.cfg.LabAppImage {
		// A restored container's base image stays the lab app's.
		cfg.Restored = true
	}
	if _, err := metadata.WriteJSONFile(cfg, dir, metadata.ConfigDumpFile); err != nil {
		return err
	}
	b, err := os.ReadFile(filepath.Join(cp.bundle, "config.json"))
	if err != nil {
		return err
	}
	var sp spec.Spec
	if err := json.Unmarshal(b, &sp); err != nil {
		return err
	}
	if _, err := metadata.WriteJSONFile(sp, dir, metadata.SpecDumpFile); err != nil {
		return err
	}
	type externalBindMount struct {
		Source      string `json:"source"`
		Destination string `json:"destination"`
		FileType    string `json:"file_type"`
		Permissions uint32 `json:"permissions"`
	}
	var binds []externalBindMount
	for _, m := range sp.Mounts {
		if containerMounts[m.Destination] || m.Type != "bind" {
			continue
		}
		fi, err := os.Stat(m.Source)
		if err != nil {
			return fmt.Errorf("unable to stat() %q: %w", m.Source, err)
		}
		ft := "file"
		if fi.IsDir() {
			ft = "directory"
		}
		binds = append(binds, externalBindMount{Source: m.Source, Destination: m.Destination, FileType: ft, Permissions: uint32(fi.Mode().Perm())})
	}
	if len(binds) > 0 {
		if _, err := metadata.WriteJSONFile(binds, dir, "bind.mounts"); err != nil {
			return err
		}
	}
	f, err := os.OpenFile(filepath.Join(dir, metadata.RootFsDiffTar), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	err = r.rootfsDiff(f, filepath.Join(cp.bundle, "rootfs"), sp.Mounts)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// rootfsDiff writes the container's changes to its image (new and changed
// files, directories and links) as a tar, leaving out mount points' contents
// as CRI-O does.
func (r *Runtime) rootfsDiff(w io.Writer, rootfs string, mounts []spec.Mount) error {
	// A mount point's contents are not the container's; CRI-O's mounts
	// themselves are left out even where they are no mounts here.
	skip := map[string]bool{}
	for _, m := range mounts {
		skip[path.Clean(m.Destination)] = true
	}
	tw := tar.NewWriter(w)
	err := filepath.WalkDir(rootfs, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(rootfs, p)
		if err != nil || rel == "." {
			return err
		}
		name := "/" + filepath.ToSlash(rel)
		if skip[name] {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if containerMounts[name] {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if h, ok := r.runc.base[name]; ok && h.Size == fi.Size() && h.ModTime.Equal(fi.ModTime()) && os.FileMode(h.Mode).Perm() == fi.Mode().Perm() {
			return nil
		}
		link := ""
		if fi.Mode()&os.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		} else if !fi.Mode().IsRegular() && !fi.IsDir() {
			return nil
		}
		if h, ok := r.runc.base[name]; ok && fi.IsDir() && h.Typeflag == tar.TypeDir {
			return nil
		}
		h, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return err
		}
		h.Name = strings.TrimPrefix(name, "/")
		if fi.IsDir() {
			h.Name += "/"
		}
		h.Uname, h.Gname = "", ""
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if fi.Mode().IsRegular() {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			_, err = io.Copy(tw, f)
			f.Close()
			return err
		}
		return nil
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

// tarDir writes the named files and directories of dir (those that exist)
// into an uncompressed tar, as CRI-O's archive.TarWithOptions does.
func tarDir(w io.Writer, dir string, include []string) error {
	tw := tar.NewWriter(w)
	buf := make([]byte, 1<<20)
	for _, inc := range include {
		top := filepath.Join(dir, inc)
		if _, err := os.Lstat(top); os.IsNotExist(err) {
			continue
		}
		err := filepath.WalkDir(top, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			fi, err := d.Info()
			if err != nil {
				return err
			}
			if !fi.Mode().IsRegular() && !fi.IsDir() {
				return nil
			}
			rel, _ := filepath.Rel(dir, p)
			h, err := tar.FileInfoHeader(fi, "")
			if err != nil {
				return err
			}
			h.Name = filepath.ToSlash(rel)
			if fi.IsDir() {
				h.Name += "/"
			}
			h.Uname, h.Gname = "", ""
			if err := tw.WriteHeader(h); err != nil {
				return err
			}
			if fi.Mode().IsRegular() {
				f, err := os.Open(p)
				if err != nil {
					return err
				}
				_, err = io.CopyBuffer(tw, f, buf)
				f.Close()
				return err
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return tw.Close()
}

// pullForRestore pulls a checkpoint image, checks it like any untrusted
// archive, unpacks its CRIU images into images and its rootfs-diff.tar over
// rootfs (already holding the base image).
func (r *Runtime) pullForRestore(ctx context.Context, ref, dir, container, rootfs, images string) error {
	tarPath := filepath.Join(dir, "checkpoint.tar")
	start := time.Now()
	f, err := os.OpenFile(tarPath, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	pulled, err := checkpointimage.Pull(ctx, ref, f, r.cfg.Registry)
	cerr := f.Close()
	if err != nil {
		return &pullError{err: fmt.Errorf("pulling checkpoint image %s: %w", ref, err)}
	}
	if cerr != nil {
		return cerr
	}
	if pulled.ContainerName != container {
		return fmt.Errorf("checkpoint image is of container %q, not %q", pulled.ContainerName, container)
	}
	pulledAt := time.Now()
	info, err := archive.Inspect(tarPath, archive.DefaultLimits)
	if err != nil {
		return err
	}
	if info.Image != r.cfg.LabAppImage {
		return fmt.Errorf("checkpoint of a container of image %q: this node only has %q", info.Image, r.cfg.LabAppImage)
	}
	if err := os.MkdirAll(images, 0o700); err != nil {
		return err
	}
	af, err := os.Open(tarPath)
	if err != nil {
		return err
	}
	defer af.Close()
	tr := tar.NewReader(af)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		name := path.Clean(h.Name)
		switch {
		case name == metadata.RootFsDiffTar && h.Typeflag == tar.TypeReg:
			if err := extractTar(tr, rootfs); err != nil {
				return fmt.Errorf("%s: %w", metadata.RootFsDiffTar, err)
			}
		case strings.HasPrefix(name, metadata.CheckpointDirectory+"/") && h.Typeflag == tar.TypeReg:
			// Archive.Inspect refused names that leave the archive.
			dst := filepath.Join(images, strings.TrimPrefix(name, metadata.CheckpointDirectory+"/"))
			if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
				return err
			}
			out, err := os.OpenFile(dst, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
			if err != nil {
				return err
			}
			_, err = io.Copy(out, tr)
			if cerr := out.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		}
	}
	_ = os.Remove(tarPath)
	r.log.Info("Checkpoint image pulled", "image", ref, "bytes", info.SizeBytes, "pull", pulledAt.Sub(start), "unpack", time.Since(pulledAt))
	return nil
}

// stopRuncContainer kills a container (thawing its cgroups so the kill
// takes effect) and deletes it.
func (r *Runtime) stopRuncContainer(pp *podProc, cp *containerProc) {
	_ = r.runcRun(context.Background(), "kill", cp.id, "KILL")
	if pp.cgroup != "" {
		_ = r.freezer.Thaw(context.Background(), pp.cgroup)
	}
	_ = r.runcRun(context.Background(), "resume", cp.id)
}

func (r *Runtime) deleteRuncContainer(cp *containerProc) {
	if err := r.runcRun(context.Background(), "delete", "--force", cp.id); err != nil {
		r.log.V(2).Info("Cannot delete container", "id", cp.id, "err", err)
	}
}

// removePodCgroups removes a pod's cgroup from every cgroup v1 hierarchy
// (runc created it in all of them).
func (r *Runtime) removePodCgroups(podCgroup string) {
	root := filepath.Dir(r.cfg.FreezerMount)
	hs, _ := os.ReadDir(root)
	for _, h := range hs {
		dir := filepath.Join(root, h.Name(), podCgroup)
		subs, _ := os.ReadDir(dir)
		for _, s := range subs {
			if s.IsDir() {
				_ = os.Remove(filepath.Join(dir, s.Name()))
			}
		}
		_ = os.Remove(dir)
	}
}

// restoreLine names the CRIU version and the counter the dumped lab app
// resumes at, read from the header page in CRIU's images at the address the
// app's layout (in rootfs-diff.tar) gives.
func (r *Runtime) restoreLine(rootfs, images string) string {
	line := "labnode: restoring with CRIU " + r.runc.criuVersion
	b, err := os.ReadFile(filepath.Join(rootfs, appStateDir, labstate.LayoutFile))
	if err != nil {
		return line
	}
	var l labstate.Layout
	if json.Unmarshal(b, &l) != nil {
		return line
	}
	header, err := CRIUMemoryIn(images, l.Address, labstate.PageSize)
	if err != nil {
		return line + ": " + err.Error()
	}
	c, p, err := labstate.HeaderCounters(header)
	if err != nil {
		return line + ": " + err.Error()
	}
	return fmt.Sprintf("%s from the checkpoint at counter %d (tick in flight: %d)", line, c, p)
}

// dumpStats are CRIU's own timings of a dump, from the stats-dump it wrote
// into the work directory (microseconds in the file): the time to freeze
// the tasks, how long they stayed frozen, and the memory's dump and write.
func dumpStats(work string) []any {
	d, err := os.Open(work)
	if err != nil {
		return nil
	}
	defer d.Close()
	st, err := stats.CriuGetDumpStats(d)
	if err != nil {
		return []any{"criuStats", err.Error()}
	}
	us := func(v uint32) time.Duration { return time.Duration(v) * time.Microsecond }
	return []any{"criuFreezing", us(st.GetFreezingTime()), "criuFrozen", us(st.GetFrozenTime()),
		"criuMemdump", us(st.GetMemdumpTime()), "criuMemwrite", us(st.GetMemwriteTime()),
		"criuPagesWritten", st.GetPagesWritten()}
}

// restoreStats are CRIU's own timings of a restore, from stats-restore in
// the work directory: forking the tasks and the whole restore.
func restoreStats(work string) []any {
	d, err := os.Open(work)
	if err != nil {
		return nil
	}
	defer d.Close()
	st, err := stats.CriuGetRestoreStats(d)
	if err != nil {
		return []any{"criuStats", err.Error()}
	}
	us := func(v uint32) time.Duration { return time.Duration(v) * time.Microsecond }
	return []any{"criuForking", us(st.GetForkingTime()), "criuRestore", us(st.GetRestoreTime()), "criuPagesRestored", st.GetPagesRestored()}
}

// slowDump is the dump time above which the runtime logs CRIU's slowest
// steps.
const slowDump = 2 * time.Second

// slowestSteps returns the n lines of a CRIU log ("(00.123456) message")
// that came the longest after the line before them, with that gap, in log
// order.
func slowestSteps(logFile string, n int) []string {
	b, err := os.ReadFile(logFile)
	if err != nil {
		return []string{err.Error()}
	}
	type step struct {
		i   int
		gap float64
		s   string
	}
	var steps []step
	prev := -1.0
	for i, line := range strings.Split(string(b), "\n") {
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), "(")
		if !ok {
			continue
		}
		ts, msg, ok := strings.Cut(rest, ")")
		if !ok {
			continue
		}
		t, err := strconv.ParseFloat(strings.TrimSpace(ts), 64)
		if err != nil {
			continue
		}
		if prev >= 0 {
			steps = append(steps, step{i: i, gap: t - prev, s: fmt.Sprintf("+%.3fs at %.3fs: %s", t-prev, t, strings.TrimSpace(msg))})
		}
		prev = t
	}
	sort.Slice(steps, func(a, b int) bool { return steps[a].gap > steps[b].gap })
	if len(steps) > n {
		steps = steps[:n]
	}
	sort.Slice(steps, func(a, b int) bool { return steps[a].i < steps[b].i })
	out := make([]string, len(steps))
	for i, st := range steps {
		out[i] = st.s
	}
	return out
}
