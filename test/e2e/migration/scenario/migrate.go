package scenario

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
	"github.com/livemigrate/livemigrate/test/labapp/labstate"
)

// Sample is what the observer saw at one instant.
type Sample struct {
	At time.Time
	// SourceAlive and SourceState: the source lab app process and its
	// cgroup's freezer state (Pod.RunState: StateStopped while CRIU holds
	// its threads).
	SourceAlive bool
	SourceState string
	// SourceCounter is the source's committed counter (read from its
	// memory while it is alive): it advances only while the app runs.
	SourceCounter uint64
	// TargetRunning: a lab app of the workload runs, thawed, in the target.
	TargetRunning bool
}

// Observation is the record of one migration.
type Observation struct {
	Migration *lmv1alpha1.LiveMigration
	// Err is kubectl livemigrate's error (a Failed migration exits non-zero).
	Err error
	// Source is the (first) source pod as it ran before the migration;
	// Sources all of them.
	Source  *Pod
	Sources []*Pod
	// Samples of the (first) source and the target, every SampleInterval;
	// PerSource the samples of each source, in the order of Sources.
	Samples   []Sample
	PerSource [][]Sample
	// Duration of kubectl livemigrate move --wait.
	Duration time.Duration
}

// SampleInterval is how often the observer looks at the lab app processes.
const SampleInterval = 10 * time.Millisecond

// MoveOptions are extra arguments of kubectl livemigrate move.
type MoveOptions struct {
	// To is the target cluster; empty lets the descheduler choose.
	To string
	// Name of the LiveMigration.
	Name string
	// Args are further flags (--downtime-budget, --bandwidth-limit, …).
	Args []string
	// Timeouts, when set, are put in the LiveMigration's spec: the
	// scenario then creates it itself (kubectl livemigrate move has no flag
	// for them) and follows it with kubectl livemigrate status --wait.
	Timeouts *lmv1alpha1.PhaseTimeouts
	// DowntimeBudget, with Timeouts, is the LiveMigration's
	// spec.downtimeBudget.
	DowntimeBudget *metav1.Duration
	// During, when set, runs once the migration reached the given phase.
	During      func(ctx context.Context, lm *lmv1alpha1.LiveMigration) error
	DuringPhase lmv1alpha1.LiveMigrationPhase
}

// Move live-migrates the app with `kubectl livemigrate move
// statefulset/<name> --wait`, the plugin's progress going to Env.Out, while
// an observer samples the source and target lab app processes.
func (a *App) Move(ctx context.Context, o MoveOptions) (*Observation, error) {
	srcs, why, err := a.runningPods(ctx, a.Source)
	if err != nil {
		return nil, err
	}
	if len(srcs) != a.Replicas {
		return nil, fmt.Errorf("%d of %d source pods run before the migration: %s", len(srcs), a.Replicas, why)
	}
	obs := &Observation{Source: srcs[0], Sources: srcs}
	// Earlier migrations of the app (a move back, a second attempt) are
	// never taken for this one, however close their creation times.
	earlier, err := a.migrationUIDs(ctx)
	if err != nil {
		return nil, err
	}
	args := []string{"--kubeconfig=" + a.Env.Karmada.Kubeconfig, "-n", a.Namespace, "move", strings.ToLower(a.Kind) + "/" + a.Name, "--wait"}
	if o.To != "" {
		args = append(args, "--to", o.To)
	}
	if o.Name != "" {
		args = append(args, "--name", o.Name)
	}
	args = append(args, o.Args...)
	if o.Timeouts != nil {
		if o.Name == "" || len(o.Args) > 0 {
			return nil, errors.New("a migration with timeouts needs a name and no further flags")
		}
		lm := &lmv1alpha1.LiveMigration{
			ObjectMeta: metav1.ObjectMeta{Namespace: a.Namespace, Name: o.Name},
			Spec: lmv1alpha1.LiveMigrationSpec{
				WorkloadRef:   lmv1alpha1.WorkloadReference{APIVersion: "apps/v1", Kind: a.Kind, Name: a.Name},
				TargetCluster: o.To, Timeouts: o.Timeouts, DowntimeBudget: o.DowntimeBudget,
			},
		}
		if err := a.Env.Karmada.CR.Create(ctx, lm); err != nil {
			return nil, fmt.Errorf("creating LiveMigration %s: %w", o.Name, err)
		}
		args = []string{"--kubeconfig=" + a.Env.Karmada.Kubeconfig, "-n", a.Namespace, "status", o.Name, "--wait"}
	}
	cmd := exec.CommandContext(ctx, a.Env.bin("kubectl-livemigrate"), args...)
	cmd.Stdout, cmd.Stderr = a.Env.Out, a.Env.Out
	fmt.Fprintf(a.Env.Out, "$ kubectl livemigrate %s\n", strings.Join(args[1:], " "))

	octx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		obs.PerSource = a.observe(octx, srcs, o.To)
		obs.Samples = obs.PerSource[0]
	}()
	var duringErr error
	if o.During != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			duringErr = a.during(octx, o, earlier)
		}()
	}
	start := time.Now()
	obs.Err = cmd.Run()
	obs.Duration = time.Since(start)
	stop()
	wg.Wait()
	if duringErr != nil && !errors.Is(duringErr, context.Canceled) {
		return obs, duringErr
	}
	lm, err := a.migration(ctx, earlier)
	if err != nil {
		return obs, err
	}
	obs.Migration = lm
	return obs, nil
}

