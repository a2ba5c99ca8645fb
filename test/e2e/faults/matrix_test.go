package faults

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
	"github.com/livemigrate/livemigrate/test/e2e/faults/matrix"
	"github.com/livemigrate/livemigrate/test/e2e/migration/scenario"
	"github.com/livemigrate/livemigrate/test/lab"
)

const (
	// EnvCells selects the cells: empty runs the representative ones
	// (make test), "all" the whole matrix (make test-faults), else a
	// comma-separated list of faults (each with every phase) and cells
	// ("<fault>/<phase>").
	EnvCells = "LIVEMIGRATE_FAULTS"
	// EnvResults, when set, is the file every cell's outcome is appended
	// to (one JSON line, package matrix), which make reliability-table
	// turns into docs/reliability.md's table.
	EnvResults = "LIVEMIGRATE_FAULTS_RESULTS"

	// linkTimeout is every phase timeout of a migration whose WAN link is
	// cut for long: the cut outlasts the phase it hits.
	linkTimeout = 30 * time.Second
	// phaseTimeout is every phase timeout of the other cells: a cell that
	// cannot go on ends within minutes.
	phaseTimeout = 2 * time.Minute
	// briefCut is how long link-cut-brief cuts the link.
	briefCut = 3 * time.Second
)

// representative are the cells make test runs: a controller restarted
// while the source is being frozen, the target's agents restarted while
// they restore, and the WAN cut for a moment while the checkpoint crosses
// it.
var representative = []string{"descheduler/Checkpointing", "target-agent/Restoring", "link-cut-brief/Transfer"}

// selection returns whether a cell runs, from EnvCells.
func selection() (func(string) bool, error) {
	v := strings.TrimSpace(os.Getenv(EnvCells))
	switch v {
	case "":
		return func(k string) bool { return slices.Contains(representative, k) }, nil
	case "all":
		return func(string) bool { return true }, nil
	}
	var want []string
	for _, k := range strings.Split(v, ",") {
		k = strings.TrimSpace(k)
		f, p, cell := strings.Cut(k, "/")
		if !slices.ContainsFunc(matrix.Faults, func(x matrix.Fault) bool { return x.Name == f }) || (cell && !slices.Contains(matrix.Phases, p)) {
			return nil, fmt.Errorf("%s: %q is neither a fault nor a cell: write <fault> or <fault>/<phase>, the fault one of %v and the phase one of %v (or all)", EnvCells, k, faultNames(), matrix.Phases)
		}
		want = append(want, k)
	}
	return func(k string) bool {
		f, _, _ := strings.Cut(k, "/")
		return slices.Contains(want, k) || slices.Contains(want, f)
	}, nil
}

func faultNames() []string {
	var out []string
	for _, f := range matrix.Faults {
		out = append(out, f.Name)
	}
	return out
}

// TestFaultMatrix live-migrates a StatefulSet of the lab app (128Mi of
// memory, a local volume written continuously) from member1 to member2
// once per cell of faults × phases, injecting the fault when the
// migration is observed (watched) in the phase. Every cell must end
// Succeeded with every invariant held (scenario.CheckSucceeded), or Failed
// after a clean rollback: the same source process runs on with memory and
// log agreeing, nothing of the migration left in member2
// (scenario.CheckRolledBack); the invariant monitor watches throughout.
// EnvCells chooses the cells, EnvResults collects their outcomes.
func TestFaultMatrix(t *testing.T) {
	sel, err := selection()
	if err != nil {
		t.Fatal(err)
	}
	ran := 0
	for _, f := range matrix.Faults {
		var phases []string
		for _, p := range matrix.Phases {
			if sel(f.Name + "/" + p) {
				phases = append(phases, p)
			}
		}
		if len(phases) == 0 {
			continue
		}
		t.Run(f.Name, func(t *testing.T) {
			for _, p := range phases {
				ran++
				t.Run(p, func(t *testing.T) { runCell(t, f.Name, p) })
			}
		})
	}
	if ran == 0 {
		t.Fatalf("no cell selected by %s=%q", EnvCells, os.Getenv(EnvCells))
	}
	t.Logf("%d of %d cells ran (%s=all runs every cell: make test-faults)", ran, len(matrix.Faults)*len(matrix.Phases), EnvCells)
}

