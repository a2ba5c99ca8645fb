package migration

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
	"github.com/livemigrate/livemigrate/test/builder"
)

// settleRecorder is a SourceClaimHook that records its calls and answers
// "not done" for the first notDone of them.
type settleRecorder struct {
	mu      sync.Mutex
	def     SourceClaimPolicy
	notDone int
	calls   []settleCall
}

type settleCall struct {
	Migration string
	Claim     string
	Opts      SettleOptions
}

func (s *settleRecorder) DefaultPolicy() SourceClaimPolicy { return s.def }

func (s *settleRecorder) Settle(_ context.Context, m Migration, vol Volume, opts SettleOptions) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, settleCall{Migration: m.Name, Claim: vol.ClaimName, Opts: opts})
	return len(s.calls) > s.notDone, nil
}

// TestCleanupSettlesTheSourceClaims: after a successful migration the
// source claims get the policy of the LiveMigration's annotation, else the
// descheduler's default; Succeeded waits until they are settled; a bad
// annotation falls back to the default with a Warning event naming it and
// what to write.
func TestCleanupSettlesTheSourceClaims(t *testing.T) {
	cases := []struct {
		name       string
		annotation *string
		want       SourceClaimPolicy
		wantEvent  string
	}{
		{name: "default", want: SourceClaimRetain},
		{name: "annotation", annotation: ptrTo("Delete"), want: SourceClaimDelete},
		{name: "annotation in lower case", annotation: ptrTo("retain"), want: SourceClaimRetain},
		{name: "bad annotation", annotation: ptrTo("Keep"), want: SourceClaimRetain,
			wantEvent: `annotation livemigrate.io/source-claim-policy: "Keep" is not a source claim policy; write Retain or Delete`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			lm := builder.MakeLiveMigration("ns", "mig", "app").Target("b").Obj()
			if tc.annotation != nil {
				lm.Annotations = map[string]string{AnnotationSourceClaimPolicy: *tc.annotation}
			}
			h := newHarness(t, lm)
			s := &settleRecorder{def: SourceClaimRetain, notDone: 1}
			h.r.Hooks.SourceClaims = s
			h.run(lmv1alpha1.PhaseCleanup, time.Millisecond)
			if len(s.calls) != 0 {
				t.Fatalf("source claims settled before Cleanup: %+v", s.calls)
			}
			if _, err := h.reconcile(); err != nil {
				t.Fatal(err)
			}
			if p := h.lm().Status.Phase; p != lmv1alpha1.PhaseCleanup {
				t.Fatalf("phase = %s with the source claim not settled yet, want Cleanup", p)
			}
			h.run(lmv1alpha1.PhaseSucceeded, time.Millisecond)
			if p := h.lm().Status.Phase; p != lmv1alpha1.PhaseSucceeded {
				t.Fatalf("phase = %s, want Succeeded", p)
			}
			want := settleCall{Migration: "mig", Claim: "data-app-0", Opts: SettleOptions{Policy: tc.want, WorkloadPods: []string{"app-0"}}}
			if diff := cmp.Diff(want, s.calls[len(s.calls)-1]); diff != "" {
				t.Errorf("Settle call (-want +got):\n%s", diff)
			}
			events := drain(h)
			found := false
			for _, e := range events {
				if strings.Contains(e, "InvalidSourceClaimPolicy") {
					found = tc.wantEvent != "" && strings.HasPrefix(e, "Warning") && strings.Contains(e, tc.wantEvent)
					if !found {
						t.Errorf("unexpected event %q", e)
					}
				}
			}
			if tc.wantEvent != "" && !found {
				t.Errorf("no Warning event %q among %q", tc.wantEvent, events)
			}
		})
	}
}

// TestRollbackLeavesTheSourceClaims: a failed migration never settles the
// source claims (the source runs on with them).
func TestRollbackLeavesTheSourceClaims(t *testing.T) {
	lm := builder.MakeLiveMigration("ns", "mig", "app").Target("b").Obj()
	lm.Annotations = map[string]string{AnnotationSourceClaimPolicy: "Delete"}
	h := newHarness(t, lm)
	s := &settleRecorder{def: SourceClaimRetain}
	h.r.Hooks.SourceClaims = s
	h.w.restored = false
	h.run(lmv1alpha1.PhaseRestoring, time.Millisecond)
	h.abort()
	h.run(lmv1alpha1.PhaseFailed, time.Millisecond)
	if len(s.calls) != 0 {
		t.Errorf("source claims settled by a rollback: %+v", s.calls)
	}
}

func drain(h *harness) []string {
	var out []string
	for {
		select {
		case e := <-h.rec.Events:
			out = append(out, e)
		default:
			return out
		}
	}
}

func ptrTo[T any](v T) *T { return &v }
