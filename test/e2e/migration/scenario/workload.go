package scenario

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	policyv1alpha1 "github.com/karmada-io/karmada/pkg/apis/policy/v1alpha1"
	workv1alpha2 "github.com/karmada-io/karmada/pkg/apis/work/v1alpha2"

	"github.com/livemigrate/livemigrate/agent/freezer"
	"github.com/livemigrate/livemigrate/test/lab"
	"github.com/livemigrate/livemigrate/test/labapp/labstate"
	"github.com/livemigrate/livemigrate/test/labnode"
)

const (
	// StorageClass is the class of the lab's local volumes.
	StorageClass = "lab-local"
	// Container is the lab app's container name.
	Container = "app"
	// LogFile is the counter log on the app's volume.
	LogFile      = "counter.log"
	freezerMount = "/sys/fs/cgroup/freezer"
)

// App is a StatefulSet of the lab app with one volume per pod, propagated
// by Karmada to one member.
type App struct {
	Env       *Env
	Namespace string
	Name      string
	// Kind is StatefulSet or Deployment; Replicas its pods.
	Kind     string
	Replicas int
	// Source is the member Karmada placed it in.
	Source string
}

// AppOptions shape the lab app.
type AppOptions struct {
	// Cluster pins the first placement; empty lets the scheduler choose.
	Cluster string
	// Memory and DirtyRate of the lab app (quantities); Tick between
	// counter increments.
	Memory, DirtyRate string
	Tick              time.Duration
	// Annotations are put on the workload template (e.g. the
	// livemigrate.io/ policy annotations).
	Annotations map[string]string
	// ClusterTolerations are the PropagationPolicy's cluster tolerations.
	ClusterTolerations []corev1.Toleration
}

func (o *AppOptions) defaults() {
	if o.Memory == "" {
		o.Memory = "16Mi"
	}
	if o.DirtyRate == "" {
		o.DirtyRate = "4Mi"
	}
	if o.Tick == 0 {
		o.Tick = 5 * time.Millisecond
	}
}

// Deploy creates the namespace, the PropagationPolicy (one cluster,
// Divided/Aggregated) and the StatefulSet in the Karmada plane, then a
// local volume for its claim in the member Karmada picked, and waits until
// the lab app runs there.
func (e *Env) Deploy(ctx context.Context, ns, name string, o AppOptions) (*App, error) {
	o.defaults()
	k := e.Karmada.CR
	if err := create(ctx, k, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		return nil, err
	}
	pp := propagationPolicy(ns, name, "StatefulSet", o.Cluster)
	pp.Spec.Placement.ClusterTolerations = o.ClusterTolerations
	if err := create(ctx, k, pp); err != nil {
		return nil, err
	}
	labels := map[string]string{"app": name}
	sts := &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels, Annotations: o.Annotations},
		Spec: appsv1.StatefulSetSpec{
			Replicas:    ptr.To[int32](1),
			ServiceName: name,
			Selector:    &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				// The lab node runtime, not kwok, reports the pod Ready
				// once its lab app runs, as a kubelet would.
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": name, labnode.LabelRuntime: labnode.RuntimeName}},
				Spec: corev1.PodSpec{
					Containers: []corev1.Container{{
						Name: Container, Image: lab.LabAppImage,
						Args: []string{"run", "--memory=" + o.Memory, "--dirty-rate=" + o.DirtyRate, "--tick=" + o.Tick.String(),
							"--log=/data/" + LogFile},
						Resources:    labAppResources(o),
						VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"}},
					}},
				},
			},
			VolumeClaimTemplates: []corev1.PersistentVolumeClaim{{
				ObjectMeta: metav1.ObjectMeta{Name: "data"},
				Spec: corev1.PersistentVolumeClaimSpec{
					AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
					StorageClassName: ptr.To(StorageClass),
					Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
				},
			}},
		},
	}
	if err := create(ctx, k, sts); err != nil {
		return nil, err
	}
	a := &App{Env: e, Namespace: ns, Name: name, Kind: "StatefulSet", Replicas: 1}
	if err := a.waitPlaced(ctx); err != nil {
		return nil, err
	}
	m, node, err := e.volumeNode(ctx, a.Source)
	if err != nil {
		return nil, err
	}
	claim := "data-" + name + "-0"
	dir, err := e.createLocalVolume(ctx, m, ns, claim, node)
	if err != nil {
		return nil, err
	}
	e.Logf("%s/%s placed in %s; its volume %s is %s on %s", ns, name, a.Source, claim, dir, node)
	if _, err := a.WaitRunning(ctx, a.Source, 0); err != nil {
		return nil, err
	}
	return a, nil
}

