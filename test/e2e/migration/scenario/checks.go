package scenario

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/controller-runtime/pkg/client"

	workv1alpha2 "github.com/karmada-io/karmada/pkg/apis/work/v1alpha2"

	agentv1alpha1 "github.com/livemigrate/livemigrate/api/agent/v1alpha1"
	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
	"github.com/livemigrate/livemigrate/test/labapp/labstate"
)

// labelMigrationUID is on every object written for a migration.
const labelMigrationUID = "livemigrate.io/migration-uid"

// Result is a verified migration.
type Result struct {
	Observation *Observation
	Target      *Pod
	// RestoredFrom is the counter the target resumed from; SourceLast the
	// last value the source ever logged.
	RestoredFrom, SourceLast uint64
	// Verified is labapp verify's report on the target.
	Verified string
}

// CheckSucceeded checks a successful migration against the invariants:
// the target runs from the checkpoint and goes on, its memory and its log
// agree (labapp verify), the log is the source's continued without a gap
// or a repeat, the source stayed frozen until the target ran and is gone,
// never two running copies, the binding points at the target and the
// downtime is in status. It returns every violation.
func (e *Env) CheckSucceeded(ctx context.Context, a *App, obs *Observation) (*Result, []error) {
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	lm := obs.Migration
	st := lm.Status
	if obs.Err != nil || st.Phase != lmv1alpha1.PhaseSucceeded {
		fail("migration %s ended in %q (kubectl: %v), failure %+v", lm.Name, st.Phase, obs.Err, st.Failure)
		return nil, errs
	}
	res := &Result{Observation: obs}
	target := st.TargetCluster
	// The target runs and goes on from where the source stopped.
	p, err := a.WaitRunning(ctx, target, 0)
	if err != nil {
		fail("target pod: %v", err)
		return res, errs
	}
	res.Target = p
	if res.RestoredFrom, err = RestoredCounter(p); err != nil {
		fail("target start: %v", err)
	}
	if _, err := a.WaitRunning(ctx, target, res.RestoredFrom+100); err != nil {
		fail("the target does not go on counting from %d: %v", res.RestoredFrom, err)
	}
	if res.RestoredFrom == 0 {
		fail("the target started from counter 0, not from the checkpoint")
	}
	// Nothing lost: memory and log agree, 1..n, n past the checkpoint.
	if res.Verified, err = e.VerifyFrozen(ctx, p); err != nil {
		fail("target memory and log: %v", err)
	}
	// The source never logged past the checkpoint (an in-flight tick is
	// finished by the restore), and its log is where the target's began.
	srcLog, err := os.ReadFile(obs.Source.LogPath())
	if err != nil {
		fail("source log: %v", err)
	}
	if res.SourceLast, err = labstate.LastLogged(obs.Source.LogPath()); err != nil {
		fail("source log: %v", err)
	}
	if res.SourceLast > res.RestoredFrom+1 {
		fail("the source logged %d after the checkpoint at %d: two copies ran", res.SourceLast, res.RestoredFrom)
	}
	if tgtLog, err := os.ReadFile(p.LogPath()); err != nil {
		fail("target log: %v", err)
	} else if !bytes.HasPrefix(tgtLog, srcLog) {
		fail("the target's log does not continue the source's (%d and %d bytes)", len(tgtLog), len(srcLog))
	}
	if started, err := p.Started(); err != nil {
		fail("target start time: %v", err)
	} else {
		if err := obs.CheckNeverTwoRunning(started); err != nil {
			fail("invariant 1: %v", err)
		}
		if err := obs.CheckSourceFrozenUntilTarget(started); err != nil {
			fail("invariant 1: %v", err)
		}
	}
	// No copy left in the source.
	if q, why, _ := a.findRunning(ctx, a.Source); q != nil {
		fail("a pod of the workload still runs in %s", a.Source)
	} else if why != "no pod" {
		if _, err := e.Members[a.Source].Client.CoreV1().Pods(a.Namespace).Get(ctx, a.Name+"-0", metav1.GetOptions{}); err == nil {
			fail("the source pod is still in %s (%s)", a.Source, why)
		}
	}
	rb := &workv1alpha2.ResourceBinding{}
	if err := e.Karmada.CR.Get(ctx, client.ObjectKey{Namespace: a.Namespace, Name: a.BindingName()}, rb); err != nil {
		fail("binding: %v", err)
	} else if len(rb.Spec.Clusters) != 1 || rb.Spec.Clusters[0].Name != target || len(rb.Spec.GracefulEvictionTasks) != 0 {
		fail("binding clusters %v, eviction tasks %d; want only %s and none", rb.Spec.Clusters, len(rb.Spec.GracefulEvictionTasks), target)
	}
	if st.Downtime == nil || st.Downtime.Duration <= 0 || st.FrozenAt == nil || st.TargetReadyAt == nil || !st.TargetReadyAt.After(st.FrozenAt.Time) {
		fail("downtime not recorded: downtime %v, frozenAt %v, targetReadyAt %v", st.Downtime, st.FrozenAt, st.TargetReadyAt)
	} else if err := obs.CheckFrozenAt(st.TargetReadyAt.Time); err != nil {
		fail("invariant 1: %v", err)
	}
	if err := e.CheckNoCredentialsLeft(ctx, string(lm.UID), a.Source, target); err != nil {
		fail("%v", err)
	}
	return res, errs
}

