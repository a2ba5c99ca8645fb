package migration

import (
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
	"github.com/livemigrate/livemigrate/test/builder"
)

// pastMigration is a finished migration into target that checkpointed
// memory bytes and spent dump, restore and verify in those phases, with a
// push of 5 s between them (which the overhead must not count).
func pastMigration(name, target string, phase lmv1alpha1.LiveMigrationPhase, memory int64, completed time.Time, dump, restore, verify time.Duration) *lmv1alpha1.LiveMigration {
	lm := builder.MakeLiveMigration("other", name, "app").Target(target).Obj()
	at := completed.Add(-time.Minute)
	var ts []lmv1alpha1.PhaseTransition
	for _, s := range []struct {
		p lmv1alpha1.LiveMigrationPhase
		d time.Duration
	}{
		{lmv1alpha1.PhasePreCopy, 10 * time.Second}, {lmv1alpha1.PhaseCheckpointing, dump}, {lmv1alpha1.PhaseRebinding, time.Second},
		{lmv1alpha1.PhaseFinalSync, time.Second}, {lmv1alpha1.PhaseTransfer, 3 * time.Second}, {lmv1alpha1.PhaseRestoring, restore},
		{lmv1alpha1.PhaseVerifying, verify}, {lmv1alpha1.PhaseCleanup, time.Second}, {phase, 0},
	} {
		ts = append(ts, lmv1alpha1.PhaseTransition{Phase: s.p, EnteredAt: metav1.NewMicroTime(at)})
		at = at.Add(s.d)
	}
	lm.Status = lmv1alpha1.LiveMigrationStatus{Phase: phase, TargetCluster: target, PhaseTransitions: ts,
		CompletionTime: &metav1.Time{Time: completed}}
	lm.Status.Bytes.Memory = memory
	return lm
}

func TestLearnedOverhead(t *testing.T) {
	t1 := t0.Add(-time.Hour)
	items := func(lms ...*lmv1alpha1.LiveMigration) []lmv1alpha1.LiveMigration {
		var out []lmv1alpha1.LiveMigration
		for _, lm := range lms {
			out = append(out, *lm)
		}
		return out
	}
	cases := []struct {
		name        string
		history     []lmv1alpha1.LiveMigration
		n           int
		want        time.Duration
		wantLearned int
	}{
		{name: "no history", n: 10},
		{
			name: "one migration: its own time, push not counted", n: 10,
			// 0.2 + 0.6 + 0.2 = 1 s.
			history:     items(pastMigration("a", "b", lmv1alpha1.PhaseSucceeded, 64<<20, t1, 200*time.Millisecond, 600*time.Millisecond, 200*time.Millisecond)),
			want:        time.Second,
			wantLearned: 1,
		},
		{
			name: "fixed part and growth per byte", n: 10,
			history: items(
				pastMigration("a", "b", lmv1alpha1.PhaseSucceeded, 64<<20, t1, 200*time.Millisecond, 600*time.Millisecond, 200*time.Millisecond), // 1 s: the fixed part
				pastMigration("c", "b", lmv1alpha1.PhaseSucceeded, 1<<30, t1.Add(time.Minute), 3*time.Second, 9*time.Second, 0),                  // 12 s: 11 s per GiB more
			),
			// 1 s + 11 s × 256 MiB / 1 GiB.
			want:        time.Second + 11*time.Second/4,
			wantLearned: 2,
		},
		{
			name: "small checkpoints do not tell the growth", n: 10,
			history: items(
				pastMigration("a", "b", lmv1alpha1.PhaseSucceeded, 16<<20, t1, time.Second, time.Second, 0),
				pastMigration("c", "b", lmv1alpha1.PhaseSucceeded, 64<<20, t1.Add(time.Minute), time.Second, 2*time.Second, 0),
			),
			want:        2 * time.Second,
			wantLearned: 2,
		},
		{
			name: "one slow migration does not set the growth", n: 10,
			history: items(
				pastMigration("fixed", "b", lmv1alpha1.PhaseSucceeded, 16<<20, t1, 500*time.Millisecond, 500*time.Millisecond, 0),               // 1 s: the fixed part
				pastMigration("a", "b", lmv1alpha1.PhaseSucceeded, 1<<30, t1.Add(time.Minute), time.Second, 4*time.Second, 0),                   // 4 s per GiB
				pastMigration("slow", "b", lmv1alpha1.PhaseSucceeded, 1<<30, t1.Add(2*time.Minute), time.Second, 40*time.Second, 0),             // 40 s per GiB
				pastMigration("c", "b", lmv1alpha1.PhaseSucceeded, 512<<20, t1.Add(3*time.Minute), time.Second, 2*time.Second+time.Second/2, 0), // 5 s per GiB
			),
			// 1 s + median(4, 5, 40 s per GiB) × 256 MiB.
			want:        time.Second + 5*time.Second/4,
			wantLearned: 4,
		},
		{
			name: "only the latest n", n: 1,
			history: items(
				pastMigration("old", "b", lmv1alpha1.PhaseSucceeded, 64<<20, t1, 200*time.Millisecond, 600*time.Millisecond, 200*time.Millisecond),
				pastMigration("new", "b", lmv1alpha1.PhaseSucceeded, 1<<30, t1.Add(time.Minute), 3*time.Second, 9*time.Second, 0),
			),
			want:        12 * time.Second,
			wantLearned: 1,
		},
		{
			name: "other targets, failures and migrations without memory are not learned from", n: 10,
			history: items(
				pastMigration("elsewhere", "a", lmv1alpha1.PhaseSucceeded, 64<<20, t1, time.Minute, time.Minute, 0),
				pastMigration("failed", "b", lmv1alpha1.PhaseFailed, 64<<20, t1, time.Minute, time.Minute, 0),
				pastMigration("empty", "b", lmv1alpha1.PhaseSucceeded, 0, t1, time.Minute, time.Minute, 0),
			),
		},
		{
			name: "disabled", n: 0,
			history: items(pastMigration("a", "b", lmv1alpha1.PhaseSucceeded, 64<<20, t1, time.Second, time.Second, 0)),
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, learned := LearnedOverhead(tc.history, "b", 256<<20, tc.n)
			if got != tc.want || learned != tc.wantLearned {
				t.Errorf("LearnedOverhead = %s from %d, want %s from %d", got, learned, tc.want, tc.wantLearned)
			}
		})
	}
}

