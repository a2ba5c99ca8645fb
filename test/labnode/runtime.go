package labnode

import (
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
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"github.com/livemigrate/livemigrate/agent/checkpointimage"
	"github.com/livemigrate/livemigrate/agent/freezer"
)

// DefaultLabAppImage is the image name that runs the lab app.
const DefaultLabAppImage = "livemigrate.io/labapp:latest"

// LabelRuntime on a pod (value RuntimeName) says that this runtime, not
// kwok, reports the pod's status: Running and Ready only once its lab app
// processes run, as a kubelet would. The lab's kwok stages leave such pods
// alone.
const LabelRuntime = "lab.livemigrate.io/runtime"

// Config of a node runtime.
type Config struct {
	// NodeName is the kwok node this runtime serves.
	NodeName string
	// Client talks to the member cluster (watch pods, TokenReview,
	// SubjectAccessReview).
	Client kubernetes.Interface
	// Root holds checkpoints/ (the kubelet's checkpoint directory) and pods/.
	Root string
	// FreezerMount is the cgroup v1 freezer mount (/sys/fs/cgroup/freezer).
	FreezerMount string
	// CgroupParent is where this node's kubepods lives below the mount (the
	// agent's --cgroup-parent), e.g. "livemigrate-lab/member1-node-0".
	CgroupParent string
	// LabApp is the labapp binary.
	LabApp string
	// LabAppImage is the image name that means "run the lab app".
	LabAppImage string
	// Listen is the kubelet API address (host:port); port 0 picks one.
	Listen string
	// DisableCheckpointAPI answers 404 like a kubelet whose
	// ContainerCheckpoint feature gate is off.
	DisableCheckpointAPI bool
	// SkipAuth skips TokenReview/SubjectAccessReview (unit tests only).
	SkipAuth bool
	// Registry options for pulling checkpoint images.
	Registry checkpointimage.PushOptions
	// ContainerRuntime is ContainerRuntimeRunc (containers under runc,
	// checkpointed and restored by CRIU) or ContainerRuntimeProcess (the
	// default: the memory stand-in, for machines where criu check fails).
	ContainerRuntime string
	// Runc is the runc binary ("runc" when empty), CRIU the criu binary
	// runc runs (ContainerRuntimeRunc only).
	Runc, CRIU string
}

// Runtime runs the lab app pods of one node.
type Runtime struct {
	cfg     Config
	freezer *freezer.Freezer
	log     klog.Logger

	// runc is the runc backend's state (ContainerRuntimeRunc only).
	runc *runcState
	// lazy tracks the lazy page transfers (post-copy) of runc containers.
	lazy lazyState

	mu   sync.Mutex
	pods map[types.UID]*podProc
	// failures are the pods whose start failed, backing off.
	failures map[types.UID]*startFailure
	// deleting are the pods whose deletion is being confirmed.
	deleting map[types.UID]bool

	// Addr is the kubelet API's address once Start returned.
	Addr string
	// CAFile verifies the kubelet API's certificate.
	CAFile string
}

type podProc struct {
	pod        *corev1.Pod
	cgroup     string // relative to the freezer mount
	containers map[string]*containerProc
	started    time.Time
}

type containerProc struct {
	name     string
	image    string
	stateDir string
	logPath  string
	args     []string
	cmd      *exec.Cmd
	done     chan struct{}
	err      error

	// A runc container: its ID, bundle, host PID (and pidfd), and its
	// volumes (mount path → host path).
	id     string
	bundle string
	pid    int
	pidfd  int
	paths  map[string]string
}