// CheckNoCredentialsLeft looks, in every namespace of the clusters, for a
// Secret labelled with the migration's UID (its replication credentials,
// which Cleanup deletes).
func (e *Env) CheckNoCredentialsLeft(ctx context.Context, uid string, clusters ...string) error {
	var left []string
	for _, name := range clusters {
		list, err := e.Members[name].Client.CoreV1().Secrets("").List(ctx, metav1.ListOptions{LabelSelector: labelMigrationUID + "=" + uid})
		if err != nil {
			return fmt.Errorf("listing Secrets in %s: %w", name, err)
		}
		for _, s := range list.Items {
			left = append(left, name+": "+s.Namespace+"/"+s.Name)
		}
	}
	if len(left) > 0 {
		return fmt.Errorf("replication credentials left after the migration: %s", strings.Join(left, ", "))
	}
	return nil
}

// CheckRolledBack checks a failed migration: Failed with a reason, the
// source pod thawed (the same process) and counting on with memory and log
// agreeing, and nothing of the migration left in the target.
func (e *Env) CheckRolledBack(ctx context.Context, a *App, obs *Observation, target string) []error {
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	st := obs.Migration.Status
	if st.Phase != lmv1alpha1.PhaseFailed || st.Failure == nil || st.Failure.Reason == "" {
		fail("migration ended in %q with failure %+v; want Failed with a reason", st.Phase, st.Failure)
	}
	if obs.Err == nil {
		fail("kubectl livemigrate move --wait succeeded on a failed migration")
	}
	before, err := obs.Source.Counter()
	if err != nil {
		fail("the source process is gone after the rollback: %v", err)
		return errs
	}
	p, err := a.WaitRunning(ctx, a.Source, before+100)
	if err != nil {
		fail("the source does not run on after the rollback: %v", err)
		return errs
	}
	if p.Layout.PID != obs.Source.Layout.PID {
		fail("the source runs as pid %d, not the original %d: it was restarted, not thawed", p.Layout.PID, obs.Source.Layout.PID)
	}
	if out, err := e.VerifyFrozen(ctx, p); err != nil {
		fail("source memory and log after the rollback: %v", err)
	} else {
		e.Logf("source after rollback: %s", out)
	}
	if err := obs.CheckNeverTwoRunning(time.Time{}); err != nil {
		fail("invariant 1: %v", err)
	}
	if err := e.CheckNothingLeft(ctx, a, target, string(obs.Migration.UID)); err != nil {
		fail("%v", err)
	}
	if err := e.CheckNoCredentialsLeft(ctx, string(obs.Migration.UID), a.Source); err != nil {
		fail("%v", err)
	}
	rb := &workv1alpha2.ResourceBinding{}
	if err := e.Karmada.CR.Get(ctx, client.ObjectKey{Namespace: a.Namespace, Name: a.BindingName()}, rb); err != nil {
		fail("binding: %v", err)
	} else if len(rb.Spec.Clusters) != 1 || rb.Spec.Clusters[0].Name != a.Source || len(rb.Spec.GracefulEvictionTasks) != 0 {
		fail("binding clusters %v, eviction tasks %d; want only %s and none", rb.Spec.Clusters, len(rb.Spec.GracefulEvictionTasks), a.Source)
	}
	return errs
}