// TestDowntimeEstimateIncludesLearnedRestoreTime: with an earlier migration
// into the same target, the estimate adds its dump, pull and restore time,
// and a budget the transfer alone would meet is refused.
func TestDowntimeEstimateIncludesLearnedRestoreTime(t *testing.T) {
	// 2 s of dump, restore and verify before. Transfer: (1 MiB pending +
	// 8 MiB checkpoint) at 100 MiB/s = 90 ms.
	past := pastMigration("before", "b", lmv1alpha1.PhaseSucceeded, 4<<20, t0.Add(-time.Hour), 400*time.Millisecond, 1200*time.Millisecond, 400*time.Millisecond)
	for _, tc := range []struct {
		name     string
		budget   time.Duration
		wantFail bool
	}{
		{name: "within budget", budget: 3 * time.Second},
		{name: "over budget only with the restore time", budget: time.Second, wantFail: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, builder.MakeLiveMigration("ns", "mig", "app").Target("b").Budget(tc.budget).Obj(),
				append(defaultObjects(), client.Object(past.DeepCopy()))...)
			until := lmv1alpha1.PhaseCheckpointing
			if tc.wantFail {
				until = lmv1alpha1.PhaseFailed
			}
			h.run(until, time.Millisecond)
			st := h.lm().Status
			if st.EstimatedDowntime == nil || st.EstimatedDowntime.Duration != 2090*time.Millisecond {
				t.Errorf("estimated downtime = %v, want 2.09s (90ms transfer + 2s learned)", st.EstimatedDowntime)
			}
			c := meta.FindStatusCondition(st.Conditions, lmv1alpha1.ConditionDowntimeBudget)
			if c == nil || !strings.Contains(c.Message, "dump, pull and restore 2s, learned from the 1 latest migrations into b") {
				t.Errorf("DowntimeBudgetMet = %+v, want its message to say what was learned", c)
			}
			if got := st.Failure != nil && st.Failure.Reason == "BudgetExceeded"; got != tc.wantFail {
				t.Errorf("failure = %+v, want BudgetExceeded: %v", st.Failure, tc.wantFail)
			}
			if n := h.w.count("freeze:app-0"); tc.wantFail && n != 0 {
				t.Errorf("froze the workload %d times despite the budget", n)
			}
		})
	}
}
