package migration

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/livemigrate/livemigrate/test/e2e/migration/scenario"
)

// ballastSize is the data on the volume the app never changes: a full
// copy carries it, a pre-copy over the retained copy does not.
const ballastSize = 48 << 20

// TestMoveBack live-migrates one StatefulSet of the lab app, writing to its
// local volume, member1 → member2 → member1 → member2, with the default
// source claim policy (Retain). Every leg is checked like
// TestStatefulSetMovesToMember2 (memory and log agree, the log continues
// the source's, never two running copies, …) and carries the volume's
// content (a ballast file's checksum). After each leg the source cluster
// keeps its claim, marked as the workload's retained copy, and the move
// back is not blocked by it:
//
//   - member2 → member1 finds the user's original claim retained in
//     member1, whose volume lies outside the agents' target root, so it is
//     replaced by a claim provisioned for the migration (a full copy);
//   - member1 → member2 finds the claim the first leg provisioned there,
//     retained, and adopts it as the pre-copy base: the same claim, and the
//     pre-copy sends only what changed since (a fraction of the ballast).
func TestMoveBack(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	env, _ := newEnv(t)
	app, err := env.Deploy(ctx, "e2e-moveback", "mb", scenario.AppOptions{Cluster: "member1"})
	if err != nil {
		t.Fatal(err)
	}
	p, err := app.WaitRunning(ctx, "member1", 300)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := scenario.WriteBallast(p.VolumeDir(), "ballast", ballastSize)
	if err != nil {
		t.Fatal(err)
	}
	original, _, err := app.Claim(ctx, "member1")
	if err != nil {
		t.Fatal(err)
	}

	// leg moves the app to cluster and checks every invariant, the
	// volume's content and that the source kept its claim, retained.
	leg := func(n int, to string) (precopy int64) {
		t.Helper()
		from := app.Source
		if _, err := app.WaitRunning(ctx, from, 0); err != nil {
			t.Fatal(err)
		}
		obs, err := app.Move(ctx, scenario.MoveOptions{To: to, Name: fmt.Sprintf("mb-%d", n)})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("leg %d, %s → %s: kubectl livemigrate move --wait took %s\n%s", n, from, to, obs.Duration.Round(time.Millisecond), scenario.Timeline(obs.Migration))
		res, errs := env.CheckSucceeded(ctx, app, obs)
		report(t, errs)
		t.Logf("leg %d: restored from counter %d (the source's last log line: %d); %s", n, res.RestoredFrom, res.SourceLast, res.Verified)
		if got, err := scenario.FileSHA256(filepath.Join(res.Target.VolumeDir(), "ballast")); err != nil || got != sum {
			t.Errorf("leg %d: the ballast in %s has SHA-256 %s (%v), want %s", n, to, got, err, sum)
		}
		if _, err := app.CheckRetained(ctx, from); err != nil {
			t.Errorf("leg %d: %v", n, err)
		}
		c, _, err := app.Claim(ctx, to)
		if err != nil {
			t.Fatal(err)
		}
		if got := c.Labels["livemigrate.io/migration-uid"]; got != string(obs.Migration.UID) {
			t.Errorf("leg %d: the claim in %s carries migration %q, want %s", n, to, got, obs.Migration.UID)
		}
		app.Source = to
		return obs.Migration.Status.Bytes.VolumePreCopy
	}

	pre1 := leg(1, "member2")
	if pre1 < ballastSize {
		t.Errorf("leg 1 pre-copied %d bytes, less than the %d-byte ballast", pre1, ballastSize)
	}
	first, firstPV, err := app.Claim(ctx, "member2")
	if err != nil {
		t.Fatal(err)
	}

	pre2 := leg(2, "member1")
	back, backPV, err := app.Claim(ctx, "member1")
	if err != nil {
		t.Fatal(err)
	}
	if back.UID == original.UID {
		t.Errorf("leg 2 wrote into the user's original claim %s, whose volume is outside the agents' root", original.UID)
	}
	if backPV == nil || backPV.Spec.Local == nil || !strings.HasPrefix(backPV.Spec.Local.Path, env.Paths.VolumeRoot()+"/") {
		t.Errorf("leg 2: the claim in member1 is bound to %+v, want a local volume under %s", backPV, env.Paths.VolumeRoot())
	}

	pre3 := leg(3, "member2")
	again, againPV, err := app.Claim(ctx, "member2")
	if err != nil {
		t.Fatal(err)
	}
	if again.UID != first.UID || againPV == nil || firstPV == nil || againPV.Name != firstPV.Name {
		t.Errorf("leg 3 did not adopt the claim retained in member2: claim %s (was %s)", again.UID, first.UID)
	}
	if pre3 >= ballastSize/6 {
		t.Errorf("leg 3 pre-copied %d bytes over the retained copy, want only the changes (under %d)", pre3, ballastSize/6)
	}
	t.Logf("volume pre-copy: leg 1 (new claim) %d bytes, leg 2 (retained claim replaced) %d bytes, leg 3 (retained claim adopted) %d bytes", pre1, pre2, pre3)
}
