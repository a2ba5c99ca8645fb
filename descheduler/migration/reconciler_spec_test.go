package migration

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
	"github.com/livemigrate/livemigrate/test/builder"
)

// intercept makes the controller's writes of LiveMigrations go through fns.
func (h *harness) intercept(fns interceptor.Funcs) {
	h.r.Client = interceptor.NewClient(h.c.(client.WithWatch), fns)
}

// TestFinalizerIsPatchedWithoutTheSpec checks that adding and removing the
// finalizer writes metadata.finalizers alone, under the resourceVersion
// read: the API server checks every spec written against the CRD's
// immutability rules, and a spec written back by a typed client is
// respelled (30m as 30m0s, 0.5Gi as 512Mi).
func TestFinalizerIsPatchedWithoutTheSpec(t *testing.T) {
	lm := builder.MakeLiveMigration("ns", "mig", "app").Target("b").Budget(time.Minute).Bandwidth("0.5Gi").
		Timeout(lmv1alpha1.PhasePreCopy, 30*time.Minute).Obj()
	h := newHarness(t, lm)
	var patches []map[string]interface{}
	h.intercept(interceptor.Funcs{
		Update: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.UpdateOption) error {
			if _, ok := obj.(*lmv1alpha1.LiveMigration); ok {
				t.Errorf("LiveMigration %s written whole, spec included", obj.GetName())
			}
			return c.Update(ctx, obj, opts...)
		},
		Patch: func(ctx context.Context, c client.WithWatch, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
			if _, ok := obj.(*lmv1alpha1.LiveMigration); ok {
				data, err := patch.Data(obj)
				if err != nil {
					t.Fatal(err)
				}
				var p map[string]interface{}
				if err := json.Unmarshal(data, &p); err != nil {
					t.Fatal(err)
				}
				patches = append(patches, p)
			}
			return c.Patch(ctx, obj, patch, opts...)
		},
	})

	if _, err := h.reconcile(); err != nil {
		t.Fatal(err)
	}
	if got := h.lm().Finalizers; !cmp.Equal(got, []string{Finalizer}) {
		t.Fatalf("finalizers = %v, want [%s]", got, Finalizer)
	}
	h.run(lmv1alpha1.PhaseSucceeded, time.Second)
	if _, err := h.reconcile(); err != nil {
		t.Fatal(err)
	}
	if got := h.lm(); got.Status.Phase != lmv1alpha1.PhaseSucceeded || len(got.Finalizers) != 0 {
		t.Fatalf("phase %s, finalizers %v; want Succeeded without finalizers", got.Status.Phase, got.Finalizers)
	}
	if len(patches) != 2 {
		t.Fatalf("patches of the LiveMigration = %v, want two (finalizer added, then removed)", patches)
	}
	for _, p := range patches {
		md, _ := p["metadata"].(map[string]interface{})
		if len(p) != 1 || md == nil {
			t.Errorf("patch %v writes more than metadata", p)
			continue
		}
		if _, ok := md["finalizers"]; !ok {
			t.Errorf("patch %v does not write metadata.finalizers", p)
		}
		if rv, _ := md["resourceVersion"].(string); rv == "" {
			t.Errorf("patch %v is not guarded by the resourceVersion", p)
		}
		for k := range md {
			if k != "finalizers" && k != "resourceVersion" {
				t.Errorf("patch %v writes metadata.%s", p, k)
			}
		}
	}
}

