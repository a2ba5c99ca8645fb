package lab

import (
	"context"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/livemigrate/livemigrate/test/lab/invariant"
)

// EnvInvariants, set to any value, makes RunTests watch the lab app
// processes with the invariant monitor for the whole run and fail the
// package on any violation (two live copies of a StatefulSet pod, state
// lost), as Options.Invariants does for one package.
const EnvInvariants = "LIVEMIGRATE_LAB_INVARIANTS"

// PodIdentity names a lab app process by the StatefulSet pod it runs for,
// "<namespace>/<pod name>", the same name in every member cluster; a
// process of any other pod gets "" (not compared). The pod is found by the
// UID in the process's cgroup; the pods of the clusters are listed again,
// at most once per second, when a UID is not known yet. Only the name
// comes from the API servers: whether a process runs is read on the host.
func PodIdentity(clients []kubernetes.Interface) invariant.Identity {
	var mu sync.Mutex
	names := map[string]string{}
	var listed time.Time
	return func(p invariant.Process) string {
		m := invariant.PodUIDPattern.FindStringSubmatch(p.Cgroup)
		if m == nil {
			return ""
		}
		uid := strings.ReplaceAll(m[1], "_", "-")
		mu.Lock()
		defer mu.Unlock()
		if name, ok := names[uid]; ok {
			return name
		}
		if time.Since(listed) < time.Second {
			return ""
		}
		listed = time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for _, c := range clients {
			pods, err := c.CoreV1().Pods(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
			if err != nil {
				continue
			}
			for _, pod := range pods.Items {
				name := ""
				for _, o := range pod.OwnerReferences {
					if o.Kind == "StatefulSet" {
						name = pod.Namespace + "/" + pod.Name
					}
				}
				names[string(pod.UID)] = name
			}
		}
		return names[uid]
	}
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
	mon := &invariant.Monitor{Identity: PodIdentity(clients), Interval: 50 * time.Millisecond}
	go mon.Run(ctx)
	return mon
}