// DeployDeployment creates a Deployment of the lab app with replicas pods
// keeping their state in memory only (a cache: no log, no volume) and its
// PropagationPolicy, and waits until every pod's lab app runs.
func (e *Env) DeployDeployment(ctx context.Context, ns, name string, replicas int, o AppOptions) (*App, error) {
	o.defaults()
	k := e.Karmada.CR
	if err := create(ctx, k, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		return nil, err
	}
	pp := propagationPolicy(ns, name, "Deployment", o.Cluster)
	pp.Spec.Placement.ClusterTolerations = o.ClusterTolerations
	if err := create(ctx, k, pp); err != nil {
		return nil, err
	}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"app": name}, Annotations: o.Annotations},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(int32(replicas)),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": name, labnode.LabelRuntime: labnode.RuntimeName}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{labAppContainer(o, "")}},
			},
		},
	}
	if err := create(ctx, k, d); err != nil {
		return nil, err
	}
	a := &App{Env: e, Namespace: ns, Name: name, Kind: "Deployment", Replicas: replicas}
	if err := a.waitPlaced(ctx); err != nil {
		return nil, err
	}
	if _, err := a.WaitAllRunning(ctx, a.Source, replicas, 0); err != nil {
		return nil, err
	}
	return a, nil
}

// labAppContainer runs the lab app logging to log (memory only when empty).
func labAppContainer(o AppOptions, log string) corev1.Container {
	return corev1.Container{
		Name: Container, Image: lab.LabAppImage,
		Args:      []string{"run", "--memory=" + o.Memory, "--dirty-rate=" + o.DirtyRate, "--tick=" + o.Tick.String(), "--log=" + log},
		Resources: labAppResources(o),
	}
}

// labAppOverhead is what the lab app holds besides its --memory region
// (Go runtime, buffers): a limit below region + overhead would have the
// app killed in a real cluster.
var labAppOverhead = resource.MustParse("32Mi")

// labAppResources requests a little memory (so that placement does not
// depend on the size under test) and limits it to the app's region plus
// its overhead, as a real pod would declare it. The limit is what the
// descheduler sizes the checkpoint from when it estimates the downtime.
func labAppResources(o AppOptions) corev1.ResourceRequirements {
	limit := resource.MustParse(o.Memory)
	limit.Add(labAppOverhead)
	request := resource.MustParse("64Mi")
	if limit.Cmp(request) < 0 {
		request = limit.DeepCopy()
	}
	return corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: request},
		Limits:   corev1.ResourceList{corev1.ResourceMemory: limit},
	}
}

// propagationPolicy places one workload in one cluster (Divided,
// Aggregated), pinned to cluster when given.
func propagationPolicy(ns, name, kind, cluster string) *policyv1alpha1.PropagationPolicy {
	pp := &policyv1alpha1.PropagationPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: policyv1alpha1.PropagationSpec{
			ResourceSelectors: []policyv1alpha1.ResourceSelector{{APIVersion: "apps/v1", Kind: kind, Name: name}},
			Placement: policyv1alpha1.Placement{
				SpreadConstraints: []policyv1alpha1.SpreadConstraint{{SpreadByField: policyv1alpha1.SpreadByFieldCluster, MaxGroups: 1, MinGroups: 1}},
				ReplicaScheduling: &policyv1alpha1.ReplicaSchedulingStrategy{
					ReplicaSchedulingType:     policyv1alpha1.ReplicaSchedulingTypeDivided,
					ReplicaDivisionPreference: policyv1alpha1.ReplicaDivisionPreferenceAggregated,
				},
			},
		},
	}
	if cluster != "" {
		pp.Spec.Placement.ClusterAffinity = &policyv1alpha1.ClusterAffinity{ClusterNames: []string{cluster}}
	}
	return pp
}

