package migration

import (
	"strings"
	"testing"
	"time"

	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
	"github.com/livemigrate/livemigrate/test/builder"
)

// Verifying reads the restore again once the target is Ready: a target pod
// that does not run from its checkpoint never lets Cleanup delete the
// frozen source.
func TestVerifyingRechecksTheRestore(t *testing.T) {
	cases := []struct {
		name string
		// breakRestore changes the target after Restoring succeeded.
		breakRestore func(w *world)
		wantPhase    lmv1alpha1.LiveMigrationPhase
		wantReason   string
	}{{
		name:         "replacement pod admitted without its checkpoint",
		breakRestore: func(w *world) { w.unmutated = []string{"app-0"} },
		wantPhase:    lmv1alpha1.PhaseFailed,
		wantReason:   "RestoreWebhookBypassed",
	}, {
		name: "restore claim failed after Restoring",
		breakRestore: func(w *world) {
			w.fail["restoreStatus"] = NewStepFailedError("RestoreFailed", "pod app-0 failed to restore checkpoint app-0")
		},
		wantPhase:  lmv1alpha1.PhaseFailed,
		wantReason: "RestoreFailed",
	}, {
		name:         "no running pod restored the checkpoint",
		breakRestore: func(w *world) { w.restored = false },
		wantPhase:    lmv1alpha1.PhaseVerifying,
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, builder.MakeLiveMigration("ns", "mig", "app").Target("b").Obj())
			h.w.ready = false
			h.run(lmv1alpha1.PhaseVerifying, time.Millisecond)
			tc.breakRestore(h.w)
			h.w.ready = true
			for i := 0; i < 3 && !h.lm().Status.Phase.IsTerminal(); i++ {
				h.reconcileLogged()
				h.clock.Step(time.Millisecond)
			}
			st := h.lm().Status
			if st.Phase != tc.wantPhase {
				t.Fatalf("phase = %s, want %s", st.Phase, tc.wantPhase)
			}
			if !enteredAt(&st, lmv1alpha1.PhaseCleanup).IsZero() {
				t.Fatalf("Cleanup entered, the frozen source would be deleted")
			}
			if h.w.count("release:app-0") != 0 {
				t.Errorf("checkpoint released although the target does not run from it")
			}
			if tc.wantReason != "" {
				if st.Failure == nil || st.Failure.Phase != lmv1alpha1.PhaseVerifying || st.Failure.Reason != tc.wantReason {
					t.Fatalf("failure = %+v, want Verifying/%s", st.Failure, tc.wantReason)
				}
				return
			}
			if st.TargetReadyAt != nil || st.Pods[0].Restored || !strings.Contains(st.Pods[0].Message, "no target pod runs from this checkpoint") {
				t.Errorf("status = %+v, want not ready, the checkpoint not restored and a message saying so", st)
			}
		})
	}
}
