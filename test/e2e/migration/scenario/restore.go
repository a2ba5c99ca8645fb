package scenario

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/livemigrate/livemigrate/test/labapp/labstate"
)

// restoreArchive is the file, in a container's directory of the lab node
// runtime, that the runtime pulls a checkpoint image's archive into; the
// restored lab app reads its memory dump from it in place, and the runtime
// removes it once the lab app has published its layout.
const restoreArchive = "checkpoint.tar"

// Restore is a target pod whose checkpoint its node's runtime is restoring,
// as seen on the host.
type Restore struct {
	// Pod is the target pod (bound to Pod.Node); its lab app has not
	// published its layout yet.
	Pod *Pod
	// Archive is the pulled archive; Bytes how much of it was on disk when
	// the restore was seen.
	Archive string
	Bytes   int64
}

// Published tells whether the restored lab app has published its layout,
// i.e. the restore has finished and the app runs (or ran).
func (r *Restore) Published() bool {
	_, err := os.Stat(filepath.Join(r.Pod.StateDir, labstate.LayoutFile))
	return err == nil
}

// WaitRestoring waits until a pod of the app in cluster is bound to a node
// and that node's lab node runtime is restoring it: the checkpoint's
// archive is being pulled (it holds bytes) or loaded, and the lab app has
// not published its layout yet. It looks only at the target side (the
// pods of the cluster, the runtime's files), never at the migration's
// phase.
func (a *App) WaitRestoring(ctx context.Context, cluster string) (*Restore, error) {
	m := a.Env.Members[cluster]
	if m == nil {
		return nil, fmt.Errorf("%q is not a member of the lab", cluster)
	}
	const (
		listEvery = 100 * time.Millisecond
		statEvery = 2 * time.Millisecond
	)
	var bound []*Pod
	var listed time.Time
	why := "no pod"
	for {
		if time.Since(listed) >= listEvery {
			listed = time.Now()
			pods, err := m.Client.CoreV1().Pods(a.Namespace).List(ctx, metav1.ListOptions{LabelSelector: "app=" + a.Name})
			if err != nil {
				why = err.Error()
			} else {
				bound = bound[:0]
				why = "no pod bound to a node"
				for i := range pods.Items {
					p := &pods.Items[i]
					if p.Spec.NodeName == "" || p.DeletionTimestamp != nil || p.Status.Phase == corev1.PodFailed {
						continue
					}
					bound = append(bound, a.Env.podOf(cluster, p))
				}
				if len(bound) > 0 {
					why = "no checkpoint being pulled on the nodes of the bound pods"
				}
			}
		}
		for _, p := range bound {
			archive := filepath.Join(filepath.Dir(p.StateDir), restoreArchive)
			fi, err := os.Stat(archive)
			if err != nil || fi.Size() == 0 {
				continue
			}
			r := &Restore{Pod: p, Archive: archive, Bytes: fi.Size()}
			if r.Published() {
				why = fmt.Sprintf("%s restored already", p.Name)
				continue
			}
			return r, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for a restore of %s/%s in %s: %w (%s)", a.Namespace, a.Name, cluster, ctx.Err(), why)
		case <-time.After(statEvery):
		}
	}
}
