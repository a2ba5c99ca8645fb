package migration

import (
	"context"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
	"github.com/livemigrate/livemigrate/test/e2e/migration/scenario"
)

func newEnv(t *testing.T) (*scenario.Env, io.Writer) {
	t.Helper()
	out := &scenario.LogWriter{Log: t.Log}
	env, err := scenario.FromLab(testLab, binDir(t), out, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	return env, out
}

func report(t *testing.T, errs []error) {
	t.Helper()
	if len(errs) > 0 {
		t.Fatalf("%d invariant violations:\n%v", len(errs), errors.Join(errs...))
	}
}

// TestStatefulSetMovesToMember2 live-migrates a StatefulSet of the lab app
// with a local volume from member1 to member2 while it writes.
func TestStatefulSetMovesToMember2(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	env, _ := newEnv(t)
	app, err := env.Deploy(ctx, "e2e-sts", "db", scenario.AppOptions{Cluster: "member1"})
	if err != nil {
		t.Fatal(err)
	}
	if app.Source != "member1" {
		t.Fatalf("placed in %s, want member1", app.Source)
	}
	// It has written for a while before it moves.
	if _, err := app.WaitRunning(ctx, "member1", 500); err != nil {
		t.Fatal(err)
	}
	obs, err := app.Move(ctx, scenario.MoveOptions{To: "member2", Name: "db-to-member2"})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("kubectl livemigrate move --wait took %s\n%s", obs.Duration.Round(time.Millisecond), scenario.Timeline(obs.Migration))
	res, errs := env.CheckSucceeded(ctx, app, obs)
	report(t, errs)
	t.Logf("restored from counter %d (the source's last log line: %d); %s", res.RestoredFrom, res.SourceLast, res.Verified)
}

// TestRollbackWhenTheRestoreFails makes the restore fail in two ways:
//
//   - registry: before the source is checkpointed (PreCopy), the registry
//     goes away, so the target can never get the checkpoint: the source is
//     frozen and checkpointed, the workload is rebound and created in
//     the target with its pod held by the restore webhook's scheduling
//     gate, the push never ends, and the migration fails in Transfer (its
//     timeout) with the target pod never run;
//   - webhook: before the target pod is created (Checkpointing, ahead of
//     the rebinding), the target's restore webhook goes away; its failure
//     policy admits the pod unchanged (neither annotated nor gated), so the
//     target would start fresh and never consume the checkpoint. The
//     descheduler sees the pod without the webhook's annotation and fails
//     within seconds of the rebinding (reason RestoreWebhookBypassed), in
//     whichever phase it is then (Rebinding to Restoring: the target
//     workload exists from the rebinding on), long before a phase timeout
//     and before the fresh pod spoils the volume's final sync.
//
// Either way the migration fails in one of the phases given and rolls back:
// Failed with the reason, the source thawed (the same process) with nothing
// lost, nothing of the migration left in member2.
func TestRollbackWhenTheRestoreFails(t *testing.T) {
	cases := []struct {
		name     string
		instance string
		phase    lmv1alpha1.LiveMigrationPhase
		// failIn are the phases the migration may fail in; timeout is the
		// Transfer timeout when it must fail there, else the Restoring one.
		failIn  []lmv1alpha1.LiveMigrationPhase
		timeout time.Duration
		// wantReason, when set, is the failure's reason, reached within
		// failWithin of entering failIn[0].
		wantReason string
		failWithin time.Duration
		// targetMayRun: a target lab app may run (fresh, not restored).
		targetMayRun bool
	}{
		{name: "registry", instance: "lab-registry", phase: lmv1alpha1.PhasePreCopy,
			failIn: []lmv1alpha1.LiveMigrationPhase{lmv1alpha1.PhaseTransfer}, timeout: 15 * time.Second},
		{name: "webhook", instance: "livemigrate-restore-member2", phase: lmv1alpha1.PhaseCheckpointing,
			failIn: []lmv1alpha1.LiveMigrationPhase{lmv1alpha1.PhaseRebinding, lmv1alpha1.PhaseFinalSync,
				lmv1alpha1.PhaseTransfer, lmv1alpha1.PhaseRestoring},
			timeout: 2 * time.Minute, wantReason: "RestoreWebhookBypassed", failWithin: 10 * time.Second, targetMayRun: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			env, _ := newEnv(t)
			app, err := env.Deploy(ctx, "e2e-rollback-"+tc.name, "rb", scenario.AppOptions{Cluster: "member1"})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := app.WaitRunning(ctx, "member1", 300); err != nil {
				t.Fatal(err)
			}
			in := testLab.Instance(tc.instance)
			if in == nil {
				t.Fatalf("the lab runs no %s", tc.instance)
			}
			killed := false
			defer func() {
				if killed {
					if err := testLab.Restart(context.Background(), in); err != nil {
						t.Errorf("restarting %s: %v", tc.instance, err)
					}
				}
			}()
			timeout := metav1.Duration{Duration: tc.timeout}
			timeouts := &lmv1alpha1.PhaseTimeouts{Restoring: &timeout}
			if tc.failIn[0] == lmv1alpha1.PhaseTransfer {
				timeouts = &lmv1alpha1.PhaseTimeouts{Transfer: &timeout}
			}
			obs, err := app.Move(ctx, scenario.MoveOptions{
				To: "member2", Name: "rb-to-member2",
				Timeouts:    timeouts,
				DuringPhase: tc.phase,
				During: func(context.Context, *lmv1alpha1.LiveMigration) error {
					killed = true
					return testLab.Kill(in)
				},
			})
			if err != nil {
				t.Fatal(err)
			}
			if !killed {
				t.Fatalf("%s was never taken away", tc.instance)
			}
			t.Logf("kubectl livemigrate status --wait took %s\n%s", obs.Duration.Round(time.Millisecond), scenario.Timeline(obs.Migration))
			f := obs.Migration.Status.Failure
			if f == nil || !slices.Contains(tc.failIn, f.Phase) {
				t.Errorf("failure = %+v, want one in %v", f, tc.failIn)
			}
			if tc.wantReason != "" && f != nil {
				if f.Reason != tc.wantReason || !strings.Contains(f.Message, "restore webhook did not mutate") {
					t.Errorf("failure = %s: %s; want reason %s saying the restore webhook did not mutate the pod", f.Reason, f.Message, tc.wantReason)
				}
				var fromAt, rollbackAt time.Time
				for _, pt := range obs.Migration.Status.PhaseTransitions {
					switch pt.Phase {
					case tc.failIn[0]:
						fromAt = pt.EnteredAt.Time
					case lmv1alpha1.PhaseRollingBack:
						rollbackAt = pt.EnteredAt.Time
					}
				}
				if d := rollbackAt.Sub(fromAt); fromAt.IsZero() || rollbackAt.IsZero() || d > tc.failWithin {
					t.Errorf("the rollback started %s after %s was entered, want at most %s (timeout %s)", d, tc.failIn[0], tc.failWithin, tc.timeout)
				} else {
					t.Logf("failed in %s, %s after %s was entered (timeout %s)", f.Phase, d.Round(time.Millisecond), tc.failIn[0], tc.timeout)
				}
			}
			for _, s := range obs.Samples {
				if s.TargetRunning {
					if !tc.targetMayRun {
						t.Fatalf("a target lab app ran at %s although its checkpoint could not be pulled", s.At.Format(time.RFC3339Nano))
					}
					t.Logf("a target lab app ran (not restored) from %s", s.At.Format(time.RFC3339Nano))
					break
				}
			}
			report(t, env.CheckRolledBack(ctx, app, obs, "member2"))
		})
	}
}

