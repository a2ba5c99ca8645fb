package scenario

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	workv1alpha2 "github.com/karmada-io/karmada/pkg/apis/work/v1alpha2"

	"github.com/livemigrate/livemigrate/agent/replication/treediff"
	agentv1alpha1 "github.com/livemigrate/livemigrate/api/agent/v1alpha1"
	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
	"github.com/livemigrate/livemigrate/test/labnode"
)

// MultiVolumeApp is a StatefulSet of the lab app with several pods and
// several claims per pod: the lab app logs its counter to the first claim;
// the others hold what the scenario writes into them.
type MultiVolumeApp struct {
	*App
	// Claims are the StatefulSet's claim templates, the first one the log's.
	Claims []string
	// SourceDirs maps a claim (e.g. data-db-0) to its source directory.
	SourceDirs map[string]string
}

// DeployMultiVolume creates a StatefulSet of replicas pods with one
// claim per name in claims (mounted at /<claim>), a local volume for
// each pod's claims on the first node of the member Karmada picked, and
// waits until every pod's lab app runs there.
func (e *Env) DeployMultiVolume(ctx context.Context, ns, name string, replicas int, claims []string, o AppOptions) (*MultiVolumeApp, error) {
	o.defaults()
	if len(claims) == 0 {
		return nil, fmt.Errorf("a multi-volume app needs at least one claim")
	}
	k := e.Karmada.CR
	if err := create(ctx, k, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		return nil, err
	}
	if err := create(ctx, k, propagationPolicy(ns, name, "StatefulSet", o.Cluster)); err != nil {
		return nil, err
	}
	labels := map[string]string{"app": name}
	c := labAppContainer(o, "/"+claims[0]+"/"+LogFile)
	var templates []corev1.PersistentVolumeClaim
	for _, cl := range claims {
		c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: cl, MountPath: "/" + cl})
		templates = append(templates, corev1.PersistentVolumeClaim{
			ObjectMeta: metav1.ObjectMeta{Name: cl},
			Spec: corev1.PersistentVolumeClaimSpec{
				AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
				StorageClassName: ptr.To(StorageClass),
				Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
			},
		})
	}
	sts := &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
		Spec: appsv1.StatefulSetSpec{
			Replicas:    ptr.To(int32(replicas)),
			ServiceName: name,
			Selector:    &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": name, labnode.LabelRuntime: labnode.RuntimeName}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{c}},
			},
			VolumeClaimTemplates: templates,
		},
	}
	if err := create(ctx, k, sts); err != nil {
		return nil, err
	}
	a := &MultiVolumeApp{App: &App{Env: e, Namespace: ns, Name: name, Kind: "StatefulSet", Replicas: replicas}, Claims: claims, SourceDirs: map[string]string{}}
	if err := a.waitPlaced(ctx); err != nil {
		return nil, err
	}
	m, node, err := e.volumeNode(ctx, a.Source)
	if err != nil {
		return nil, err
	}
	for i := range replicas {
		for _, cl := range claims {
			claim := fmt.Sprintf("%s-%s-%d", cl, name, i)
			dir, err := e.createLocalVolume(ctx, m, ns, claim, node)
			if err != nil {
				return nil, err
			}
			a.SourceDirs[claim] = dir
		}
	}
	e.Logf("%s/%s placed in %s with %d pods × %d claims on %s", ns, name, a.Source, replicas, len(claims), node)
	if _, err := a.WaitAllRunning(ctx, a.Source, replicas, 0); err != nil {
		return nil, err
	}
	return a, nil
}

// FillVolumes writes a file of size bytes into every source volume (so
// that the pre-copy has data to move).
func (a *MultiVolumeApp) FillVolumes(size int) error {
	for claim, dir := range a.SourceDirs {
		if err := writeRandom(filepath.Join(dir, "fill.bin"), size); err != nil {
			return fmt.Errorf("filling %s: %w", claim, err)
		}
	}
	return nil
}

// WriteUntilFrozen writes a small new file into each volume of a pod every
// interval until that pod is frozen (or ctx ends), as an application would
// up to its freeze; wait returns the number of files written per claim.
func (a *MultiVolumeApp) WriteUntilFrozen(ctx context.Context, pods []*Pod, interval time.Duration) (wait func() map[string]int) {
	var mu sync.Mutex
	written := map[string]int{}
	var wg sync.WaitGroup
	for _, p := range pods {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ctx.Err() == nil && p.FreezerState() != "FROZEN"; n++ {
				for _, cl := range a.Claims {
					claim := cl + "-" + p.Name
					if err := writeRandom(filepath.Join(a.SourceDirs[claim], "before-freeze", fmt.Sprintf("%06d", n)), 4096); err != nil {
						a.Env.Logf("writing into %s: %v", claim, err)
						return
					}
					mu.Lock()
					written[claim]++
					mu.Unlock()
				}
				select {
				case <-ctx.Done():
				case <-time.After(interval):
				}
			}
		}()
	}
	return func() map[string]int {
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		return written
	}
}

