package migration

import (
	"strings"
	"testing"
	"time"

	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
	"github.com/livemigrate/livemigrate/test/builder"
)

// A target node that goes NotReady during Restoring fails the migration at
// once, not at the Restoring timeout; the rollback keeps the source frozen
// while the target pods are not confirmed gone (a partitioned node's pod
// may still run).
func TestRestoringFailsFastOnANotReadyTargetNode(t *testing.T) {
	h := newHarness(t, builder.MakeLiveMigration("ns", "mig", "app").Target("b").Obj())
	h.w.restored = false
	h.run(lmv1alpha1.PhaseRestoring, time.Millisecond)
	h.reconcileLogged()
	if p := h.lm().Status.Phase; p != lmv1alpha1.PhaseRestoring {
		t.Fatalf("phase = %s, want Restoring", p)
	}
	h.w.unreadyNodes = []string{"node-b1"}
	h.w.removeCallsBeforeGone = 1000 // the pod on the partitioned node is never confirmed gone
	h.reconcileLogged()
	st := h.lm().Status
	if st.Phase != lmv1alpha1.PhaseRollingBack {
		t.Fatalf("phase = %s right after the node went NotReady, want RollingBack", st.Phase)
	}
	if f := st.Failure; f == nil || f.Reason != ReasonTargetNodeNotReady || f.Phase != lmv1alpha1.PhaseRestoring ||
		!strings.Contains(f.Message, "node-b1") || !strings.Contains(f.Message, "delete the Node") {
		t.Fatalf("failure = %+v, want Restoring/%s naming node-b1 and what to do", st.Failure, ReasonTargetNodeNotReady)
	}
	for i := 0; i < 20; i++ {
		h.reconcileLogged()
		h.clock.Step(time.Minute)
	}
	if n := h.w.count("thaw:app-0"); n != 0 {
		t.Fatalf("source thawed while the target pod is not confirmed gone")
	}
	if p := h.lm().Status.Phase; p != lmv1alpha1.PhaseRollingBack {
		t.Fatalf("phase = %s, want RollingBack until the target is confirmed gone", p)
	}
	// The node is deleted (or comes back): its pod goes, the source thaws.
	h.w.removeCallsBeforeGone = 0
	h.run(lmv1alpha1.PhaseFailed, time.Millisecond)
	if h.w.count("thaw:app-0") != 1 {
		t.Errorf("source not thawed once the target was gone: %v", h.w.calls())
	}
}