// TestDeschedulerRestartMidMigration kills the descheduler (SIGKILL) as the
// migration enters a phase and starts it again: the migration resumes from
// its status alone and completes with every invariant held. Checkpointing
// is the moment the source is being frozen; Restoring the moment the
// target workload is being created while the source is frozen.
func TestDeschedulerRestartMidMigration(t *testing.T) {
	for _, phase := range []lmv1alpha1.LiveMigrationPhase{lmv1alpha1.PhasePreCopy, lmv1alpha1.PhaseCheckpointing, lmv1alpha1.PhaseRestoring} {
		t.Run(string(phase), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			env, _ := newEnv(t)
			ns := "e2e-restart-" + strings.ToLower(string(phase))
			app, err := env.Deploy(ctx, ns, "rs", scenario.AppOptions{Cluster: "member1"})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := app.WaitRunning(ctx, "member1", 300); err != nil {
				t.Fatal(err)
			}
			desched := testLab.Instance("livemigrate-descheduler")
			if desched == nil {
				t.Fatal("the lab runs no descheduler")
			}
			killedIn := lmv1alpha1.LiveMigrationPhase("")
			obs, err := app.Move(ctx, scenario.MoveOptions{
				To: "member2", Name: "rs-to-member2",
				DuringPhase: phase,
				During: func(ctx context.Context, lm *lmv1alpha1.LiveMigration) error {
					if err := testLab.Kill(desched); err != nil {
						return err
					}
					killedIn = lm.Status.Phase
					t.Logf("descheduler killed with the migration in %s", lm.Status.Phase)
					return testLab.Restart(ctx, desched)
				},
			})
			if err != nil {
				t.Fatal(err)
			}
			if killedIn == "" {
				t.Fatal("the descheduler was never killed")
			}
			t.Logf("kubectl livemigrate move --wait took %s\n%s", obs.Duration.Round(time.Millisecond), scenario.Timeline(obs.Migration))
			_, errs := env.CheckSucceeded(ctx, app, obs)
			report(t, errs)
		})
	}
}

// TestDeploymentBothPodsMigrate live-migrates a 2-replica Deployment: both
// pods are checkpointed, and each restored pod resumes its own source's
// checkpoint.
func TestDeploymentBothPodsMigrate(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	env, _ := newEnv(t)
	app, err := env.DeployDeployment(ctx, "e2e-deploy", "cache", 2, scenario.AppOptions{Cluster: "member1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := app.WaitAllRunning(ctx, "member1", 2, 300); err != nil {
		t.Fatal(err)
	}
	obs, err := app.Move(ctx, scenario.MoveOptions{To: "member2", Name: "cache-to-member2"})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("kubectl livemigrate move --wait took %s\n%s", obs.Duration.Round(time.Millisecond), scenario.Timeline(obs.Migration))
	report(t, env.CheckDeploymentSucceeded(ctx, app, obs))
}
