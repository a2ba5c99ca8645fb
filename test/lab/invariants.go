package lab

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	agentv1alpha1 "github.com/livemigrate/livemigrate/api/agent/v1alpha1"
	"github.com/livemigrate/livemigrate/test/lab/invariant"
)

// EnvInvariants, set to any value, makes RunTests watch the lab app
// processes with the invariant monitor for the whole run and fail the
// package on any violation (two live copies of a StatefulSet pod, state
// lost), as Options.Invariants does for one package.
const EnvInvariants = "LIVEMIGRATE_LAB_INVARIANTS"

// PodIdentity names a lab app process by the workload replica it runs
// for: a StatefulSet pod by its name, "<namespace>/<pod name>", the same
// name in every member cluster; a Deployment replica (a pod of a
// ReplicaSet) by its checkpoint lineage, "<namespace>/<pod name> (lineage)"
// with the name of the first pod of the lineage: a pod restored from a
// checkpoint (agentv1alpha1.AnnotationRestoreCheckpoint, the checkpointed
// source pod's name) continues its source's lineage, across any number of
// migrations. A process of any other pod gets "" (not compared). The pod
// is found by the UID in the process's cgroup; the pods of the clusters
// are listed again, at most once per second, when a UID is not known yet.
// Only the names come from the API servers: whether a process runs is
// read on the host.
func PodIdentity(clients []kubernetes.Interface) invariant.Identity {
	return newPodIndex(clients).identity
}

// podIndex maps the pod UIDs of a lab's member clusters to StatefulSet pod
// names and Deployment replica lineages ("" for other pods).
type podIndex struct {
	clients []kubernetes.Interface
	mu      sync.Mutex
	names   map[string]string
	// lineage maps "<namespace>/<pod name>" of every Deployment replica
	// seen to the first pod of its lineage: kept after the pod is gone, for
	// the pods restored from its checkpoint.
	lineage map[string]string
	listed  time.Time
}

func newPodIndex(clients []kubernetes.Interface) *podIndex {
	return &podIndex{clients: clients, names: map[string]string{}, lineage: map[string]string{}}
}

// lookup returns the name of the pod whose UID is in the process's cgroup,
// and whether that pod belongs to one of the clusters.
func (x *podIndex) lookup(p invariant.Process) (string, bool) {
	m := invariant.PodUIDPattern.FindStringSubmatch(p.Cgroup)
	if m == nil {
		return "", false
	}
	uid := strings.ReplaceAll(m[1], "_", "-")
	x.mu.Lock()
	defer x.mu.Unlock()
	if name, ok := x.names[uid]; ok {
		return name, true
	}
	if time.Since(x.listed) < time.Second {
		return "", false
	}
	x.listed = time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// restoredFrom maps a Deployment replica seen in this listing to the
	// pod whose checkpoint it was restored from ("" for none).
	restoredFrom := map[string]string{}
	var replicas []corev1.Pod
	for _, c := range x.clients {
		pods, err := c.CoreV1().Pods(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
		if err != nil {
			continue
		}
		for _, pod := range pods.Items {
			name := ""
			for _, o := range pod.OwnerReferences {
				switch o.Kind {
				case "StatefulSet":
					name = pod.Namespace + "/" + pod.Name
				case "ReplicaSet":
					from := ""
					if src := pod.Annotations[agentv1alpha1.AnnotationRestoreCheckpoint]; src != "" {
						from = pod.Namespace + "/" + src
					}
					restoredFrom[pod.Namespace+"/"+pod.Name] = from
					replicas = append(replicas, pod)
				}
			}
			x.names[string(pod.UID)] = name
		}
	}
	for _, pod := range replicas {
		x.names[string(pod.UID)] = x.lineageOf(pod.Namespace+"/"+pod.Name, restoredFrom) + " (lineage)"
	}
	name, ok := x.names[uid]
	return name, ok
}

// lineageOf returns the first pod of the replica's lineage, following the
// checkpoints it was restored from through this listing (restoredFrom)
// and the lineages recorded before (of pods gone since), and records it.
func (x *podIndex) lineageOf(pod string, restoredFrom map[string]string) string {
	var path []string
	cur := pod
	for range 64 { // a chain of restores longer than this is a loop
		if root, ok := x.lineage[cur]; ok {
			cur = root
			break
		}
		path = append(path, cur)
		from := restoredFrom[cur]
		if from == "" || slices.Contains(path, from) {
			break
		}
		cur = from
	}
	for _, p := range path {
		x.lineage[p] = cur
	}
	return cur
}

func (x *podIndex) identity(p invariant.Process) string {
	name, _ := x.lookup(p)
	return name
}

// inLab reports whether the process runs for a pod of the lab's clusters:
// the lab app processes of other labs and tests on the same host are none
// of this lab's business.
func (x *podIndex) inLab(p invariant.Process) bool {
	_, ok := x.lookup(p)
	return ok
}

// NewInvariantMonitor returns the invariant monitor RunTests runs, over
// the lab app processes of the pods of the given member clusters (named
// by PodIdentity, other processes on the host left out), for a program
// attached to a lab that runs elsewhere (livemigrate-lab demo). Run it
// with go mon.Run(ctx).
func NewInvariantMonitor(clients []kubernetes.Interface) *invariant.Monitor {
	pods := newPodIndex(clients)
	return &invariant.Monitor{Identity: pods.identity, Scope: pods.inLab, Interval: 50 * time.Millisecond}
}

// watchInvariants starts the invariant monitor over the lab's members
// when EnvInvariants is set; nil otherwise.
func (l *Lab) watchInvariants(ctx context.Context, enabled bool) *invariant.Monitor {
	if !enabled {
		return nil
	}
	clients := make([]kubernetes.Interface, 0, len(l.Members))
	for _, m := range l.Members {
		clients = append(clients, m.Client)
	}
	mon := NewInvariantMonitor(clients)
	l.identityMu.Lock()
	l.monitor = mon
	l.identityMu.Unlock()
	go mon.Run(ctx)
	return mon
}

// InvariantViolations returns what the invariant monitor RunTests started
// has seen so far (none without one): a test that wants the violations
// of its own time compares them before and after.
func (l *Lab) InvariantViolations() []invariant.Violation {
	l.identityMu.Lock()
	mon := l.monitor
	l.identityMu.Unlock()
	if mon == nil {
		return nil
	}
	v, _ := mon.Violations()
	return v
}