func runCell(t *testing.T, fault, phase string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	out := &scenario.LogWriter{Log: t.Log}
	env, err := scenario.FromLab(testLab, binDir(t), out, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	ns := "faults-" + fault + "-" + strings.ToLower(phase)
	app, err := env.Deploy(ctx, ns, "app", scenario.AppOptions{Cluster: "member1", Memory: "128Mi"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := app.Delete(context.Background()); err != nil {
			t.Logf("deleting the app: %v", err)
		}
	}()
	src, err := app.WaitRunning(ctx, "member1", 300)
	if err != nil {
		t.Fatal(err)
	}

	monitored := len(testLab.InvariantViolations())
	timeout := phaseTimeout
	if fault == "link-cut-long" {
		timeout = linkTimeout
	}
	inj := &injector{t: t, env: env, ns: ns, fault: fault, phase: lmv1alpha1.LiveMigrationPhase(phase), srcNode: src.Node, timeout: timeout}
	ictx, stopInjector := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); inj.run(ictx) }()
	// The downtime the descheduler estimates from the migrations before
	// (the faults lengthen some) is not what the matrix tests.
	obs, err := app.Move(ctx, scenario.MoveOptions{To: "member2", Name: "app-to-member2", Timeouts: timeouts(timeout),
		DowntimeBudget: &metav1.Duration{Duration: 30 * time.Minute}})
	stopInjector()
	wg.Wait()
	// A fault still on (the link cut, a process down) is undone
	// whatever happened, so that the next cell finds the lab whole.
	inj.undo()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("kubectl livemigrate status --wait took %s\n%s", obs.Duration.Round(time.Millisecond), scenario.Timeline(obs.Migration))

	cell := matrix.Cell{Fault: fault, Phase: phase, Duration: obs.Duration, At: time.Now()}
	st := obs.Migration.Status
	var problems []error
	switch {
	case inj.err != nil:
		problems = append(problems, fmt.Errorf("injecting the fault: %w", inj.err))
		cell.Outcome = matrix.Violation
	case inj.at.IsZero():
		cell.Outcome = matrix.NotInjected
		problems = append(problems, fmt.Errorf("the migration was never observed in %s (it ended %s)", phase, st.Phase))
	default:
		cell.LandedIn = string(phaseAt(obs.Migration, inj.at))
		cell.FaultFor = inj.over.Sub(inj.at)
		if end := terminalAt(obs.Migration); !end.IsZero() {
			cell.Recovery = end.Sub(inj.at)
		}
		t.Logf("%s injected at %s with the migration observed in %s (in %s at that instant), over after %s",
			fault, inj.at.Format("15:04:05.000"), phase, cell.LandedIn, cell.FaultFor.Round(time.Millisecond))
	}
	switch st.Phase {
	case lmv1alpha1.PhaseSucceeded:
		_, errs := env.CheckSucceeded(ctx, app, obs)
		problems = append(problems, errs...)
		if cell.Outcome == "" {
			cell.Outcome = matrix.Succeeded
		}
	case lmv1alpha1.PhaseFailed:
		problems = append(problems, env.CheckRolledBack(ctx, app, obs, "member2")...)
		if st.Failure != nil {
			cell.Reason, cell.FailedIn = st.Failure.Reason, string(st.Failure.Phase)
			t.Logf("failed in %s: %s: %s", st.Failure.Phase, st.Failure.Reason, st.Failure.Message)
		}
		if cell.Outcome == "" {
			cell.Outcome = matrix.RolledBack
		}
	default:
		problems = append(problems, fmt.Errorf("the migration ended in %q, neither Succeeded nor Failed", st.Phase))
	}
	// What the invariant monitor saw during the cell (it fails the package
	// too), given to the cell.
	for _, v := range testLab.InvariantViolations()[monitored:] {
		problems = append(problems, fmt.Errorf("invariant monitor: %s", v))
	}
	if len(problems) > 0 && cell.Outcome != matrix.NotInjected {
		cell.Outcome = matrix.Violation
	}
	for _, p := range problems {
		cell.Problems = append(cell.Problems, p.Error())
	}
	if path := os.Getenv(EnvResults); path != "" {
		if err := matrix.Append(path, cell); err != nil {
			t.Errorf("writing the result: %v", err)
		}
	}
	how := cell.Outcome
	if cell.Reason != "" {
		how += " (" + cell.Reason + " in " + cell.FailedIn + ")"
	}
	t.Logf("cell %s: %s, fault lasted %s, migration ended %s after the injection",
		cell.Key(), how, cell.FaultFor.Round(time.Millisecond), cell.Recovery.Round(time.Millisecond))
	if len(problems) > 0 {
		t.Fatalf("%d problems:\n%v", len(problems), errors.Join(problems...))
	}
}

