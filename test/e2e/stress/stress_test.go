package stress

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"

	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
	"github.com/livemigrate/livemigrate/test/e2e/migration/scenario"
	"github.com/livemigrate/livemigrate/test/lab"
)

// EnvMigrations is how many migrations TestConcurrentMigrations runs at
// once: 4 by default (make test), 12 under make test-faults.
const EnvMigrations = "LIVEMIGRATE_STRESS_MIGRATIONS"

// abortIn is the phase each aborted migration is aborted in, by index:
// every fourth migration (the 4th, 8th, 12th) is aborted, in turn once
// seen in Transfer, PreCopy and Checkpointing (the source frozen).
var abortIn = []lmv1alpha1.LiveMigrationPhase{lmv1alpha1.PhaseTransfer, lmv1alpha1.PhasePreCopy, lmv1alpha1.PhaseCheckpointing}

// run is one migration of the test.
type run struct {
	i        int
	env      *scenario.Env
	app      *scenario.App
	from, to string
	name     string
	abort    lmv1alpha1.LiveMigrationPhase
	obs      *scenario.Observation
	aborted  bool
	abortOut string
	err      error
}

// TestConcurrentMigrations starts N live migrations of N StatefulSets of
// the lab app at once across the three members (app i moves from member
// i%3+1 to the next), with the descheduler's budget at perCluster
// migrations per member; every fourth one is aborted midway with kubectl
// livemigrate abort. Every migration must end Succeeded with every
// invariant held, or Failed after a clean rollback (an abort that came
// after Cleanup began is refused and the migration succeeds); the budget
// is never exceeded, checked from the phase-transition timestamps (a
// migration holds its slot from Planning until Succeeded or Failed); with
// more migrations than slots some of them waited in Pending; nothing is
// left in the other cluster of any migration. The invariant monitor
// watches throughout.
func TestConcurrentMigrations(t *testing.T) {
	n := 4
	if v := os.Getenv(EnvMigrations); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 || n > 30 {
			t.Fatalf("%s=%q: write a number of migrations from 1 to 30", EnvMigrations, v)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	// Each migration gets an environment of its own: a LogWriter serves
	// one command at a time.
	newEnv := func(prefix string) *scenario.Env {
		out := &scenario.LogWriter{Log: func(args ...any) { t.Log(append([]any{prefix}, args...)...) }}
		env, err := scenario.FromLab(testLab, binDir(t), out, func(format string, args ...any) { t.Logf(prefix+" "+format, args...) })
		if err != nil {
			t.Fatal(err)
		}
		return env
	}
	env := newEnv("")
	members := env.MemberNames()
	runs := make([]*run, n)
	for i := range runs {
		r := &run{i: i, env: newEnv(fmt.Sprintf("app %d:", i)), from: members[i%len(members)], to: members[(i+1)%len(members)], name: fmt.Sprintf("app%d-move", i)}
		if i%4 == 3 {
			r.abort = abortIn[(i/4)%len(abortIn)]
		}
		runs[i] = r
	}

	// Deploy every app (a few at a time) and let each write for a while.
	var wg sync.WaitGroup
	sem := make(chan struct{}, 4)
	for _, r := range runs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			ns := fmt.Sprintf("stress-%d", r.i)
			if r.app, r.err = r.env.Deploy(ctx, ns, "app", scenario.AppOptions{Cluster: r.from}); r.err != nil {
				return
			}
			_, r.err = r.app.WaitRunning(ctx, r.from, 200)
		}()
	}
	wg.Wait()
	for _, r := range runs {
		if r.err != nil {
			t.Fatalf("deploying app %d in %s: %v", r.i, r.from, r.err)
		}
	}
	defer func() {
		for _, r := range runs {
			if err := r.app.Delete(context.Background()); err != nil {
				t.Logf("deleting app %d: %v", r.i, err)
			}
		}
	}()

	// All at once.
	start := time.Now()
	for _, r := range runs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A loaded machine (every migration at once) estimates long
			// downtimes; the budget is not what is tested here.
			o := scenario.MoveOptions{To: r.to, Name: r.name, Args: []string{"--downtime-budget=1m"}}
			if r.abort != "" {
				o.DuringPhase = r.abort
				o.During = func(ctx context.Context, lm *lmv1alpha1.LiveMigration) error {
					r.aborted = true
					b, err := exec.CommandContext(ctx, filepath.Join(binDir(t), "kubectl-livemigrate"),
						"--kubeconfig="+r.env.Karmada.Kubeconfig, "-n", lm.Namespace, "abort", lm.Name).CombinedOutput()
					r.abortOut = strings.TrimSpace(string(b))
					if err != nil {
						// Only a migration already past the point of no return refuses.
						r.abortOut += " (" + err.Error() + ")"
					}
					return nil
				}
			}
			r.obs, r.err = r.app.Move(ctx, o)
		}()
	}
	wg.Wait()
	t.Logf("%d migrations ended %s after they were started", n, time.Since(start).Round(time.Millisecond))

	var problems []error
	fail := func(r *run, err error) {
		problems = append(problems, fmt.Errorf("app %d (%s → %s): %w", r.i, r.from, r.to, err))
	}
	succeeded, failed, waited := 0, 0, 0
	for _, r := range runs {
		if r.err != nil {
			fail(r, r.err)
			continue
		}
		lm := r.obs.Migration
		t.Logf("app %d: %s\n%s", r.i, abortNote(r), scenario.Timeline(lm))
		// The Admitted condition says Admitted once admitted; a wait shows
		// as a Pending much longer than a reconcile.
		if c := meta.FindStatusCondition(lm.Status.Conditions, lmv1alpha1.ConditionAdmitted); (c != nil && c.Reason == "ConcurrencyLimit") || pendingFor(lm) > 4*lab.DeschedulerPollInterval {
			waited++
		}
		switch lm.Status.Phase {
		case lmv1alpha1.PhaseSucceeded:
			succeeded++
			if r.aborted && !strings.Contains(r.abortOut, "Cleanup") && !strings.Contains(r.abortOut, "already") {
				fail(r, fmt.Errorf("aborted in %s (%s) but Succeeded", r.abort, r.abortOut))
			}
			_, errs := r.env.CheckSucceeded(ctx, r.app, r.obs)
			for _, e := range errs {
				fail(r, e)
			}
		case lmv1alpha1.PhaseFailed:
			failed++
			if !r.aborted {
				fail(r, fmt.Errorf("failed without an abort: %+v", lm.Status.Failure))
			}
			for _, e := range r.env.CheckRolledBack(ctx, r.app, r.obs, r.to) {
				fail(r, e)
			}
		default:
			fail(r, fmt.Errorf("ended in %q", lm.Status.Phase))
		}
	}
	t.Logf("%d succeeded, %d failed after an abort; %d waited for the budget", succeeded, failed, waited)
	if peak, err := checkBudget(runs, perCluster); err != nil {
		problems = append(problems, err)
	} else {
		t.Logf("at most %d admitted migrations involved one member at once (budget %d per member)", peak, perCluster)
	}
	if slots := len(members) * perCluster / 2; n > slots && waited == 0 {
		problems = append(problems, fmt.Errorf("%d migrations over %d slots and none waited in Pending: the budget was not exercised", n, slots))
	}
	if len(problems) > 0 {
		t.Fatalf("%d problems:\n%v", len(problems), errors.Join(problems...))
	}
}

