package migration

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
	"github.com/livemigrate/livemigrate/test/e2e/migration/scenario"
	"github.com/livemigrate/livemigrate/test/lab"
)

// TestMultiVolumeStatefulSetMovesToMember2 live-migrates a StatefulSet of
// the lab app with 2 pods and 2 claims per pod — four volumes, all received
// by one node of member2 through its agent's one replication port — while
// the pods count and files are written into every volume up to the freeze.
// All four volumes arrive identical (the files written just before the
// freeze included, the counter logs continued), and each pod resumes at the
// counter it was frozen at, never two copies running.
func TestMultiVolumeStatefulSetMovesToMember2(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	env, _ := newEnv(t)
	app, err := env.DeployMultiVolume(ctx, "e2e-multivolume", "db", 2, []string{"data", "wal"}, scenario.AppOptions{Cluster: "member1"})
	if err != nil {
		t.Fatal(err)
	}
	if app.Source != "member1" {
		t.Fatalf("placed in %s, want member1", app.Source)
	}
	if err := app.FillVolumes(4 << 20); err != nil {
		t.Fatal(err)
	}
	pods, err := app.WaitAllRunning(ctx, "member1", 2, 500)
	if err != nil {
		t.Fatal(err)
	}
	wctx, stopWriting := context.WithCancel(ctx)
	defer stopWriting()
	written := app.WriteUntilFrozen(wctx, pods, 20*time.Millisecond)
	obs, err := app.Move(ctx, scenario.MoveOptions{To: "member2", Name: "db-to-member2"})
	stopWriting()
	n := written()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("kubectl livemigrate move --wait took %s\n%s", obs.Duration.Round(time.Millisecond), scenario.Timeline(obs.Migration))
	t.Logf("files written into the source volumes up to each pod's freeze: %v", n)
	if got := len(obs.Migration.Status.Volumes); got != 4 {
		t.Errorf("the migration replicated %d volumes, want 4", got)
	}
	for claim := range app.SourceDirs {
		if n[claim] == 0 {
			t.Errorf("nothing was written into %s before the freeze", claim)
		}
	}
	// The four volumes were received by one node, through its agent's one
	// replication port.
	if nodes, err := app.TargetNodes(ctx, "member2"); err != nil {
		t.Error(err)
	} else {
		distinct := map[string]bool{}
		for _, n := range nodes {
			distinct[n] = true
		}
		if len(nodes) != 4 || len(distinct) != 1 {
			t.Errorf("target volumes on nodes %v, want all four on one node", nodes)
		}
	}
	report(t, env.CheckMultiPodSucceeded(ctx, app.App, obs))
	report(t, app.CheckVolumesIdentical(ctx, "member2"))
}

// TestMigrationFailsFastWhenTheReceiverCannotStart: the replication port of
// the target node's agent is taken by another process. The target's
// VolumeReplication says so at once (ReceiverReady=False, PortUnavailable,
// what to do), the agent retries for --replication-start-retry-timeout (1m),
// then fails it; the LiveMigration fails with ReplicationFailed carrying the
// agent's message, a warning event says what to do, and the workload rolls
// back — instead of sitting in PreCopy until its timeout — leaving no
// directory for the copy under the target's volume root.
func TestMigrationFailsFastWhenTheReceiverCannotStart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	env, _ := newEnv(t)
	app, err := env.Deploy(ctx, "e2e-port-taken", "pt", scenario.AppOptions{Cluster: "member1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := app.WaitRunning(ctx, "member1", 300); err != nil {
		t.Fatal(err)
	}
	// The migration's target node is member2's first node. Its agent is
	// restarted with the port held by this process, as if another program
	// had taken it.
	agent := testLab.Instance("livemigrate-agent-member2-node-1")
	if agent == nil {
		t.Fatal("the lab runs no agent on member2-node-1")
	}
	if err := testLab.Kill(agent); err != nil {
		t.Fatal(err)
	}
	var squatter net.Listener
	if err := lab.Poll(ctx, "the agent's port to be free", 50*time.Millisecond, func(context.Context) (bool, string, error) {
		var err error
		squatter, err = net.Listen("tcp", agent.Addr("replication"))
		if err != nil {
			return false, err.Error(), nil
		}
		return true, "", nil
	}); err != nil {
		t.Fatal(err)
	}
	defer squatter.Close()
	if err := testLab.Restart(ctx, agent); err != nil {
		t.Fatal(err)
	}

	var reported string
	var reportedAt time.Time
	var copiesDuring []string
	timeout := metav1.Duration{Duration: 5 * time.Minute}
	obs, err := app.Move(ctx, scenario.MoveOptions{
		To: "member2", Name: "pt-to-member2",
		Timeouts:    &lmv1alpha1.PhaseTimeouts{PreCopy: &timeout},
		DuringPhase: lmv1alpha1.PhasePreCopy,
		During: func(ctx context.Context, _ *lmv1alpha1.LiveMigration) error {
			msg, err := app.WaitReceiverNotReady(ctx, "member2", "PortUnavailable")
			reported, reportedAt = msg, time.Now()
			if err != nil {
				return err
			}
			copiesDuring, err = app.TargetCopiesLeft()
			return err
		},
	})
	// The next migrations into member2 find the port free again.
	squatter.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("kubectl livemigrate status --wait took %s\n%s", obs.Duration.Round(time.Millisecond), scenario.Timeline(obs.Migration))
	if !strings.Contains(reported, "address already in use") || !strings.Contains(reported, "--replication-port") {
		t.Errorf("ReceiverReady message %q, want the bind error and what to do", reported)
	}
	var preCopyAt, rollbackAt time.Time
	for _, pt := range obs.Migration.Status.PhaseTransitions {
		switch pt.Phase {
		case lmv1alpha1.PhasePreCopy:
			preCopyAt = pt.EnteredAt.Time
		case lmv1alpha1.PhaseRollingBack:
			rollbackAt = pt.EnteredAt.Time
		}
	}
	if !reportedAt.IsZero() && !preCopyAt.IsZero() {
		t.Logf("the receiver reported PortUnavailable %s after PreCopy began", reportedAt.Sub(preCopyAt).Round(time.Millisecond))
	}
	if d := rollbackAt.Sub(preCopyAt); preCopyAt.IsZero() || rollbackAt.IsZero() || d > 2*time.Minute {
		t.Errorf("the rollback began %s after PreCopy, want within the agent's 1m start retry timeout (and long before the 5m PreCopy timeout)", d)
	}
	f := obs.Migration.Status.Failure
	if f == nil || f.Phase != lmv1alpha1.PhasePreCopy || f.Reason != "ReplicationFailed" ||
		!strings.Contains(f.Message, "address already in use") || !strings.Contains(f.Message, "--replication-port") {
		t.Errorf("failure = %+v, want PreCopy/ReplicationFailed with the agent's reason and what to do", f)
	}
	warnings, err := env.MigrationWarnings(ctx, obs.Migration)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, w := range warnings {
		found = found || strings.Contains(w, "--replication-port")
	}
	if !found {
		t.Errorf("warning events of the LiveMigration %q, want one saying what to do", warnings)
	}
	report(t, env.CheckRolledBack(ctx, app, obs, "member2"))
	// The rollback aborted the target side, which removed the directory
	// provisioned for the copy.
	if len(copiesDuring) == 0 {
		t.Error("no directory for the copy under the target's volume root while the receiver retried")
	}
	if left, err := app.TargetCopiesLeft(); err != nil || len(left) > 0 {
		t.Errorf("target copies left under the volume root after the rollback: %v %v (during PreCopy: %v)", left, err, copiesDuring)
	}
}