// timeouts sets every phase timeout of the migration to d.
func timeouts(d time.Duration) *lmv1alpha1.PhaseTimeouts {
	v := &metav1.Duration{Duration: d}
	return &lmv1alpha1.PhaseTimeouts{Planning: v, PreCopy: v, Checkpointing: v, FinalSync: v, Transfer: v, Rebinding: v, Restoring: v, Verifying: v}
}

// phaseAt is the phase the migration was in at t, from its transitions.
func phaseAt(lm *lmv1alpha1.LiveMigration, t time.Time) lmv1alpha1.LiveMigrationPhase {
	var in lmv1alpha1.LiveMigrationPhase
	for _, pt := range lm.Status.PhaseTransitions {
		if !pt.EnteredAt.After(t) {
			in = pt.Phase
		}
	}
	return in
}

// terminalAt is when the migration entered Succeeded or Failed.
func terminalAt(lm *lmv1alpha1.LiveMigration) time.Time {
	for _, pt := range lm.Status.PhaseTransitions {
		if pt.Phase.IsTerminal() {
			return pt.EnteredAt.Time
		}
	}
	return time.Time{}
}

// injector injects a cell's fault when it sees the migration in the phase.
type injector struct {
	t       *testing.T
	env     *scenario.Env
	ns      string
	fault   string
	phase   lmv1alpha1.LiveMigrationPhase
	srcNode string
	timeout time.Duration

	// at is when the fault was injected (zero: never), over when it was
	// undone; err what went wrong.
	at, over time.Time
	err      error

	mu sync.Mutex
	// down are the instances and processes killed and not restarted yet;
	// cut: the link is cut.
	down      []*lab.Instance
	downProcs []string
	cut       bool
}

// run watches the namespace's LiveMigrations and injects the fault once
// one is seen in the phase.
func (in *injector) run(ctx context.Context) {
	lm, err := in.waitPhase(ctx)
	if err != nil || lm == nil {
		if err != nil && ctx.Err() == nil {
			in.err = err
		}
		return
	}
	in.at = time.Now()
	in.t.Logf("injecting %s: the migration is in %s", in.fault, lm.Status.Phase)
	in.err = in.inject(ctx, lm)
	in.over = time.Now()
}

