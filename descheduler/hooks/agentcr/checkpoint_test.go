package agentcr

import (
	"context"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	agentv1alpha1 "github.com/livemigrate/livemigrate/api/agent/v1alpha1"
	"github.com/livemigrate/livemigrate/descheduler/migration"
)

// A PodCheckpoint deleted during a migration fails the step instead of
// being reported frozen or checkpointed; a thaw of it is awaited until the
// agent (whose finalizer thaws first) lets it go.
func TestDeletedCheckpointFailsTheStepAndThawIsAwaited(t *testing.T) {
	ctx := context.Background()
	src := member(sourcePod())
	h := &Checkpoint{Clients: clients{"a": src}, Destination: agentv1alpha1.CheckpointDestination{Repository: "reg:5000/lm"}}
	pod := migration.Pod{Name: "db-0", Node: "n1", Containers: []string{"db"}}
	if _, err := h.Freeze(ctx, mig, pod); err != nil {
		t.Fatal(err)
	}
	key := types.NamespacedName{Namespace: "ns", Name: "db-0-01234567"}
	pc := &agentv1alpha1.PodCheckpoint{}
	if err := src.Get(ctx, key, pc); err != nil {
		t.Fatal(err)
	}
	// The agent froze the pod and holds the object with its finalizer.
	pc.Finalizers = []string{"agent.livemigrate.io/archives"}
	if err := src.Update(ctx, pc); err != nil {
		t.Fatal(err)
	}
	pc.Status.Phase = agentv1alpha1.PodCheckpointCheckpointed
	if err := src.Status().Update(ctx, pc); err != nil {
		t.Fatal(err)
	}
	if err := src.Delete(ctx, pc); err != nil {
		t.Fatal(err)
	}
	for name, call := range map[string]func(context.Context, migration.Migration, migration.Pod) (migration.CheckpointState, error){
		"Freeze": h.Freeze, "Checkpoint": h.Checkpoint, "Transfer": h.Transfer,
	} {
		cs, err := call(ctx, mig, pod)
		if !migration.IsStepFailed(err) || !strings.Contains(err.Error(), "was deleted") || cs.Pushed {
			t.Errorf("%s of a deleted PodCheckpoint = %+v, %v; want a StepFailedError saying it was deleted", name, cs, err)
		}
	}
	done, err := h.Thaw(ctx, mig, pod)
	if err != nil || done {
		t.Fatalf("Thaw = %v, %v; want not done while the PodCheckpoint is being deleted", done, err)
	}
	if err := src.Get(ctx, key, pc); err != nil || pc.Spec.Action != agentv1alpha1.CheckpointActionThaw {
		t.Fatalf("action = %q (%v), want Thaw set on the PodCheckpoint being deleted", pc.Spec.Action, err)
	}
	// The agent thawed the pod and let the PodCheckpoint go.
	pc.Finalizers = nil
	if err := src.Update(ctx, pc); client.IgnoreNotFound(err) != nil {
		t.Fatal(err)
	}
	if done, err := h.Thaw(ctx, mig, pod); err != nil || !done {
		t.Fatalf("Thaw = %v, %v once gone; want done", done, err)
	}
}