// New creates a runtime.
func New(cfg Config) (*Runtime, error) {
	if cfg.NodeName == "" || cfg.Root == "" || cfg.LabApp == "" {
		return nil, errors.New("node name, root and labapp binary are required")
	}
	if cfg.LabAppImage == "" {
		cfg.LabAppImage = DefaultLabAppImage
	}
	if cfg.FreezerMount == "" {
		cfg.FreezerMount = "/sys/fs/cgroup/freezer"
	}
	switch cfg.ContainerRuntime {
	case "":
		cfg.ContainerRuntime = ContainerRuntimeProcess
	case ContainerRuntimeProcess, ContainerRuntimeRunc:
	default:
		return nil, fmt.Errorf("container runtime %q: want %q or %q", cfg.ContainerRuntime, ContainerRuntimeRunc, ContainerRuntimeProcess)
	}
	for _, d := range []string{cfg.Root, filepath.Join(cfg.Root, "checkpoints"), filepath.Join(cfg.Root, "pods")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	r := &Runtime{
		cfg:      cfg,
		freezer:  &freezer.Freezer{Version: freezer.V1, Mount: cfg.FreezerMount, Parent: cfg.CgroupParent, Drivers: []freezer.Driver{freezer.DriverCgroupfs}},
		log:      klog.Background().WithValues("node", cfg.NodeName),
		pods:     map[types.UID]*podProc{},
		failures: map[types.UID]*startFailure{},
		deleting: map[types.UID]bool{},
	}
	if cfg.ContainerRuntime == ContainerRuntimeRunc {
		if err := r.initRunc(); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// CheckpointDir is the kubelet's checkpoint directory of this node.
func (r *Runtime) CheckpointDir() string { return filepath.Join(r.cfg.Root, "checkpoints") }

// Start serves the kubelet API and runs the node's pods until ctx ends; it
// returns once both are up.
func (r *Runtime) Start(ctx context.Context) error {
	r.log = klog.FromContext(ctx).WithValues("node", r.cfg.NodeName)
	if err := r.serveAPI(ctx); err != nil {
		return err
	}
	if r.cfg.Client == nil {
		return nil
	}
	if err := r.publishPort(ctx); err != nil {
		return err
	}
	f := informers.NewSharedInformerFactoryWithOptions(r.cfg.Client, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", r.cfg.NodeName).String()
	}))
	inf := f.Core().V1().Pods().Informer()
	_, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { r.onPod(ctx, o) },
		UpdateFunc: func(_, o any) { r.onPod(ctx, o) },
		DeleteFunc: func(o any) {
			if t, ok := o.(cache.DeletedFinalStateUnknown); ok {
				o = t.Obj
			}
			if p, ok := o.(*corev1.Pod); ok {
				r.StopPod(p.UID)
			}
		},
	})
	if err != nil {
		return err
	}
	f.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		return errors.New("pod informer did not sync")
	}
	go func() {
		<-ctx.Done()
		r.StopAll()
	}()
	return nil
}

// publishPort records the kubelet API's port in the Node's
// status.daemonEndpoints.kubeletEndpoint.Port, where agents look for it.
func (r *Runtime) publishPort(ctx context.Context) error {
	_, portS, err := net.SplitHostPort(r.Addr)
	if err != nil {
		return err
	}
	patch := fmt.Sprintf(`{"status":{"daemonEndpoints":{"kubeletEndpoint":{"Port":%s}}}}`, portS)
	if _, err := r.cfg.Client.CoreV1().Nodes().Patch(ctx, r.cfg.NodeName, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}, "status"); err != nil {
		return fmt.Errorf("publish kubelet port on node %s: %w", r.cfg.NodeName, err)
	}
	return nil
}

func (r *Runtime) onPod(ctx context.Context, o any) {
	p, ok := o.(*corev1.Pod)
	if !ok || p.Spec.NodeName != r.cfg.NodeName {
		return
	}
	if p.DeletionTimestamp != nil || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
		r.forget(p.UID)
		stopped := r.StopPod(p.UID)
		if p.DeletionTimestamp != nil && p.Labels[LabelRuntime] == RuntimeName {
			r.confirmDeletion(ctx, p, stopped)
		}
		return
	}
	if r.backingOff(p) {
		return
	}
	err := r.RunPod(ctx, p)
	var ce *containerError
	switch {
	case err == nil:
		r.forget(p.UID)
	case errors.As(err, &ce):
		r.failed(ctx, p, ce.name, err)
	default:
		r.log.Error(err, "Cannot run pod", "pod", klog.KObj(p))
	}
}

// containerError is a container of a pod that could not be started.
type containerError struct {
	name string
	err  error
}

func (e *containerError) Error() string { return fmt.Sprintf("container %s: %v", e.name, e.err) }
func (e *containerError) Unwrap() error { return e.err }

// ours tells whether every container of the pod is the lab app or a
// checkpoint image from the lab registry.
func (r *Runtime) ours(p *corev1.Pod) bool {
	if len(p.Spec.Containers) == 0 {
		return false
	}
	for _, c := range p.Spec.Containers {
		if c.Image != r.cfg.LabAppImage && !r.isCheckpointImage(c.Image) {
			return false
		}
	}
	return true
}

func (r *Runtime) isCheckpointImage(img string) bool {
	return strings.Contains(img, "@sha256:") || strings.HasPrefix(img, "127.0.0.1:") || strings.HasPrefix(img, "localhost:")
}

