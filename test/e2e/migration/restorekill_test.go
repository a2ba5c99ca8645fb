package migration

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
	"github.com/livemigrate/livemigrate/test/e2e/migration/scenario"
	"github.com/livemigrate/livemigrate/test/lab"
)

// TestRollbackWhenTheTargetNodeDiesMidRestore kills (SIGKILL) what restores
// the checkpoint on the target node while it is restoring it: once the
// target pod is bound to its node in member2 and the node's runtime is
// pulling the checkpoint image (bytes of it on disk) or loading it, before
// the restored lab app runs. The runtime pulls and loads the checkpoint
// itself (the node's agent only received the volume before), so:
//
//   - runtime: the lab node runtime of that node dies, with its pull and
//     the lab app it may have started;
//   - runtime-and-agent: the runtime and the agent of that node die
//     together, as when the whole node side goes. The rollback thaws the
//     source without the target agent; it then waits for that agent to stop
//     the target side of the volume replication, so the agent comes back
//     (as its DaemonSet would bring it back) once the source was seen
//     thawed, and the migration then ends Failed;
//   - node-gone: the runtime and the agent die and stay down, as when the
//     node is lost. The rollback thaws the source, waits the descheduler's
//     --rollback-abort-wait for the agent to confirm that replication
//     stopped, then removes the replication objects without it and ends
//     Failed with ReplicationStopped=False (AgentsUnresponsive).
//
// The runtime stays down until the migration ended, so the target pod is
// never restored. The migration fails in Restoring and rolls back: Failed
// with a reason saying the restore did not finish, the source thawed (the
// same process) with nothing lost, nothing of the migration left in
// member2, never two live copies. The lab app holds 256Mi so that the pull
// and the load take long enough to be caught in the middle.
func TestRollbackWhenTheTargetNodeDiesMidRestore(t *testing.T) {
	// restoring is the Restoring timeout: the pod of a dead runtime stays
	// Pending on a node that kwok keeps Ready, so nothing but the phase
	// timeout ends the restore.
	const restoring = 15 * time.Second
	cases := []struct {
		name string
		// agent: the node's agent dies with its runtime.
		agent bool
		// agentStaysDown: the agent is not brought back before the
		// migration ended.
		agentStaysDown bool
	}{
		{name: "runtime"},
		{name: "runtime-and-agent", agent: true},
		{name: "node-gone", agent: true, agentStaysDown: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			env, _ := newEnv(t)
			app, err := env.Deploy(ctx, "e2e-restorekill-"+tc.name, "rk", scenario.AppOptions{Cluster: "member1", Memory: "256Mi"})
			if err != nil {
				t.Fatal(err)
			}
			src, err := app.WaitRunning(ctx, "member1", 300)
			if err != nil {
				t.Fatal(err)
			}

			killCtx, stopKiller := context.WithCancel(ctx)
			defer stopKiller()
			done := make(chan targetKill, 1)
			go func() { done <- killRestore(killCtx, app, src, tc.agent, !tc.agentStaysDown) }()
			var down []*lab.Instance
			defer func() {
				for _, in := range down {
					if err := testLab.Restart(context.Background(), in); err != nil {
						t.Errorf("restarting %s: %v", in.Name, err)
					}
				}
			}()

			timeout := metav1.Duration{Duration: restoring}
			obs, err := app.Move(ctx, scenario.MoveOptions{
				To: "member2", Name: "rk-to-member2",
				Timeouts: &lmv1alpha1.PhaseTimeouts{Restoring: &timeout},
			})
			stopKiller()
			k := <-done
			down = k.down
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("kubectl livemigrate status --wait took %s\n%s", obs.Duration.Round(time.Millisecond), scenario.Timeline(obs.Migration))
			if k.err != nil {
				t.Fatalf("killing the restore on the target node: %v", k.err)
			}
			r := k.restore
			t.Logf("killed %s at %s: pod %s (uid %s) bound to %s, %d bytes of its checkpoint archive pulled",
				strings.Join(k.killed, " and "), k.at.Format("15:04:05.000"), r.Pod.Name, r.Pod.UID, r.Pod.Node, r.Bytes)
			if at := enteredPhase(obs.Migration, lmv1alpha1.PhaseRestoring); !at.IsZero() {
				t.Logf("the kill came %s after Restoring was entered", k.at.Sub(at).Round(time.Millisecond))
			}
			if k.published {
				t.Fatalf("the restored lab app of %s had published its layout when %s died: the restore was over, not under way", r.Pod.Name, r.Pod.Node)
			}
			if r.Published() {
				t.Errorf("the lab app of %s published its layout after its node's runtime was killed", r.Pod.Name)
			}
			if tc.agentStaysDown {
				c := meta.FindStatusCondition(obs.Migration.Status.Conditions, lmv1alpha1.ConditionReplicationStopped)
				if c == nil || c.Status != metav1.ConditionFalse || c.Reason != "AgentsUnresponsive" {
					t.Errorf("condition %s = %+v, want False/AgentsUnresponsive: the target agent never confirmed the abort", lmv1alpha1.ConditionReplicationStopped, c)
				}
				if rb, failed := enteredPhase(obs.Migration, lmv1alpha1.PhaseRollingBack), enteredPhase(obs.Migration, lmv1alpha1.PhaseFailed); rb.IsZero() || failed.IsZero() {
					t.Errorf("no RollingBack → Failed in the timeline")
				} else {
					t.Logf("RollingBack lasted %s with the target agent down (--rollback-abort-wait=%s)", failed.Sub(rb).Round(time.Millisecond), lab.DeschedulerRollbackAbortWait)
				}
			}
			if tc.agent {
				if k.thawErr != nil {
					t.Errorf("the source was not thawed while the target agent was down: %v", k.thawErr)
				} else {
					t.Logf("the source was thawed %s after the kill", k.thawedAt.Sub(k.at).Round(time.Millisecond))
				}
				if !k.agentBackAt.IsZero() {
					t.Logf("the agent was back %s after the thaw", k.agentBackAt.Sub(k.thawedAt).Round(time.Millisecond))
				}
			}

			f := obs.Migration.Status.Failure
			switch {
			case f == nil || f.Phase != lmv1alpha1.PhaseRestoring:
				t.Errorf("failure = %+v, want one in Restoring", f)
			case f.Reason == "" || f.Message == "":
				t.Errorf("failure = %+v, want a reason and a message", f)
			case f.Reason == "Timeout" && !strings.Contains(f.Message, string(lmv1alpha1.PhaseRestoring)):
				t.Errorf("failure %s: %s; want the timeout to name Restoring", f.Reason, f.Message)
			default:
				t.Logf("failure in %s: %s: %s", f.Phase, f.Reason, f.Message)
			}
			for _, s := range obs.Samples {
				if s.TargetRunning {
					t.Fatalf("a target lab app ran at %s although its restore was killed", s.At.Format(time.RFC3339Nano))
				}
			}
			report(t, env.CheckRolledBack(ctx, app, obs, "member2"))
		})
	}
}