// waitPlaced waits until Karmada placed the workload in one cluster.
func (a *App) waitPlaced(ctx context.Context) error {
	return poll(ctx, "the binding of "+a.Name+" to be scheduled", func() (bool, string, error) {
		rb := &workv1alpha2.ResourceBinding{}
		if err := a.Env.Karmada.CR.Get(ctx, client.ObjectKey{Namespace: a.Namespace, Name: a.BindingName()}, rb); err != nil {
			return false, err.Error(), nil
		}
		if len(rb.Spec.Clusters) != 1 {
			return false, fmt.Sprintf("%d clusters", len(rb.Spec.Clusters)), nil
		}
		a.Source = rb.Spec.Clusters[0].Name
		return true, "", nil
	})
}

// ensureStorageClass creates the lab's local class (Immediate binding, no
// provisioner: every volume is created beforehand).
func (e *Env) ensureStorageClass(ctx context.Context, m *Cluster) error {
	sc := &storagev1.StorageClass{
		ObjectMeta:        metav1.ObjectMeta{Name: StorageClass},
		Provisioner:       "kubernetes.io/no-provisioner",
		VolumeBindingMode: ptr.To(storagev1.VolumeBindingImmediate),
		ReclaimPolicy:     ptr.To(corev1.PersistentVolumeReclaimRetain),
	}
	if _, err := m.Client.StorageV1().StorageClasses().Create(ctx, sc, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating StorageClass %s in %s: %w", StorageClass, m.Name, err)
	}
	return nil
}

// BindingName is the ResourceBinding Karmada made for the workload.
func (a *App) BindingName() string { return a.Name + "-" + strings.ToLower(a.Kind) }

// Pod is a lab app pod as the host sees it.
type Pod struct {
	Cluster string
	Name    string
	UID     string
	Node    string
	// StateDir holds the lab app's layout.json; Output its stdout/stderr.
	StateDir, Output string
	// Cgroup is the pod's freezer cgroup below the mount.
	Cgroup string
	Layout *labstate.Layout
}

// StateStopped is a source pod whose cgroups are not frozen but all of whose
// threads are held by a tracer: CRIU seizes the tasks of a frozen container,
// thaws its cgroup (the seized threads stop instead of returning to user
// code) and freezes it again before it lets them go.
const StateStopped = "STOPPED"

// RunState is FreezerState, or StateStopped when the pod is not frozen but
// every thread of its tasks is traced (TracerPid in /proc/<tid>/status).
//
// The freezer and the threads are separate reads, and CRIU changes both in
// between at the end of a dump: it freezes the cgroups again while it holds
// the threads and only then lets them go. A freezer read as thawed before
// that and threads read as untraced after it are no instant at which the
// pod could run, so the freezer is read again after the threads: the pod
// counts as runnable only when it was not frozen on both sides of the look
// at its threads.
func (p *Pod) RunState() string {
	st := p.FreezerState()
	if st == "FROZEN" || st == "" {
		return st
	}
	if p.allTraced() {
		return StateStopped
	}
	if again := p.FreezerState(); again == "FROZEN" || again == "" {
		return again
	}
	return st
}

// allTraced tells whether every thread in the pod's freezer cgroups has a
// tracer, and there is one thread at least.
func (p *Pod) allTraced() bool {
	n := 0
	traced := true
	_ = filepath.WalkDir(filepath.Join(freezerMount, p.Cgroup), func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() != "tasks" {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			traced = false
			return nil
		}
		for _, tid := range strings.Fields(string(b)) {
			st, err := os.ReadFile("/proc/" + tid + "/status")
			if err != nil {
				continue
			}
			n++
			for _, line := range strings.Split(string(st), "\n") {
				if v, ok := strings.CutPrefix(line, "TracerPid:"); ok && strings.TrimSpace(v) == "0" {
					traced = false
				}
			}
		}
		return nil
	})
	return traced && n > 0
}