// RunPod starts the pod's containers, unless they run already.
func (r *Runtime) RunPod(ctx context.Context, p *corev1.Pod) error {
	if !r.ours(p) {
		return nil
	}
	r.mu.Lock()
	if _, ok := r.pods[p.UID]; ok {
		r.mu.Unlock()
		return nil
	}
	pp := &podProc{pod: p.DeepCopy(), containers: map[string]*containerProc{}, started: time.Now()}
	r.pods[p.UID] = pp
	r.mu.Unlock()
	start := time.Now()

	pp.cgroup = freezer.PodCgroupCandidates(r.cfg.CgroupParent, freezer.DriverCgroupfs, p.UID)[1]
	dir := filepath.Join(r.cfg.FreezerMount, pp.cgroup)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("pod cgroup: %w", err)
	}
	for _, c := range p.Spec.Containers {
		cp, err := r.startContainer(ctx, pp, c)
		if err != nil {
			// Stop what started; the next attempt comes after a back-off.
			r.StopPod(p.UID)
			return &containerError{name: c.Name, err: err}
		}
		r.mu.Lock()
		pp.containers[c.Name] = cp
		r.mu.Unlock()
	}
	r.log.Info("Pod started", "pod", klog.KObj(p), "cgroup", pp.cgroup, "duration", time.Since(start))
	if p.Labels[LabelRuntime] == RuntimeName {
		started := time.Now()
		if err := r.reportRunning(ctx, p); err != nil {
			return fmt.Errorf("reporting the pod running: %w", err)
		}
		r.log.Info("Pod reported running", "pod", klog.KObj(p), "report", time.Since(started), "sinceCreated", time.Since(p.CreationTimestamp.Time))
	}
	return nil
}

// reportRunning writes the status a kubelet writes once every container
// runs: phase Running, Ready, each container running and ready.
func (r *Runtime) reportRunning(ctx context.Context, p *corev1.Pod) error {
	if r.cfg.Client == nil {
		return nil
	}
	now := metav1.Now()
	cur, err := r.current(ctx, p)
	if err != nil {
		return err
	}
	st := &cur.Status
	st.Phase = corev1.PodRunning
	st.StartTime = &now
	st.HostIP, st.PodIP = "127.0.0.1", "127.0.0.1"
	st.HostIPs, st.PodIPs = []corev1.HostIP{{IP: "127.0.0.1"}}, []corev1.PodIP{{IP: "127.0.0.1"}}
	st.Conditions = nil
	for _, t := range []corev1.PodConditionType{corev1.PodScheduled, corev1.PodInitialized, corev1.ContainersReady, corev1.PodReady} {
		st.Conditions = append(st.Conditions, corev1.PodCondition{Type: t, Status: corev1.ConditionTrue, LastTransitionTime: now})
	}
	st.ContainerStatuses = nil
	for _, c := range p.Spec.Containers {
		st.ContainerStatuses = append(st.ContainerStatuses, corev1.ContainerStatus{
			Name: c.Name, Image: c.Image, ImageID: c.Image, Ready: true, Started: ptrTrue(),
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}},
		})
	}
	_, err = r.cfg.Client.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, cur, metav1.UpdateOptions{})
	return err
}