// targetKill is what killRestore did.
type targetKill struct {
	restore *scenario.Restore
	// killed names the killed instances; down are those still down.
	killed []string
	down   []*lab.Instance
	at     time.Time
	// published: the lab app had published its layout right after the
	// kill, i.e. the restore had finished.
	published bool
	// thawedAt: the source was seen thawed (thawErr if not); agentBackAt:
	// the killed agent was ready again.
	thawedAt, agentBackAt time.Time
	thawErr               error
	err                   error
}

// killRestore waits until the target node's runtime restores a pod of the
// app in member2 and kills it, and with agent the node's agent too; with
// restartAgent it restarts the agent once src was seen thawed (or after
// two minutes).
func killRestore(ctx context.Context, app *scenario.App, src *scenario.Pod, agent, restartAgent bool) (k targetKill) {
	if k.restore, k.err = app.WaitRestoring(ctx, "member2"); k.err != nil {
		return k
	}
	node := k.restore.Pod.Node
	names := []string{"labnode-" + node}
	if agent {
		names = append(names, "livemigrate-agent-"+node)
	}
	for _, name := range names {
		in := testLab.Instance(name)
		if in == nil {
			k.err = fmt.Errorf("the lab runs no %s", name)
			return k
		}
		if k.err = testLab.Kill(in); k.err != nil {
			return k
		}
		k.killed = append(k.killed, name)
		k.down = append(k.down, in)
	}
	k.at = time.Now()
	k.published = k.restore.Published()
	if !agent {
		return k
	}
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	k.thawErr = lab.Poll(wctx, "the source to be thawed", 10*time.Millisecond, func(context.Context) (bool, string, error) {
		st := src.FreezerState()
		return st == "THAWED", "source " + st, nil
	})
	cancel()
	k.thawedAt = time.Now()
	if !restartAgent {
		return k
	}
	// As its DaemonSet would, bring the agent back; the runtime stays down.
	in := k.down[1]
	if k.err = testLab.Restart(ctx, in); k.err != nil {
		return k
	}
	k.down = k.down[:1]
	k.agentBackAt = time.Now()
	return k
}

// enteredPhase is when the migration entered phase, zero if it never did.
func enteredPhase(lm *lmv1alpha1.LiveMigration, phase lmv1alpha1.LiveMigrationPhase) time.Time {
	for _, pt := range lm.Status.PhaseTransitions {
		if pt.Phase == phase {
			return pt.EnteredAt.Time
		}
	}
	return time.Time{}
}
