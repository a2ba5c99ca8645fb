package migration

import (
	"context"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
	"github.com/livemigrate/livemigrate/test/e2e/migration/scenario"
	"github.com/livemigrate/livemigrate/test/lab"
)

// TestRollbackWhenTheRegistryRejectsThePull moves the lab app to member2
// while the lab registry refuses every blob download (404 BLOB_UNKNOWN, as
// a registry that lost the blob after the push): the source agent's push
// succeeds, the target node's runtime cannot pull the checkpoint image and
// reports the container as a kubelet does (Waiting, ErrImagePull), the
// target agent fails the restore claim at once and the migration fails in
// Restoring with RestoreFailed and rolls back within seconds, long before
// the Restoring timeout: nothing lost, nothing left in member2, never two
// live copies, and no target lab app ever ran.
func TestRollbackWhenTheRegistryRejectsThePull(t *testing.T) {
	const (
		// restoring is the Restoring timeout, which must not be what
		// ends the restore.
		restoring = 2 * time.Minute
		// failWithin is how soon after entering Restoring the rollback
		// must begin.
		failWithin = 15 * time.Second
	)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	env, _ := newEnv(t)
	app, err := env.Deploy(ctx, "e2e-pullfail", "pf", scenario.AppOptions{Cluster: "member1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := app.WaitRunning(ctx, "member1", 300); err != nil {
		t.Fatal(err)
	}

	if err := testLab.SetRegistryFault(ctx, lab.RegistryFaultBlobGet, true); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := testLab.SetRegistryFault(context.Background(), lab.RegistryFaultBlobGet, false); err != nil {
			t.Errorf("turning the registry fault off: %v", err)
		}
	}()

	timeout := metav1.Duration{Duration: restoring}
	obs, err := app.Move(ctx, scenario.MoveOptions{
		To: "member2", Name: "pf-to-member2",
		Timeouts: &lmv1alpha1.PhaseTimeouts{Restoring: &timeout},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("kubectl livemigrate status --wait took %s\n%s", obs.Duration.Round(time.Millisecond), scenario.Timeline(obs.Migration))

	f := obs.Migration.Status.Failure
	switch {
	case f == nil || f.Phase != lmv1alpha1.PhaseRestoring:
		t.Errorf("failure = %+v, want one in Restoring", f)
	case f.Reason != "RestoreFailed":
		t.Errorf("failure in Restoring: %s: %s; want reason RestoreFailed", f.Reason, f.Message)
	case !strings.Contains(f.Message, "ErrImagePull") && !strings.Contains(f.Message, "ImagePullBackOff"):
		t.Errorf("failure message %q does not say the image could not be pulled (ErrImagePull or ImagePullBackOff)", f.Message)
	case !strings.Contains(f.Message, "BLOB_UNKNOWN"):
		t.Errorf("failure message %q does not carry the registry's answer (BLOB_UNKNOWN)", f.Message)
	default:
		t.Logf("failure in %s: %s: %s", f.Phase, f.Reason, f.Message)
	}
	restoringAt := enteredPhase(obs.Migration, lmv1alpha1.PhaseRestoring)
	rollbackAt := enteredPhase(obs.Migration, lmv1alpha1.PhaseRollingBack)
	if d := rollbackAt.Sub(restoringAt); restoringAt.IsZero() || rollbackAt.IsZero() || d < 0 || d > failWithin {
		t.Errorf("the rollback began %s after Restoring was entered (Restoring at %s, RollingBack at %s), want within %s (timeout %s)",
			d, restoringAt.Format(time.RFC3339Nano), rollbackAt.Format(time.RFC3339Nano), failWithin, restoring)
	} else {
		t.Logf("the rollback began %s after Restoring was entered (timeout %s)", d.Round(time.Millisecond), restoring)
	}
	for _, s := range obs.Samples {
		if s.TargetRunning {
			t.Fatalf("a target lab app ran at %s although its checkpoint image could not be pulled", s.At.Format(time.RFC3339Nano))
		}
	}
	report(t, env.CheckRolledBack(ctx, app, obs, "member2"))
}