// current reads the pod from the API server, refusing one that replaced p
// under the same name.
func (r *Runtime) current(ctx context.Context, p *corev1.Pod) (*corev1.Pod, error) {
	cur, err := r.cfg.Client.CoreV1().Pods(p.Namespace).Get(ctx, p.Name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	if cur.UID != p.UID {
		return nil, fmt.Errorf("pod %s/%s was replaced", p.Namespace, p.Name)
	}
	return cur, nil
}

func ptrTrue() *bool { t := true; return &t }

func (r *Runtime) podDir(uid types.UID) string { return filepath.Join(r.cfg.Root, "pods", string(uid)) }

// hostPaths maps a container's mount paths to host paths: hostPath and
// emptyDir volumes, and claims bound to local or hostPath volumes.
func (r *Runtime) hostPaths(ctx context.Context, p *corev1.Pod, c corev1.Container) (map[string]string, error) {
	vols := map[string]string{}
	for _, v := range p.Spec.Volumes {
		switch {
		case v.HostPath != nil:
			vols[v.Name] = v.HostPath.Path
		case v.EmptyDir != nil:
			vols[v.Name] = filepath.Join(r.podDir(p.UID), "volumes", v.Name)
		case v.PersistentVolumeClaim != nil:
			path, err := r.claimPath(ctx, p.Namespace, v.PersistentVolumeClaim.ClaimName)
			if err != nil {
				return nil, fmt.Errorf("volume %s: %w", v.Name, err)
			}
			vols[v.Name] = path
		}
	}
	out := map[string]string{}
	for _, m := range c.VolumeMounts {
		if h, ok := vols[m.Name]; ok {
			out[m.MountPath] = filepath.Join(h, m.SubPath)
		}
	}
	return out, nil
}

// claimPath returns the directory of the local or hostPath volume a claim
// is bound to, as the kubelet mounts it.
func (r *Runtime) claimPath(ctx context.Context, namespace, claim string) (string, error) {
	if r.cfg.Client == nil {
		return "", errors.New("claims need a cluster client")
	}
	pvc, err := r.cfg.Client.CoreV1().PersistentVolumeClaims(namespace).Get(ctx, claim, metav1.GetOptions{})
	if err != nil {
		return "", err
	}
	if pvc.Spec.VolumeName == "" {
		return "", fmt.Errorf("claim %s/%s is not bound", namespace, claim)
	}
	pv, err := r.cfg.Client.CoreV1().PersistentVolumes().Get(ctx, pvc.Spec.VolumeName, metav1.GetOptions{})
	if err != nil {
		return "", err
	}
	switch {
	case pv.Spec.Local != nil:
		return pv.Spec.Local.Path, nil
	case pv.Spec.HostPath != nil:
		return pv.Spec.HostPath.Path, nil
	}
	return "", fmt.Errorf("volume %s of claim %s/%s is neither local nor hostPath", pv.Name, namespace, claim)
}

// mapArgs rewrites --flag=/mount/path arguments to host paths.
func mapArgs(args []string, paths map[string]string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = a
		flag, val, ok := strings.Cut(a, "=")
		if !ok {
			continue
		}
		for mp, hp := range paths {
			if val == mp || strings.HasPrefix(val, strings.TrimSuffix(mp, "/")+"/") {
				out[i] = flag + "=" + hp + strings.TrimPrefix(val, strings.TrimSuffix(mp, "/"))
				break
			}
		}
	}
	return out
}

func (r *Runtime) startContainer(ctx context.Context, pp *podProc, c corev1.Container) (_ *containerProc, retErr error) {
	if r.runc != nil {
		return r.startRuncContainer(ctx, pp, c)
	}
	cdir := filepath.Join(r.podDir(pp.pod.UID), c.Name)
	if err := os.MkdirAll(cdir, 0o700); err != nil {
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
	args := mapArgs(c.Args, paths)
	if len(args) == 0 || args[0] != "run" {
		args = append([]string{"run"}, args...)
	}
	cp := &containerProc{name: c.Name, image: c.Image, stateDir: filepath.Join(cdir, "state"), done: make(chan struct{})}
	args = append(args, "--state-dir="+cp.stateDir)
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "--log="); ok {
			cp.logPath = v
		}
	}
	if c.Image != r.cfg.LabAppImage {
		src, err := r.pullCheckpoint(ctx, c.Image, cdir, c.Name)
		// The lab app has loaded the dump once it published its layout: the
		// archive goes then, without holding up the pod's start (unlinking
		// 1 GiB of page cache takes a while); on failure it goes before a
		// retry can pull it again.
		defer func() {
			tarPath := filepath.Join(cdir, "checkpoint.tar")
			if retErr != nil {
				_ = os.Remove(tarPath)
				return
			}
			go func() { _ = os.Remove(tarPath) }()
		}()
		if err != nil {
			return nil, err
		}
		args = append(args, "--restore-from="+src.path, fmt.Sprintf("--restore-offset=%d", src.off), fmt.Sprintf("--restore-size=%d", src.size))
	}
	cp.args = args
	_ = os.Remove(filepath.Join(cp.stateDir, "layout.json"))
	out, err := os.OpenFile(filepath.Join(cdir, "output.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(r.cfg.LabApp, args...)
	launched := time.Now()
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		out.Close()
		return nil, err
	}
	cp.cmd = cmd
	// Join the pod cgroup; the lab app does nothing before it has loaded its
	// state and published its layout, which we wait for below.
	if err := os.WriteFile(filepath.Join(r.cfg.FreezerMount, pp.cgroup, "cgroup.procs"), []byte(strconv.Itoa(cmd.Process.Pid)), 0); err != nil {
		_ = cmd.Process.Kill()
		out.Close()
		return nil, fmt.Errorf("join pod cgroup: %w", err)
	}
	go func() {
		cp.err = cmd.Wait()
		out.Close()
		close(cp.done)
	}()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if _, err := os.Stat(filepath.Join(cp.stateDir, "layout.json")); err == nil {
			break
		}
		select {
		case <-cp.done:
			b, _ := os.ReadFile(filepath.Join(cdir, "output.log"))
			return nil, fmt.Errorf("lab app exited: %v: %s", cp.err, tail(string(b), 512))
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return nil, errors.New("lab app did not publish its layout")
		}
	}
	r.log.Info("Container started", "pod", klog.KObj(pp.pod), "container", c.Name, "load", time.Since(launched))
	return cp, nil
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}