// FreezerState reads the pod cgroup's freezer state (FROZEN, FREEZING,
// THAWED); "" when the cgroup is gone. A pod whose tasks all sit in frozen
// container cgroups below it (runc containers while the node runtime dumps
// them) is FROZEN too: none of its tasks can run.
func (p *Pod) FreezerState() string {
	dir := filepath.Join(freezerMount, p.Cgroup)
	b, err := os.ReadFile(filepath.Join(dir, "freezer.state"))
	if err != nil {
		return ""
	}
	st := strings.TrimSpace(string(b))
	if st == "FROZEN" {
		return st
	}
	if procs, err := os.ReadFile(filepath.Join(dir, "cgroup.procs")); err != nil || len(bytes.TrimSpace(procs)) > 0 {
		return st
	}
	subs, err := os.ReadDir(dir)
	if err != nil {
		return st
	}
	containers := 0
	for _, s := range subs {
		if !s.IsDir() {
			continue
		}
		cb, err := os.ReadFile(filepath.Join(dir, s.Name(), "freezer.state"))
		if err != nil || strings.TrimSpace(string(cb)) != "FROZEN" {
			return st
		}
		containers++
	}
	if containers == 0 {
		return st
	}
	return "FROZEN"
}

// Alive tells whether the lab app process still exists.
func (p *Pod) Alive() bool {
	if p.Layout == nil || p.Layout.PID <= 0 {
		return false
	}
	err := syscall.Kill(p.Layout.PID, 0)
	if err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	// A zombie or a reused PID is not our process.
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.Layout.PID))
	if err != nil {
		return false
	}
	fields := strings.Fields(string(b))
	return len(fields) > 2 && fields[2] != "Z" && strings.Contains(fields[1], "labapp")
}

// LogPath is the counter log on the pod's volume (a host path).
func (p *Pod) LogPath() string { return p.Layout.Config.LogPath }

// Counter reads the committed counter from the live process.
func (p *Pod) Counter() (uint64, error) { return labstate.PeekCounter(p.Layout) }

// podOf locates a pod's lab app on the host.
func (e *Env) podOf(cluster string, pod *corev1.Pod) *Pod {
	root := e.Paths.NodeRoot(pod.Spec.NodeName)
	cdir := filepath.Join(root, "pods", string(pod.UID), Container)
	return &Pod{
		Cluster: cluster, Name: pod.Name, UID: string(pod.UID), Node: pod.Spec.NodeName,
		StateDir: filepath.Join(cdir, "state"), Output: filepath.Join(cdir, "output.log"),
		Cgroup: freezer.PodCgroupCandidates(e.Paths.CgroupParent(pod.Spec.NodeName), freezer.DriverCgroupfs, pod.UID)[1],
	}
}