// during waits for the migration to reach o.DuringPhase and runs o.During.
func (a *App) during(ctx context.Context, o MoveOptions, earlier map[types.UID]bool) error {
	var lm *lmv1alpha1.LiveMigration
	if err := poll(ctx, "the migration to reach "+string(o.DuringPhase), func() (bool, string, error) {
		var err error
		if lm, err = a.migration(ctx, earlier); err != nil {
			return false, err.Error(), nil
		}
		for _, t := range lm.Status.PhaseTransitions {
			if t.Phase == o.DuringPhase {
				return true, "", nil
			}
		}
		return false, "phase " + string(lm.Status.Phase), nil
	}); err != nil {
		return err
	}
	return o.During(ctx, lm)
}

// migrations lists the LiveMigrations of the app.
func (a *App) migrations(ctx context.Context) ([]lmv1alpha1.LiveMigration, error) {
	var list lmv1alpha1.LiveMigrationList
	if err := a.Env.Karmada.CR.List(ctx, &list, client.InNamespace(a.Namespace)); err != nil {
		return nil, err
	}
	var out []lmv1alpha1.LiveMigration
	for _, lm := range list.Items {
		if lm.Spec.WorkloadRef.Name == a.Name {
			out = append(out, lm)
		}
	}
	return out, nil
}

// migrationUIDs returns the UIDs of the app's LiveMigrations.
func (a *App) migrationUIDs(ctx context.Context) (map[types.UID]bool, error) {
	list, err := a.migrations(ctx)
	if err != nil {
		return nil, err
	}
	uids := make(map[types.UID]bool, len(list))
	for _, lm := range list {
		uids[lm.UID] = true
	}
	return uids, nil
}

// migration returns the newest LiveMigration of the app that is not one of
// earlier.
func (a *App) migration(ctx context.Context, earlier map[types.UID]bool) (*lmv1alpha1.LiveMigration, error) {
	list, err := a.migrations(ctx)
	if err != nil {
		return nil, err
	}
	var out *lmv1alpha1.LiveMigration
	for i := range list {
		lm := &list[i]
		if earlier[lm.UID] {
			continue
		}
		if out == nil || lm.CreationTimestamp.After(out.CreationTimestamp.Time) ||
			(lm.CreationTimestamp.Equal(&out.CreationTimestamp) && lm.Name > out.Name) {
			out = lm
		}
	}
	if out == nil {
		return nil, fmt.Errorf("no LiveMigration of %s in %s created by this move", a.Name, a.Namespace)
	}
	return out, nil
}

// observe samples the source processes and, in every other member (or in
// target), whether a lab app of the workload runs thawed.
func (a *App) observe(ctx context.Context, srcs []*Pod, target string) [][]Sample {
	out := make([][]Sample, len(srcs))
	var targets []string
	for _, n := range a.Env.MemberNames() {
		if n != a.Source && (target == "" || n == target) {
			targets = append(targets, n)
		}
	}
	t := time.NewTicker(SampleInterval)
	defer t.Stop()
	lastTargetCheck := time.Time{}
	targetRunning := false
	for {
		// The target is looked up through its apiserver, less often.
		if time.Since(lastTargetCheck) >= 5*SampleInterval {
			lastTargetCheck = time.Now()
			targetRunning = false
			for _, n := range targets {
				pods, _, _ := a.runningPods(ctx, n)
				for _, p := range pods {
					if p.FreezerState() == "THAWED" {
						targetRunning = true
					}
				}
			}
		}
		for i, src := range srcs {
			s := Sample{At: time.Now(), SourceAlive: src.Alive(), SourceState: src.RunState(), TargetRunning: targetRunning}
			if s.SourceAlive {
				if c, err := src.Counter(); err == nil {
					s.SourceCounter = c
				} else {
					s.SourceAlive = false // it exited between the two looks
				}
			}
			out[i] = append(out[i], s)
		}
		select {
		case <-ctx.Done():
			return out
		case <-t.C:
		}
	}
}

// FrozenCounter is the counter a source was frozen at: its counter in the
// first sample showing it frozen.
func (o *Observation) FrozenCounter(i int) (uint64, bool) {
	for _, s := range o.PerSource[i] {
		if s.SourceAlive && s.SourceState == "FROZEN" {
			return s.SourceCounter, true
		}
	}
	return 0, false
}

// CheckNeverTwoRunning checks invariant 1 on the samples: the source's
// counter never advanced while the target ran (seen running, or from
// targetStart on when it is known). A source being killed is thawed by the
// runtime so that SIGKILL takes effect; it no longer counts, so "running"
// means counting, not merely thawed.
func (o *Observation) CheckNeverTwoRunning(targetStart time.Time) error {
	for i, series := range o.PerSource {
		if err := neverTwoRunning(series, targetStart); err != nil {
			return fmt.Errorf("source %s: %w", o.Sources[i].Name, err)
		}
	}
	return nil
}