func writeRandom(path string, size int) error {
	b := make([]byte, size)
	_, _ = rand.Read(b)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

// TargetDir is the directory of a claim's volume in a member cluster.
func (a *MultiVolumeApp) TargetDir(ctx context.Context, cluster, claim string) (string, error) {
	m := a.Env.Members[cluster]
	pvc, err := m.Client.CoreV1().PersistentVolumeClaims(a.Namespace).Get(ctx, claim, metav1.GetOptions{})
	if err != nil {
		return "", err
	}
	pv, err := m.Client.CoreV1().PersistentVolumes().Get(ctx, pvc.Spec.VolumeName, metav1.GetOptions{})
	if err != nil {
		return "", err
	}
	if pv.Spec.Local == nil {
		return "", fmt.Errorf("volume %s of claim %s is not a local volume", pv.Name, claim)
	}
	return pv.Spec.Local.Path, nil
}

// TargetNodes returns the node each claim's volume is pinned to in a
// member cluster.
func (a *MultiVolumeApp) TargetNodes(ctx context.Context, cluster string) (map[string]string, error) {
	m := a.Env.Members[cluster]
	out := map[string]string{}
	for claim := range a.SourceDirs {
		pvc, err := m.Client.CoreV1().PersistentVolumeClaims(a.Namespace).Get(ctx, claim, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		pv, err := m.Client.CoreV1().PersistentVolumes().Get(ctx, pvc.Spec.VolumeName, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		if na := pv.Spec.NodeAffinity; na != nil && na.Required != nil {
			for _, term := range na.Required.NodeSelectorTerms {
				for _, e := range term.MatchExpressions {
					if e.Key == corev1.LabelHostname && len(e.Values) == 1 {
						out[claim] = e.Values[0]
					}
				}
			}
		}
	}
	return out, nil
}

// CheckVolumesIdentical compares every claim's volume in the target with
// the source's, which has not changed since the freeze: the same entries,
// content and metadata, except the counter log, which the restored app
// continues: the target's must begin with the source's.
func (a *MultiVolumeApp) CheckVolumesIdentical(ctx context.Context, target string) []error {
	var errs []error
	claims := make([]string, 0, len(a.SourceDirs))
	for c := range a.SourceDirs {
		claims = append(claims, c)
	}
	sort.Strings(claims)
	for _, claim := range claims {
		src := a.SourceDirs[claim]
		dst, err := a.TargetDir(ctx, target, claim)
		if err != nil {
			errs = append(errs, fmt.Errorf("claim %s in %s: %w", claim, target, err))
			continue
		}
		want, err := treediff.Scan(src)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		got, err := treediff.Scan(dst)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		var diffs []string
		for p, w := range want {
			g, ok := got[p]
			switch {
			case !ok:
				diffs = append(diffs, "missing "+p)
			case p == LogFile:
				sb, _ := os.ReadFile(filepath.Join(src, p))
				tb, _ := os.ReadFile(filepath.Join(dst, p))
				if len(sb) == 0 || !bytes.HasPrefix(tb, sb) {
					diffs = append(diffs, fmt.Sprintf("%s: the target's (%d bytes) does not continue the source's (%d bytes)", p, len(tb), len(sb)))
				}
			case p == ".":
				// The root's times and mode are the provisioner's.
			case w != g:
				diffs = append(diffs, fmt.Sprintf("%s differs: size %d/%d, mtime %d/%d, mode %v/%v", p, w.Size, g.Size, w.MtimeNs, g.MtimeNs, w.Perm, g.Perm))
			}
		}
		for p := range got {
			if _, ok := want[p]; !ok {
				diffs = append(diffs, "extra "+p)
			}
		}
		if len(diffs) > 0 {
			sort.Strings(diffs)
			errs = append(errs, fmt.Errorf("claim %s: target %s differs from source %s: %v", claim, dst, src, diffs))
			continue
		}
		a.Env.Logf("claim %s: %d entries identical in %s (%s)", claim, len(want), target, dst)
	}
	return errs
}

// CheckMultiPodSucceeded checks a successful migration of a StatefulSet
// whose pods log to their volumes: every target pod resumes from the counter
// its source pod of the same name was frozen at, its memory and its log
// agree and continue the source's log with nothing lost or repeated; no
// source counted while a target ran, each stayed frozen until the targets
// ran and is gone; the binding points at the target and the downtime is in
// status.
func (e *Env) CheckMultiPodSucceeded(ctx context.Context, a *App, obs *Observation) []error {
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	st := obs.Migration.Status
	if obs.Err != nil || st.Phase != lmv1alpha1.PhaseSucceeded {
		fail("migration %s ended in %q (kubectl: %v), failure %+v", obs.Migration.Name, st.Phase, obs.Err, st.Failure)
		return errs
	}
	target := st.TargetCluster
	targets, err := a.WaitAllRunning(ctx, target, a.Replicas, 0)
	if err != nil {
		fail("target pods: %v", err)
		return errs
	}
	byName := map[string]*Pod{}
	for _, p := range targets {
		byName[p.Name] = p
	}
	var latestStart time.Time
	var highest uint64
	for i, src := range obs.Sources {
		p := byName[src.Name]
		if p == nil {
			fail("no target pod %s", src.Name)
			continue
		}
		c, err := RestoredCounter(p)
		if err != nil || c == 0 {
			fail("target pod %s did not restore a checkpoint (counter %d, %v)", p.Name, c, err)
			continue
		}
		highest = max(highest, c)
		if f, ok := obs.FrozenCounter(i); !ok || c < f || c > f+1 {
			fail("target pod %s resumed from counter %d; its source was frozen at %d (seen: %v)", p.Name, c, f, ok)
		}
		if out, err := e.VerifyFrozen(ctx, p); err != nil {
			fail("target pod %s memory and log: %v", p.Name, err)
		} else {
			e.Logf("%s resumed at counter %d in %s: %s", p.Name, c, target, out)
		}
		srcLog, err := os.ReadFile(src.LogPath())
		if err != nil {
			fail("source log of %s: %v", src.Name, err)
		} else if tgtLog, err := os.ReadFile(p.LogPath()); err != nil {
			fail("target log of %s: %v", p.Name, err)
		} else if !bytes.HasPrefix(tgtLog, srcLog) {
			fail("the log of %s does not continue its source's (%d and %d bytes)", p.Name, len(tgtLog), len(srcLog))
		}
		if started, err := p.Started(); err == nil && started.After(latestStart) {
			latestStart = started
		}
	}
	if _, err := a.WaitAllRunning(ctx, target, a.Replicas, highest+100); err != nil {
		fail("the target pods do not go on counting: %v", err)
	}
	if err := obs.CheckNeverTwoRunning(latestStart); err != nil {
		fail("invariant 1: %v", err)
	}
	if err := obs.CheckSourceFrozenUntilTarget(latestStart); err != nil {
		fail("invariant 1: %v", err)
	}
	if left, _, _ := a.runningPods(ctx, a.Source); len(left) > 0 {
		fail("%d pods of the workload still run in %s", len(left), a.Source)
	}
	rb := &workv1alpha2.ResourceBinding{}
	if err := e.Karmada.CR.Get(ctx, client.ObjectKey{Namespace: a.Namespace, Name: a.BindingName()}, rb); err != nil {
		fail("binding: %v", err)
	} else if len(rb.Spec.Clusters) != 1 || rb.Spec.Clusters[0].Name != target || len(rb.Spec.GracefulEvictionTasks) != 0 {
		fail("binding clusters %v, eviction tasks %d; want only %s and none", rb.Spec.Clusters, len(rb.Spec.GracefulEvictionTasks), target)
	}
	if st.Downtime == nil || st.Downtime.Duration <= 0 || st.TargetReadyAt == nil {
		fail("downtime not recorded: %v", st.Downtime)
	} else if err := obs.CheckFrozenAt(st.TargetReadyAt.Time); err != nil {
		fail("invariant 1: %v", err)
	}
	return errs
}

// WaitReceiverNotReady waits until a Target VolumeReplication of the app's
// namespace in a member reports ReceiverReady=False with the given reason,
// and returns its condition message.
func (a *App) WaitReceiverNotReady(ctx context.Context, cluster, reason string) (string, error) {
	var msg string
	err := poll(ctx, "a receiver reporting "+reason, func() (bool, string, error) {
		var list agentv1alpha1.VolumeReplicationList
		if err := a.Env.Members[cluster].CR.List(ctx, &list, client.InNamespace(a.Namespace)); err != nil {
			return false, err.Error(), nil
		}
		for _, vr := range list.Items {
			if vr.Spec.Role != agentv1alpha1.ReplicationRoleTarget {
				continue
			}
			if c := meta.FindStatusCondition(vr.Status.Conditions, agentv1alpha1.ConditionReceiverReady); c != nil && c.Status == metav1.ConditionFalse && c.Reason == reason {
				msg = c.Message
				return true, "", nil
			}
		}
		return false, fmt.Sprintf("%d replications, none reporting %s", len(list.Items), reason), nil
	})
	return msg, err
}

// MigrationWarnings returns the messages of the warning events recorded on
// a LiveMigration.
func (e *Env) MigrationWarnings(ctx context.Context, lm *lmv1alpha1.LiveMigration) ([]string, error) {
	list, err := e.Karmada.Client.EventsV1().Events(lm.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	var out []string
	for _, ev := range list.Items {
		if ev.Type == corev1.EventTypeWarning && ev.Regarding.Kind == "LiveMigration" && ev.Regarding.Name == lm.Name {
			out = append(out, ev.Note)
		}
	}
	// A recorder of the core API writes them there.
	core, err := e.Karmada.Client.CoreV1().Events(lm.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	for _, ev := range core.Items {
		if ev.Type == corev1.EventTypeWarning && ev.InvolvedObject.Kind == "LiveMigration" && ev.InvolvedObject.Name == lm.Name {
			out = append(out, ev.Message)
		}
	}
	return out, nil
}

// TargetCopiesLeft lists the directories under the lab's target volume
// root provisioned for the app's namespace (every member's agents share
// that root in the lab).
func (a *App) TargetCopiesLeft() ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(a.Env.Paths.VolumeRoot(), a.Namespace))
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out, nil
}