// waitPhase returns the migration once a watch shows it in the phase, nil
// when it ended first.
func (in *injector) waitPhase(ctx context.Context) (*lmv1alpha1.LiveMigration, error) {
	s := runtime.NewScheme()
	if err := lmv1alpha1.AddToScheme(s); err != nil {
		return nil, err
	}
	wc, err := client.NewWithWatch(in.env.Karmada.Config, client.Options{Scheme: s})
	if err != nil {
		return nil, err
	}
	for ctx.Err() == nil {
		w, err := wc.Watch(ctx, &lmv1alpha1.LiveMigrationList{}, client.InNamespace(in.ns))
		if err != nil {
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		for ev := range w.ResultChan() {
			lm, ok := ev.Object.(*lmv1alpha1.LiveMigration)
			if !ok {
				continue
			}
			if lm.Status.Phase == in.phase {
				w.Stop()
				return lm, nil
			}
			if lm.Status.Phase.IsTerminal() {
				w.Stop()
				return nil, nil
			}
		}
		w.Stop()
	}
	return nil, ctx.Err()
}

func (in *injector) inject(ctx context.Context, lm *lmv1alpha1.LiveMigration) error {
	switch in.fault {
	case "descheduler":
		return in.killAndRestart(ctx, "livemigrate-descheduler")
	case "source-agent":
		return in.killAndRestart(ctx, "livemigrate-agent-"+in.srcNode)
	case "target-agent":
		var names []string
		for _, n := range testLab.Member("member2").Nodes {
			names = append(names, "livemigrate-agent-"+n)
		}
		return in.killAndRestart(ctx, names...)
	case "member-apiserver":
		return in.processRestart(ctx, "kube-apiserver-member1")
	case "karmada-apiserver":
		return in.processRestart(ctx, "kube-apiserver-karmada")
	case "karmada-controller-manager":
		return in.processRestart(ctx, "karmada-controller-manager")
	case "link-cut-brief":
		if err := in.cutLink(); err != nil {
			return err
		}
		// The cut's length is the fault itself, not a wait for a state.
		select {
		case <-ctx.Done():
		case <-time.After(briefCut):
		}
		return in.restoreLink()
	case "link-cut-long":
		if err := in.cutLink(); err != nil {
			return err
		}
		// Hold the cut until the migration gave up (rolls back) or ended,
		// or twice the phase timeout passed (a phase that does not cross
		// the link goes on).
		wctx, cancel := context.WithTimeout(ctx, 2*in.timeout)
		defer cancel()
		_ = lab.Poll(wctx, "the migration to roll back or end", 200*time.Millisecond, func(ctx context.Context) (bool, string, error) {
			cur := &lmv1alpha1.LiveMigration{}
			if err := in.env.Karmada.CR.Get(ctx, client.ObjectKeyFromObject(lm), cur); err != nil {
				return false, err.Error(), nil
			}
			p := cur.Status.Phase
			return p == lmv1alpha1.PhaseRollingBack || p.IsTerminal(), string(p), nil
		})
		return in.restoreLink()
	}
	return fmt.Errorf("unknown fault %q", in.fault)
}

func (in *injector) killAndRestart(ctx context.Context, names ...string) error {
	var ins []*lab.Instance
	for _, n := range names {
		x := testLab.Instance(n)
		if x == nil {
			return fmt.Errorf("the lab runs no %s", n)
		}
		ins = append(ins, x)
	}
	for _, x := range ins {
		if err := testLab.Kill(x); err != nil {
			return err
		}
		in.mu.Lock()
		in.down = append(in.down, x)
		in.mu.Unlock()
	}
	for len(ins) > 0 {
		if err := testLab.Restart(ctx, ins[0]); err != nil {
			return fmt.Errorf("restarting %s: %w", ins[0].Name, err)
		}
		in.mu.Lock()
		in.down = slices.DeleteFunc(in.down, func(x *lab.Instance) bool { return x == ins[0] })
		in.mu.Unlock()
		ins = ins[1:]
	}
	return nil
}

func (in *injector) processRestart(ctx context.Context, name string) error {
	if err := testLab.KillProcess(name); err != nil {
		return err
	}
	in.mu.Lock()
	in.downProcs = append(in.downProcs, name)
	in.mu.Unlock()
	if err := testLab.RestartProcess(ctx, name); err != nil {
		return fmt.Errorf("restarting %s: %w", name, err)
	}
	in.mu.Lock()
	in.downProcs = nil
	in.mu.Unlock()
	return nil
}

func (in *injector) cutLink() error {
	if err := testLab.CutLink("member1", "member2"); err != nil {
		return err
	}
	in.mu.Lock()
	in.cut = true
	in.mu.Unlock()
	return nil
}

func (in *injector) restoreLink() error {
	if err := testLab.RestoreLink("member1", "member2"); err != nil {
		return err
	}
	in.mu.Lock()
	in.cut = false
	in.mu.Unlock()
	return nil
}

// undo brings back whatever the fault left down.
func (in *injector) undo() {
	in.mu.Lock()
	down, procs, cut := in.down, in.downProcs, in.cut
	in.down, in.downProcs, in.cut = nil, nil, false
	in.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if cut {
		if err := testLab.RestoreLink("member1", "member2"); err != nil {
			in.t.Errorf("restoring the link: %v", err)
		}
	}
	for _, x := range down {
		if err := testLab.Restart(ctx, x); err != nil {
			in.t.Errorf("restarting %s: %v", x.Name, err)
		}
	}
	for _, p := range procs {
		if err := testLab.RestartProcess(ctx, p); err != nil {
			in.t.Errorf("restarting %s: %v", p, err)
		}
	}
}

func binDir(t *testing.T) string {
	t.Helper()
	root, err := lab.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return root + "/bin"
}
