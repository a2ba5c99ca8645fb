package migration

import (
	"context"
	"testing"
	"time"

	"github.com/livemigrate/livemigrate/test/e2e/migration/scenario"
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