// runningPods returns the app's pods in a cluster whose lab app runs
// (process alive, layout published).
func (a *App) runningPods(ctx context.Context, cluster string) ([]*Pod, string, error) {
	m := a.Env.Members[cluster]
	pods, err := m.Client.CoreV1().Pods(a.Namespace).List(ctx, metav1.ListOptions{LabelSelector: "app=" + a.Name})
	if err != nil {
		return nil, err.Error(), nil
	}
	var out []*Pod
	why := "no pod"
	for i := range pods.Items {
		pod := &pods.Items[i]
		switch {
		case pod.Spec.NodeName == "":
			why = "pod not scheduled"
			continue
		case pod.DeletionTimestamp != nil:
			why = "pod terminating"
			continue
		}
		p := a.Env.podOf(cluster, pod)
		l, err := labstate.ReadLayout(p.StateDir)
		if err != nil {
			why = "lab app not started: " + err.Error()
			continue
		}
		p.Layout = l
		if !p.Alive() {
			why = fmt.Sprintf("lab app process %d not running", l.PID)
			continue
		}
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	if len(out) > 0 {
		why = ""
	}
	return out, why, nil
}

// findRunning returns a running pod of the app in a cluster, else nil.
func (a *App) findRunning(ctx context.Context, cluster string) (*Pod, string, error) {
	pods, why, err := a.runningPods(ctx, cluster)
	if err != nil || len(pods) == 0 {
		return nil, why, err
	}
	return pods[0], "", nil
}

// WaitRunning waits until a pod of the app runs its lab app in a cluster
// and its counter reached atLeast.
func (a *App) WaitRunning(ctx context.Context, cluster string, atLeast uint64) (*Pod, error) {
	pods, err := a.WaitAllRunning(ctx, cluster, 1, atLeast)
	if err != nil {
		return nil, err
	}
	return pods[0], nil
}

// WaitAllRunning waits until n pods of the app run their lab app in a
// cluster, each counter at least atLeast.
func (a *App) WaitAllRunning(ctx context.Context, cluster string, n int, atLeast uint64) ([]*Pod, error) {
	var pods []*Pod
	err := poll(ctx, fmt.Sprintf("%d pods of %s/%s running in %s", n, a.Namespace, a.Name, cluster), func() (bool, string, error) {
		var why string
		var err error
		if pods, why, err = a.runningPods(ctx, cluster); err != nil || len(pods) < n {
			return false, fmt.Sprintf("%d running; %s", len(pods), why), err
		}
		for _, p := range pods {
			c, err := p.Counter()
			if err != nil {
				return false, err.Error(), nil
			}
			if c < atLeast {
				return false, fmt.Sprintf("%s counter %d", p.Name, c), nil
			}
		}
		return true, "", nil
	})
	return pods, err
}

// Delete removes the app from the Karmada plane (Karmada removes it from
// the members) and waits until no pod of it is left in any member.
func (a *App) Delete(ctx context.Context) error {
	k := a.Env.Karmada.CR
	var w client.Object = &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Namespace: a.Namespace, Name: a.Name}}
	if a.Kind == "Deployment" {
		w = &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: a.Namespace, Name: a.Name}}
	}
	for _, o := range []client.Object{
		w,
		&policyv1alpha1.PropagationPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: a.Namespace, Name: a.Name}},
	} {
		if err := k.Delete(ctx, o); client.IgnoreNotFound(err) != nil {
			return err
		}
	}
	return poll(ctx, "the pods of "+a.Name+" to be gone", func() (bool, string, error) {
		for name, m := range a.Env.Members {
			if pods, err := m.Client.CoreV1().Pods(a.Namespace).List(ctx, metav1.ListOptions{LabelSelector: "app=" + a.Name}); err != nil || len(pods.Items) > 0 {
				return false, "pods left in " + name, nil
			}
		}
		return true, "", nil
	})
}

func create(ctx context.Context, c client.Client, o client.Object) error {
	if err := c.Create(ctx, o); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating %T %s: %w", o, o.GetName(), err)
	}
	return nil
}

// poll calls f every 100ms until it is done, fails, or ctx ends.
func poll(ctx context.Context, what string, f func() (bool, string, error)) error {
	return lab.Poll(ctx, what, 100*time.Millisecond, func(context.Context) (bool, string, error) { return f() })
}

// createLocalVolume creates the directory and the local PersistentVolume,
// pinned to node and pre-bound to claim in ns, of a source volume of the
// lab app in member m, and returns the directory.
func (e *Env) createLocalVolume(ctx context.Context, m *Cluster, ns, claim, node string) (string, error) {
	dir := filepath.Join(e.Paths.Dir, "disks", m.Name, ns, claim)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: ns + "-" + claim},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")},
			AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain,
			StorageClassName:              StorageClass,
			ClaimRef:                      &corev1.ObjectReference{Namespace: ns, Name: claim},
			PersistentVolumeSource:        corev1.PersistentVolumeSource{Local: &corev1.LocalVolumeSource{Path: dir}},
			NodeAffinity: &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
				MatchExpressions: []corev1.NodeSelectorRequirement{{Key: corev1.LabelHostname, Operator: corev1.NodeSelectorOpIn, Values: []string{node}}},
			}}}},
		},
	}
	if _, err := m.Client.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return "", fmt.Errorf("creating the source volume %s in %s: %w", claim, m.Name, err)
	}
	return dir, nil
}

// volumeNode returns the member a StatefulSet was placed in, with the lab's
// storage class there, and the node its local source volumes are pinned to.
func (e *Env) volumeNode(ctx context.Context, source string) (*Cluster, string, error) {
	m := e.Members[source]
	if m == nil {
		return nil, "", fmt.Errorf("placed in %q, which is not a member of the lab", source)
	}
	if err := e.ensureStorageClass(ctx, m); err != nil {
		return nil, "", err
	}
	nodes, err := m.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, "", err
	}
	if len(nodes.Items) == 0 {
		return nil, "", fmt.Errorf("%s has no nodes", m.Name)
	}
	return m, nodes.Items[0].Name, nil
}