// CheckNothingLeft looks for anything of the workload or of the migration
// in a cluster: its pod and StatefulSet, its claim, and every object
// labelled with the migration's UID.
func (e *Env) CheckNothingLeft(ctx context.Context, a *App, cluster, uid string) error {
	m := e.Members[cluster]
	var left []string
	if _, err := m.Client.CoreV1().Pods(a.Namespace).Get(ctx, a.Name+"-0", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		left = append(left, "pod "+a.Name+"-0")
	}
	if _, err := m.Client.AppsV1().StatefulSets(a.Namespace).Get(ctx, a.Name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		left = append(left, "statefulset "+a.Name)
	}
	if _, err := m.Client.CoreV1().PersistentVolumeClaims(a.Namespace).Get(ctx, "data-"+a.Name+"-0", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		left = append(left, "claim data-"+a.Name+"-0")
	}
	dyn, err := dynamic.NewForConfig(m.Config)
	if err != nil {
		return err
	}
	sel := metav1.ListOptions{LabelSelector: labelMigrationUID + "=" + uid}
	for _, gvr := range []schema.GroupVersionResource{
		{Version: "v1", Resource: "persistentvolumes"},
		{Version: "v1", Resource: "secrets"},
		{Group: "agent.livemigrate.io", Version: "v1alpha1", Resource: "podrestores"},
		{Group: "agent.livemigrate.io", Version: "v1alpha1", Resource: "volumereplications"},
		{Group: "agent.livemigrate.io", Version: "v1alpha1", Resource: "podcheckpoints"},
	} {
		list, err := dyn.Resource(gvr).List(ctx, sel)
		if err != nil {
			return fmt.Errorf("listing %s in %s: %w", gvr.Resource, cluster, err)
		}
		for _, it := range list.Items {
			left = append(left, gvr.Resource+" "+it.GetName())
		}
	}
	if len(left) > 0 {
		return fmt.Errorf("left in %s: %s", cluster, strings.Join(left, ", "))
	}
	return nil
}

// Timeline renders a migration's phases with their durations, the bytes
// moved and the downtime, from its status.
func Timeline(lm *lmv1alpha1.LiveMigration) string {
	var b bytes.Buffer
	st := lm.Status
	fmt.Fprintf(&b, "LiveMigration %s/%s: %s → %s, %s\n", lm.Namespace, lm.Name, st.SourceCluster, st.TargetCluster, st.Phase)
	w := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "  PHASE\tENTERED\tDURATION")
	for i, t := range st.PhaseTransitions {
		d := "-"
		if i+1 < len(st.PhaseTransitions) {
			d = st.PhaseTransitions[i+1].EnteredAt.Sub(t.EnteredAt.Time).Round(time.Millisecond).String()
		}
		fmt.Fprintf(w, "  %s\t%s\t%s\n", t.Phase, t.EnteredAt.Format("15:04:05.000"), d)
	}
	_ = w.Flush()
	fmt.Fprintf(&b, "  bytes: memory %s, volume pre-copy %s, final delta %s\n",
		human(st.Bytes.Memory), human(st.Bytes.VolumePreCopy), human(st.Bytes.FinalDelta))
	for _, v := range st.Volumes {
		fmt.Fprintf(&b, "  volume %s: %d pre-copy rounds, last delta %s\n", v.ClaimName, v.Rounds, human(v.LastDeltaBytes))
	}
	if st.EstimatedDowntime != nil {
		fmt.Fprintf(&b, "  estimated downtime %s\n", st.EstimatedDowntime.Duration)
	}
	if st.Downtime != nil {
		fmt.Fprintf(&b, "  downtime (frozen → target Ready) %s\n", st.Downtime.Round(time.Millisecond))
	}
	if st.Failure != nil {
		fmt.Fprintf(&b, "  failure in %s: %s: %s\n", st.Failure.Phase, st.Failure.Reason, st.Failure.Message)
	}
	return b.String()
}

