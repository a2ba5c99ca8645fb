package migration

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
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
//
// A fourth leg, member2 → member1, adopts the claim the second leg
// provisioned, with the policy Delete (the LiveMigration's annotation):
// member2's claim and the volume the first leg provisioned for it are
// deleted once the source pod is gone.
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
	// volume's content and that the source kept its claim, retained, or
	// with policy Delete (the LiveMigration's annotation, set while it
	// pre-copies) that it deleted it.
	leg := func(n int, to string, policy string) (precopy int64) {
		t.Helper()
		from := app.Source
		if _, err := app.WaitRunning(ctx, from, 0); err != nil {
			t.Fatal(err)
		}
		o := scenario.MoveOptions{To: to, Name: fmt.Sprintf("mb-%d", n)}
		if policy != "" {
			// As soon as kubectl created it (During may see the previous
			// migration of the namespace, already past Pending).
			o.DuringPhase = lmv1alpha1.PhasePending
			o.During = func(ctx context.Context, _ *lmv1alpha1.LiveMigration) error {
				return app.Annotate(ctx, o.Name, "livemigrate.io/source-claim-policy", policy)
			}
		}
		srcClaim, srcPV, err := app.Claim(ctx, from)
		if err != nil {
			t.Fatal(err)
		}
		obs, err := app.Move(ctx, o)
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
		if policy == "Delete" {
			if err := app.CheckDeleted(ctx, from, srcClaim, srcPV); err != nil {
				t.Errorf("leg %d: %v", n, err)
			}
		} else if _, err := app.CheckRetained(ctx, from); err != nil {
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

	pre1 := leg(1, "member2", "")
	if pre1 < ballastSize {
		t.Errorf("leg 1 pre-copied %d bytes, less than the %d-byte ballast", pre1, ballastSize)
	}
	first, firstPV, err := app.Claim(ctx, "member2")
	if err != nil {
		t.Fatal(err)
	}

	pre2 := leg(2, "member1", "")
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

	pre3 := leg(3, "member2", "")
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

	// Policy Delete: member2 deletes the claim and the volume the first leg
	// provisioned; member1's claim, provisioned by the second leg and
	// retained by the third, is adopted.
	pre4 := leg(4, "member1", "Delete")
	if c, _, err := app.Claim(ctx, "member1"); err != nil || c.UID != back.UID {
		t.Errorf("leg 4 did not adopt the claim retained in member1: %v", err)
	}
	if pre4 >= ballastSize/6 {
		t.Errorf("leg 4 pre-copied %d bytes over the retained copy, want only the changes (under %d)", pre4, ballastSize/6)
	}
	t.Logf("volume pre-copy: leg 1 (new claim) %d bytes, leg 2 (retained claim replaced) %d bytes, leg 3 (retained claim adopted) %d bytes, leg 4 (adopted, source claim deleted) %d bytes", pre1, pre2, pre3, pre4)
}

// TestMoveBlockedByAUsersClaim: a claim of the workload's name that no
// migration left in the target (a user's) fails the migration in PreCopy,
// before the freeze, with a message saying what to do; the claim is not
// touched and the source runs on. Once the user deleted it, the move
// succeeds.
func TestMoveBlockedByAUsersClaim(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	env, _ := newEnv(t)
	app, err := env.Deploy(ctx, "e2e-userclaim", "uc", scenario.AppOptions{Cluster: "member1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := app.WaitRunning(ctx, "member1", 300); err != nil {
		t.Fatal(err)
	}
	users, err := app.CreateUsersClaim(ctx, "member2")
	if err != nil {
		t.Fatal(err)
	}
	obs, err := app.Move(ctx, scenario.MoveOptions{To: "member2", Name: "uc-blocked"})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("blocked: kubectl livemigrate move --wait took %s\n%s", obs.Duration.Round(time.Millisecond), scenario.Timeline(obs.Migration))
	f := obs.Migration.Status.Failure
	want := "claim data-uc-0 already exists in namespace e2e-userclaim of target cluster member2 and it is not a copy a migration of StatefulSet.apps/uc left there: delete it there (kubectl -n e2e-userclaim delete pvc data-uc-0) if its data is not needed, or migrate to another cluster"
	if f == nil || f.Phase != lmv1alpha1.PhasePreCopy || f.Reason != "TargetClaimExists" || !strings.Contains(f.Message, want) {
		t.Fatalf("failure = %+v; want PreCopy/TargetClaimExists saying %q", f, want)
	}
	if obs.Migration.Status.FrozenAt != nil {
		t.Errorf("the source was frozen at %s although the target claim was in the way", obs.Migration.Status.FrozenAt)
	}
	c, _, err := app.Claim(ctx, "member2")
	if err != nil || c.UID != users.UID || len(c.Labels) != 0 {
		t.Errorf("the user's claim in member2 was touched: %+v, %v", c, err)
	}
	if err := app.DeleteClaim(ctx, "member2"); err != nil {
		t.Fatal(err)
	}
	report(t, env.CheckRolledBack(ctx, app, obs, "member2"))

	obs, err = app.Move(ctx, scenario.MoveOptions{To: "member2", Name: "uc-after-delete"})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("after the claim was deleted: kubectl livemigrate move --wait took %s\n%s", obs.Duration.Round(time.Millisecond), scenario.Timeline(obs.Migration))
	_, errs := env.CheckSucceeded(ctx, app, obs)
	report(t, errs)
}