func neverTwoRunning(samples []Sample, targetStart time.Time) error {
	var prev *Sample
	for i := range samples {
		s := &samples[i]
		targetUp := s.TargetRunning || (!targetStart.IsZero() && !s.At.Before(targetStart))
		if prev != nil && s.SourceAlive && s.SourceCounter > prev.SourceCounter && targetUp {
			return fmt.Errorf("the source counted %d → %d at %s while the target ran", prev.SourceCounter, s.SourceCounter, s.At.Format(time.RFC3339Nano))
		}
		if s.SourceAlive {
			prev = s
		}
	}
	return nil
}

// CheckSourceFrozenUntilTarget checks that the source stayed alive and
// frozen from its freeze until the target's lab app started (targetStart,
// when it published its layout), never counted again after its freeze,
// and is gone at the end.
func (o *Observation) CheckSourceFrozenUntilTarget(targetStart time.Time) error {
	for i, series := range o.PerSource {
		if err := frozenUntilTarget(series, o.Sources[i], targetStart); err != nil {
			return fmt.Errorf("source %s: %w", o.Sources[i].Name, err)
		}
	}
	return nil
}

func frozenUntilTarget(samples []Sample, src *Pod, targetStart time.Time) error {
	var frozenAt, goneAt time.Time
	var frozenCounter uint64
	for _, s := range samples {
		if !s.SourceAlive {
			if goneAt.IsZero() {
				goneAt = s.At
			}
			continue
		}
		if s.SourceState == "FROZEN" && frozenAt.IsZero() {
			frozenAt, frozenCounter = s.At, s.SourceCounter
		}
		if frozenAt.IsZero() {
			continue
		}
		if s.SourceState != "FROZEN" && s.SourceState != StateStopped && s.At.Before(targetStart) {
			return fmt.Errorf("the source was %s at %s, after its freeze at %s and before the target started at %s",
				s.SourceState, s.At.Format(time.RFC3339Nano), frozenAt.Format(time.RFC3339Nano), targetStart.Format(time.RFC3339Nano))
		}
		if s.SourceCounter != frozenCounter {
			return fmt.Errorf("the source counted on after its freeze (%d → %d at %s)", frozenCounter, s.SourceCounter, s.At.Format(time.RFC3339Nano))
		}
	}
	if frozenAt.IsZero() {
		return errors.New("the source was never seen frozen")
	}
	if !goneAt.IsZero() && goneAt.Before(targetStart) {
		return fmt.Errorf("the source was gone at %s, before the target started at %s", goneAt.Format(time.RFC3339Nano), targetStart.Format(time.RFC3339Nano))
	}
	if src.Alive() {
		return fmt.Errorf("the source lab app (pid %d) still runs after the migration", src.Layout.PID)
	}
	return nil
}

// Started is when the pod's lab app published its layout, i.e. runs.
func (p *Pod) Started() (time.Time, error) {
	fi, err := os.Stat(filepath.Join(p.StateDir, labstate.LayoutFile))
	if err != nil {
		return time.Time{}, err
	}
	return fi.ModTime(), nil
}

// RestoredCounter reads the counter a restored lab app started from (its
// first output line, "labapp: pid N counter C …").
func RestoredCounter(p *Pod) (uint64, error) {
	f, err := os.Open(p.Output)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		for i := 0; i+1 < len(fields); i++ {
			if fields[i] == "counter" {
				return strconv.ParseUint(fields[i+1], 10, 64)
			}
		}
	}
	return 0, fmt.Errorf("no start line in %s", p.Output)
}

// VerifyFrozen freezes the pod, dumps its memory next to the log and runs
// `labapp verify` (memory and log agree, the log is 1..n with nothing
// skipped or repeated), then thaws it; it returns labapp's report.
func (e *Env) VerifyFrozen(ctx context.Context, p *Pod) (string, error) {
	state := filepath.Join(freezerMount, p.Cgroup, "freezer.state")
	if err := os.WriteFile(state, []byte("FROZEN"), 0); err != nil {
		return "", fmt.Errorf("freezing %s: %w", p.Name, err)
	}
	defer func() { _ = os.WriteFile(state, []byte("THAWED"), 0) }()
	if err := poll(ctx, p.Name+" frozen", func() (bool, string, error) {
		st := p.FreezerState()
		return st == "FROZEN", st, nil
	}); err != nil {
		return "", err
	}
	rc, err := labstate.OpenProcessRegion(p.Layout)
	if err != nil {
		return "", err
	}
	dump, err := os.CreateTemp("", "labapp-dump-")
	if err != nil {
		rc.Close()
		return "", err
	}
	defer os.Remove(dump.Name())
	_, err = io.Copy(dump, rc)
	rc.Close()
	if cerr := dump.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", err
	}
	out, err := exec.CommandContext(ctx, e.bin("labapp"), "verify", "--dump="+dump.Name(), "--log="+p.LogPath()).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("labapp verify: %w: %s", err, out)
	}
	return strings.TrimSpace(string(out)), nil
}