func human(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// CheckFrozenAt checks that every source was alive and frozen in the last
// sample before t (the target's Ready time in status): the source is kept,
// frozen, until the target is confirmed running.
func (o *Observation) CheckFrozenAt(t time.Time) error {
	for i, series := range o.PerSource {
		var last *Sample
		for j := range series {
			if series[j].At.Before(t) {
				last = &series[j]
			}
		}
		if last == nil {
			return fmt.Errorf("source %s: no sample before %s", o.Sources[i].Name, t.Format(time.RFC3339Nano))
		}
		if !last.SourceAlive || last.SourceState != "FROZEN" {
			return fmt.Errorf("source %s was alive=%v %s at %s, just before the target was Ready at %s",
				o.Sources[i].Name, last.SourceAlive, last.SourceState, last.At.Format(time.RFC3339Nano), t.Format(time.RFC3339Nano))
		}
	}
	return nil
}

// CheckDeploymentSucceeded checks a successful migration of a Deployment
// whose lab apps keep their state in memory only (no log, so memory is
// checked against itself): every source pod's checkpoint is restored by exactly
// one target pod, which resumes from the counter its source was frozen at
// with a consistent memory region and goes on counting; no source counted
// after its freeze or while a target ran, each stayed frozen until the
// targets ran and is gone; the binding points at the target and the
// downtime is in status.
func (e *Env) CheckDeploymentSucceeded(ctx context.Context, a *App, obs *Observation) []error {
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	lm := obs.Migration
	st := lm.Status
	if obs.Err != nil || st.Phase != lmv1alpha1.PhaseSucceeded {
		fail("migration %s ended in %q (kubectl: %v), failure %+v", lm.Name, st.Phase, obs.Err, st.Failure)
		return errs
	}
	target := st.TargetCluster
	targets, err := a.WaitAllRunning(ctx, target, a.Replicas, 0)
	if err != nil {
		fail("target pods: %v", err)
		return errs
	}
	if len(targets) != a.Replicas {
		fail("%d target pods run, want %d", len(targets), a.Replicas)
	}
	claimed := map[int]string{}
	var latestStart time.Time
	var highest uint64
	for _, p := range targets {
		c, err := RestoredCounter(p)
		if err != nil || c == 0 {
			fail("target pod %s did not restore a checkpoint (counter %d, %v)", p.Name, c, err)
			continue
		}
		if c > highest {
			highest = c
		}
		match := -1
		for i := range obs.Sources {
			if f, ok := obs.FrozenCounter(i); ok && c >= f && c <= f+1 {
				match = i
			}
		}
		switch {
		case match < 0:
			fail("target pod %s resumed from counter %d, which no source was frozen at", p.Name, c)
		case claimed[match] != "":
			fail("target pods %s and %s both restored the checkpoint of %s", claimed[match], p.Name, obs.Sources[match].Name)
		default:
			claimed[match] = p.Name
			e.Logf("%s restored by %s in %s, resuming at counter %d", obs.Sources[match].Name, p.Name, target, c)
			// The invariant monitor follows a replica's checkpoint lineage
			// through this annotation.
			if pod, err := e.Members[target].Client.CoreV1().Pods(a.Namespace).Get(ctx, p.Name, metav1.GetOptions{}); err != nil {
				fail("target pod %s: %v", p.Name, err)
			} else if got := pod.Annotations[agentv1alpha1.AnnotationRestoreCheckpoint]; got != obs.Sources[match].Name {
				fail("target pod %s has %s=%q, want %s, the pod whose checkpoint it restored", p.Name, agentv1alpha1.AnnotationRestoreCheckpoint, got, obs.Sources[match].Name)
			}
		}
		if started, err := p.Started(); err == nil && started.After(latestStart) {
			latestStart = started
		}
		if n, err := e.VerifyRegionFrozen(ctx, p); err != nil {
			fail("target pod %s memory: %v", p.Name, err)
		} else if n < c {
			fail("target pod %s memory at counter %d, below its restored %d", p.Name, n, c)
		}
	}
	if len(claimed) != len(obs.Sources) {
		fail("%d of %d source checkpoints were restored", len(claimed), len(obs.Sources))
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
	} else if len(rb.Spec.Clusters) != 1 || rb.Spec.Clusters[0].Name != target {
		fail("binding clusters %v, want only %s", rb.Spec.Clusters, target)
	}
	if st.Downtime == nil || st.Downtime.Duration <= 0 || st.TargetReadyAt == nil {
		fail("downtime not recorded: %v", st.Downtime)
	} else if err := obs.CheckFrozenAt(st.TargetReadyAt.Time); err != nil {
		fail("invariant 1: %v", err)
	}
	return errs
}

// VerifyRegionFrozen freezes the pod, checks its memory region against its
// own counter (every page holds the value of the last tick that wrote it),
// thaws it and returns the counter.
func (e *Env) VerifyRegionFrozen(ctx context.Context, p *Pod) (uint64, error) {
	state := filepath.Join(freezerMount, p.Cgroup, "freezer.state")
	if err := os.WriteFile(state, []byte("FROZEN"), 0); err != nil {
		return 0, fmt.Errorf("freezing %s: %w", p.Name, err)
	}
	defer func() { _ = os.WriteFile(state, []byte("THAWED"), 0) }()
	if err := poll(ctx, p.Name+" frozen", func() (bool, string, error) {
		st := p.FreezerState()
		return st == "FROZEN", st, nil
	}); err != nil {
		return 0, err
	}
	rc, err := labstate.OpenProcessRegion(p.Layout)
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	region, err := io.ReadAll(rc)
	if err != nil {
		return 0, err
	}
	n, _, err := labstate.VerifyRegion(region)
	return n, err
}