// StopPod kills the pod's processes (thawing a frozen pod so that the kill
// takes effect, as runc does) and removes its cgroup. It returns whether
// every process of the pod has exited (true when none ran); a pod whose
// processes did not exit within 10 s stays known to the runtime.
func (r *Runtime) StopPod(uid types.UID) bool {
	r.mu.Lock()
	pp, ok := r.pods[uid]
	delete(r.pods, uid)
	r.mu.Unlock()
	if !ok {
		return true
	}
	for _, c := range pp.containers {
		if c.cmd != nil && c.cmd.Process != nil {
			_ = c.cmd.Process.Kill()
		}
		if c.id != "" {
			r.stopRuncContainer(pp, c)
		}
	}
	if pp.cgroup != "" {
		_ = r.freezer.Thaw(context.Background(), pp.cgroup)
	}
	exited := true
	for _, c := range pp.containers {
		select {
		case <-c.done:
		case <-time.After(10 * time.Second):
			exited = false
			r.log.Error(nil, "Container did not exit after its kill", "pod", klog.KObj(pp.pod), "container", c.name)
		}
	}
	if !exited {
		// Keep it, as a kubelet keeps a pod whose containers it could not
		// stop: the next StopPod kills it again.
		r.mu.Lock()
		if _, again := r.pods[uid]; !again {
			r.pods[uid] = pp
		}
		r.mu.Unlock()
		return false
	}
	for _, c := range pp.containers {
		if c.id != "" {
			r.deleteRuncContainer(c)
		}
	}
	if pp.cgroup != "" {
		if r.runc != nil {
			r.removePodCgroups(pp.cgroup)
		}
		_ = os.Remove(filepath.Join(r.cfg.FreezerMount, pp.cgroup))
	}
	r.log.Info("Pod stopped", "pod", klog.KObj(pp.pod))
	return true
}

// StopAll stops every pod.
func (r *Runtime) StopAll() {
	r.mu.Lock()
	uids := make([]types.UID, 0, len(r.pods))
	for u := range r.pods {
		uids = append(uids, u)
	}
	r.mu.Unlock()
	for _, u := range uids {
		r.StopPod(u)
	}
}

// ContainerInfo describes a running lab app container.
type ContainerInfo struct {
	PID      int
	StateDir string
	LogPath  string
	Cgroup   string
	Exited   bool
}

// Container returns a running container of a pod by namespace/name.
func (r *Runtime) Container(namespace, pod, container string) (*ContainerInfo, bool) {
	pp, cp := r.find(namespace, pod, container)
	if pp == nil || cp == nil {
		return nil, false
	}
	exited := false
	select {
	case <-cp.done:
		exited = true
	default:
	}
	pid := cp.pid
	if cp.cmd != nil {
		pid = cp.cmd.Process.Pid
	}
	return &ContainerInfo{PID: pid, StateDir: cp.stateDir, LogPath: cp.logPath, Cgroup: pp.cgroup, Exited: exited}, true
}

func (r *Runtime) find(namespace, pod string, container ...string) (*podProc, *containerProc) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, pp := range r.pods {
		if pp.pod.Namespace == namespace && pp.pod.Name == pod {
			if len(container) == 0 {
				return pp, nil
			}
			return pp, pp.containers[container[0]]
		}
	}
	return nil, nil
}

// Freezer returns the runtime's view of its pods' cgroups.
func (r *Runtime) Freezer() *freezer.Freezer { return r.freezer }

func hostIPs(listen string) []net.IP {
	host, _, err := net.SplitHostPort(listen)
	if err != nil || host == "" {
		return []net.IP{net.ParseIP("127.0.0.1")}
	}
	if ip := net.ParseIP(host); ip != nil {
		return []net.IP{ip}
	}
	return []net.IP{net.ParseIP("127.0.0.1")}
}
