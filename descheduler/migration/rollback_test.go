package migration

import (
	"context"
	"testing"
	"time"

	workv1alpha1 "github.com/karmada-io/karmada/pkg/apis/work/v1alpha1"
	workv1alpha2 "github.com/karmada-io/karmada/pkg/apis/work/v1alpha2"
	"github.com/karmada-io/karmada/pkg/util/names"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
	"github.com/livemigrate/livemigrate/test/builder"
)

// After the binding is reverted Karmada may still apply its earlier Work to
// the target: the workload seen gone there is not gone until the Work is.
// The source is thawed only once no Work of the binding is left in the
// target's execution namespace.
func TestRollbackThawsOnlyOnceTheTargetWorkIsGone(t *testing.T) {
	for _, byLabel := range []bool{false, true} {
		name := "work by name"
		if byLabel {
			name = "work by the binding's permanent id"
		}
		t.Run(name, func(t *testing.T) {
			rb := builder.MakeBinding("ns", "app").SingleCluster().ScheduledOn(1, "a").Obj()
			work := &workv1alpha1.Work{ObjectMeta: metav1.ObjectMeta{
				Namespace: names.GenerateExecutionSpaceName("b"), Name: names.GenerateWorkName("Deployment", "app", "ns")}}
			if byLabel {
				rb.Labels = map[string]string{workv1alpha2.ResourceBindingPermanentIDLabel: "perm-1"}
				work.Name = "app-other-name"
				work.Labels = map[string]string{workv1alpha2.ResourceBindingPermanentIDLabel: "perm-1"}
			}
			objs := append(defaultObjects()[:3:3], rb, work)
			h := newHarness(t, builder.MakeLiveMigration("ns", "mig", "app").Target("b").Obj(), objs...)
			h.w.ready = false
			h.run(lmv1alpha1.PhaseVerifying, time.Millisecond)
			h.w.fail["ready"] = NewStepFailedError("CrashLoop", "target pod crash-loops")
			for i := 0; i < 4; i++ {
				h.reconcileLogged()
				h.clock.Step(time.Millisecond)
			}
			if p := h.lm().Status.Phase; p != lmv1alpha1.PhaseRollingBack {
				t.Fatalf("phase = %s while the target's Work exists, want RollingBack", p)
			}
			if n := h.w.count("thaw:app-0"); n != 0 {
				t.Fatalf("source thawed while Karmada's Work for the target still exists: %v", h.w.calls())
			}
			if got := h.binding().Spec.Clusters; len(got) != 1 || got[0].Name != "a" {
				t.Fatalf("binding not reverted first: %+v", got)
			}
			// Karmada removes the orphaned Work.
			if err := h.c.Delete(h.ctx, work); err != nil {
				t.Fatal(err)
			}
			h.run(lmv1alpha1.PhaseFailed, time.Millisecond)
			if h.w.count("thaw:app-0") != 1 {
				t.Errorf("source not thawed once after the Work went: %v", h.w.calls())
			}
			var order []string
			for _, c := range h.w.calls() {
				if c == "removeWorkload:b" || c == "thaw:app-0" {
					order = append(order, c)
				}
			}
			if len(order) < 2 || order[0] != "removeWorkload:b" || order[len(order)-1] != "thaw:app-0" {
				t.Errorf("target workload removal and thaw: %v, want the removal (after the Work went) before the thaw", order)
			}
		})
	}
}

// The Work is read from the API server (APIReader), not from a cache that
// may not have seen it yet: a Work the cache misses still holds the thaw.
func TestRollbackReadsTheWorkFromTheAPIServer(t *testing.T) {
	h := newHarness(t, builder.MakeLiveMigration("ns", "mig", "app").Target("b").Obj())
	work := &workv1alpha1.Work{ObjectMeta: metav1.ObjectMeta{
		Namespace: names.GenerateExecutionSpaceName("b"), Name: names.GenerateWorkName("Deployment", "app", "ns")}}
	h.r.APIReader = worksFrom{Reader: h.c, works: fake.NewClientBuilder().WithScheme(builder.Scheme()).WithObjects(work).Build()}
	h.w.ready = false
	h.run(lmv1alpha1.PhaseVerifying, time.Millisecond)
	h.w.fail["ready"] = NewStepFailedError("CrashLoop", "target pod crash-loops")
	for i := 0; i < 4; i++ {
		h.reconcileLogged()
	}
	if p := h.lm().Status.Phase; p != lmv1alpha1.PhaseRollingBack || h.w.count("thaw:app-0") != 0 {
		t.Fatalf("phase %s, thaws %d: the cache has no Work but the API server has; want RollingBack without a thaw", p, h.w.count("thaw:app-0"))
	}
}

// worksFrom reads Works from works (the API server) and everything else
// from the embedded Reader (the cache, here the same store).
type worksFrom struct {
	client.Reader
	works client.Reader
}

func (r worksFrom) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	if _, ok := obj.(*workv1alpha1.Work); ok {
		return r.works.Get(ctx, key, obj, opts...)
	}
	return r.Reader.Get(ctx, key, obj, opts...)
}

func (r worksFrom) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	if _, ok := list.(*workv1alpha1.WorkList); ok {
		return r.works.List(ctx, list, opts...)
	}
	return r.Reader.List(ctx, list, opts...)
}

// A migration is Succeeded only once its frozen source is gone: Cleanup
// waits while Karmada's Work for the source still exists (Karmada may still
// apply it, so the workload is not touched meanwhile), then until the
// source workload and its pods are gone.
func TestCleanupSucceedsOnlyOnceTheSourceIsGone(t *testing.T) {
	work := &workv1alpha1.Work{ObjectMeta: metav1.ObjectMeta{
		Namespace: names.GenerateExecutionSpaceName("a"), Name: names.GenerateWorkName("Deployment", "app", "ns")}}
	h := newHarness(t, builder.MakeLiveMigration("ns", "mig", "app").Target("b").Obj(), append(defaultObjects(), work)...)
	h.run(lmv1alpha1.PhaseCleanup, time.Millisecond)
	for i := 0; i < 4; i++ {
		h.reconcileLogged()
	}
	if p := h.lm().Status.Phase; p != lmv1alpha1.PhaseCleanup {
		t.Fatalf("phase = %s while Karmada's Work for the source exists, want Cleanup", p)
	}
	if n := h.w.count("removeWorkload:a"); n != 0 {
		t.Fatalf("the source workload was touched while its Work exists: %v", h.w.calls())
	}
	// Karmada removes the source's Work; its workload takes two more looks
	// to be gone.
	if err := h.c.Delete(h.ctx, work); err != nil {
		t.Fatal(err)
	}
	h.w.removeCallsBeforeGone = 2
	for i := 0; i < 2; i++ {
		h.reconcileLogged()
	}
	if p := h.lm().Status.Phase; p != lmv1alpha1.PhaseCleanup {
		t.Fatalf("phase = %s while the source workload is not gone, want Cleanup", p)
	}
	h.run(lmv1alpha1.PhaseSucceeded, time.Millisecond)
	if n := h.w.count("removeWorkload:a"); n != 3 {
		t.Errorf("the source's removal was checked %d times, want until gone (3)", n)
	}
}