func abortNote(r *run) string {
	switch {
	case r.abort == "":
		return "not aborted"
	case !r.aborted:
		return "to be aborted in " + string(r.abort) + ", never seen there"
	}
	return fmt.Sprintf("aborted once seen in %s: %s", r.abort, r.abortOut)
}

// pendingFor is how long the migration waited in Pending.
func pendingFor(lm *lmv1alpha1.LiveMigration) time.Duration {
	var pending, planning time.Time
	for _, pt := range lm.Status.PhaseTransitions {
		switch pt.Phase {
		case lmv1alpha1.PhasePending:
			pending = pt.EnteredAt.Time
		case lmv1alpha1.PhasePlanning:
			planning = pt.EnteredAt.Time
		}
	}
	if pending.IsZero() || planning.IsZero() {
		return 0
	}
	return planning.Sub(pending)
}

// slot is the time a migration held the budget of its clusters: from
// entering Planning (admitted) until it entered Succeeded or Failed.
type slot struct {
	name       string
	clusters   []string
	start, end time.Time
}

// checkBudget checks, from the migrations' phase transitions, that no
// member was ever part of more than limit admitted migrations at once, and
// returns the most it was part of.
func checkBudget(runs []*run, limit int) (int, error) {
	var slots []slot
	for _, r := range runs {
		if r.obs == nil || r.obs.Migration == nil {
			continue
		}
		lm := r.obs.Migration
		s := slot{name: lm.Namespace + "/" + lm.Name, clusters: []string{lm.Status.SourceCluster, lm.Status.TargetCluster}}
		for _, pt := range lm.Status.PhaseTransitions {
			switch {
			case pt.Phase == lmv1alpha1.PhasePlanning:
				s.start = pt.EnteredAt.Time
			case pt.Phase.IsTerminal():
				s.end = pt.EnteredAt.Time
			}
		}
		if s.start.IsZero() || s.end.IsZero() {
			return 0, fmt.Errorf("%s: no Planning or no end in its phase transitions", s.name)
		}
		slots = append(slots, s)
	}
	// Sweep every admission instant: the slots of a cluster open then.
	peak := 0
	for _, at := range slots {
		for _, c := range at.clusters {
			var holders []string
			for _, s := range slots {
				if !s.start.After(at.start) && s.end.After(at.start) && (s.clusters[0] == c || s.clusters[1] == c) {
					holders = append(holders, s.name)
				}
			}
			peak = max(peak, len(holders))
			if len(holders) > limit {
				sort.Strings(holders)
				return peak, fmt.Errorf("at %s, when %s was admitted, %d migrations involved %s (limit %d): %s",
					at.start.Format("15:04:05.000000"), at.name, len(holders), c, limit, strings.Join(holders, ", "))
			}
		}
	}
	return peak, nil
}

func binDir(t *testing.T) string {
	t.Helper()
	root, err := lab.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(root, "bin")
}