// TestInvalidSpecFailsAtOnce checks that a migration whose spec the
// controller cannot act on (stored before the CRD's rules, or written past
// them) ends Failed with reason InvalidSpec, the field and what to write in
// the failure, the Admitted condition and a warning event, in one
// reconcile, without touching anything and without a finalizer.
func TestInvalidSpecFailsAtOnce(t *testing.T) {
	mk := func() *builder.LiveMigrationWrapper {
		return builder.MakeLiveMigration("ns", "mig", "app").Target("b")
	}
	zero := resource.MustParse("0")
	cases := map[string]struct {
		lm       *lmv1alpha1.LiveMigration
		postCopy bool // the PostCopyMigration gate
		want     string
	}{
		"zero timeout": {lm: mk().Timeout(lmv1alpha1.PhaseCheckpointing, 0).Obj(),
			want: `spec.timeouts.checkpointing: Invalid value: "0s": ` + lmv1alpha1.MsgTimeout},
		"negative timeout": {lm: mk().Timeout(lmv1alpha1.PhasePreCopy, -time.Minute).Obj(),
			want: `spec.timeouts.preCopy: Invalid value: "-1m0s": ` + lmv1alpha1.MsgTimeout},
		"zero budget": {lm: mk().Budget(0).Obj(),
			want: `spec.downtimeBudget: Invalid value: "0s": ` + lmv1alpha1.MsgDowntimeBudget},
		"zero bandwidth": {lm: mk().Bandwidth("0").Obj(),
			want: `spec.bandwidthLimit: Invalid value: "0": ` + lmv1alpha1.MsgBandwidthLimit},
		"zero threshold": {lm: func() *lmv1alpha1.LiveMigration {
			lm := mk().Obj()
			lm.Spec.PreCopy = &lmv1alpha1.PreCopySettings{ConvergenceThreshold: &zero}
			return lm
		}(), want: `spec.preCopy.convergenceThreshold: Invalid value: "0": ` + lmv1alpha1.MsgConvergenceThreshold},
		"zero rounds": {lm: func() *lmv1alpha1.LiveMigration {
			lm := mk().Obj()
			lm.Spec.PreCopy = &lmv1alpha1.PreCopySettings{MaxRounds: ptr.To[int32](0)}
			return lm
		}(), want: `spec.preCopy.maxRounds: Invalid value: 0: ` + lmv1alpha1.MsgMaxRounds},
		"unsupported kind": {lm: mk().Kind("DaemonSet").Obj(),
			want: `spec.workloadRef.kind: Invalid value: "DaemonSet": ` + lmv1alpha1.MsgWorkloadKind},
		"unknown memory transfer": {lm: mk().MemoryTransfer("PreCopy").Obj(),
			want: `spec.memoryTransfer: Invalid value: "PreCopy": ` + lmv1alpha1.MsgMemoryTransfer},
		"post-copy with the gate off": {lm: mk().MemoryTransfer(lmv1alpha1.MemoryTransferPostCopy).Obj(),
			want: "spec.memoryTransfer: Forbidden: " + MsgPostCopyGate},
		"post-copy with the gate on": {lm: mk().MemoryTransfer(lmv1alpha1.MemoryTransferPostCopy).Obj(), postCopy: true,
			want: "spec.memoryTransfer: Forbidden: " + MsgPostCopyNotRun},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t, tc.lm)
			h.r.Config.PostCopy = tc.postCopy
			res, err := h.reconcile()
			if err != nil || res.RequeueAfter != 0 {
				t.Fatalf("reconcile = %+v, %v; want done", res, err)
			}
			checkInvalidSpec(t, h, tc.want)
			// Terminal: nothing more happens.
			if res, err := h.reconcile(); err != nil || res.RequeueAfter != 0 {
				t.Fatalf("second reconcile = %+v, %v; want done", res, err)
			}
		})
	}
}

// TestStoredSpecRefusedByTheAPIServerFailsAtOnce checks that a migration the
// API server refuses any write of (its stored spec breaks a CRD rule) is
// failed with InvalidSpec instead of retrying the finalizer forever.
func TestStoredSpecRefusedByTheAPIServerFailsAtOnce(t *testing.T) {
	h := newHarness(t, builder.MakeLiveMigration("ns", "mig", "app").Target("b").Obj())
	refusal := apierrors.NewInvalid(schema.GroupKind{Group: "livemigrate.io", Kind: "LiveMigration"}, "mig", field.ErrorList{
		field.Invalid(field.NewPath("spec", "timeouts"), "", "spec.timeouts is immutable; create a new LiveMigration instead")})
	h.intercept(interceptor.Funcs{
		Patch: func(ctx context.Context, c client.WithWatch, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
			if _, ok := obj.(*lmv1alpha1.LiveMigration); ok {
				return refusal
			}
			return c.Patch(ctx, obj, patch, opts...)
		},
	})
	res, err := h.reconcile()
	if err != nil || res.RequeueAfter != 0 {
		t.Fatalf("reconcile = %+v, %v; want done", res, err)
	}
	checkInvalidSpec(t, h, "spec.timeouts is immutable")
}

func checkInvalidSpec(t *testing.T, h *harness, want string) {
	t.Helper()
	lm := h.lm()
	st := lm.Status
	if st.Phase != lmv1alpha1.PhaseFailed || st.CompletionTime == nil {
		t.Fatalf("phase = %q (completion %v), want Failed", st.Phase, st.CompletionTime)
	}
	if st.Failure == nil || st.Failure.Reason != ReasonInvalidSpec || !strings.Contains(st.Failure.Message, want) ||
		!strings.Contains(st.Failure.Message, "create a corrected one") {
		t.Errorf("failure = %+v, want reason %s and %q", st.Failure, ReasonInvalidSpec, want)
	}
	c := meta.FindStatusCondition(st.Conditions, lmv1alpha1.ConditionAdmitted)
	if c == nil || c.Status != "False" || c.Reason != ReasonInvalidSpec || !strings.Contains(c.Message, want) {
		t.Errorf("Admitted condition = %+v, want False/%s with %q", c, ReasonInvalidSpec, want)
	}
	if len(lm.Finalizers) != 0 {
		t.Errorf("finalizers = %v, want none", lm.Finalizers)
	}
	if calls := h.w.calls(); len(calls) != 0 {
		t.Errorf("hooks called: %v", calls)
	}
	var found bool
	for len(h.rec.Events) > 0 {
		if e := <-h.rec.Events; strings.HasPrefix(e, "Warning "+ReasonInvalidSpec+" ") && strings.Contains(e, want) {
			found = true
		}
	}
	if !found {
		t.Errorf("no Warning %s event with %q", ReasonInvalidSpec, want)
	}
}
