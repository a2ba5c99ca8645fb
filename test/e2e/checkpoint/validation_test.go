package checkpoint

import (
	"context"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	agentv1alpha1 "github.com/livemigrate/livemigrate/api/agent/v1alpha1"
	"github.com/livemigrate/livemigrate/test/builder"
)

// TestCRDValidation: the apiserver enforces the CRDs' CEL rules.
func TestCRDValidation(t *testing.T) {
	e := requireEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	me := e.member(0)
	const ns = "e2e-validation"
	createNamespace(ctx, t, me, ns)
	pc := builder.MakePodCheckpoint(ns, "v", "no-such-node", "p", "m").Repository("r.example/x").Obj()
	if err := me.CR.Create(ctx, pc); err != nil {
		t.Fatal(err)
	}
	if pc.Spec.Action != agentv1alpha1.CheckpointActionCheckpoint || pc.Spec.TimeoutSeconds != 120 {
		t.Errorf("defaults not applied: action %q timeout %d", pc.Spec.Action, pc.Spec.TimeoutSeconds)
	}
	update := func(mut func(*agentv1alpha1.PodCheckpoint)) error {
		return retry.RetryOnConflict(retry.DefaultRetry, func() error {
			got := &agentv1alpha1.PodCheckpoint{}
			if err := me.CR.Get(ctx, client.ObjectKeyFromObject(pc), got); err != nil {
				return err
			}
			mut(got)
			return me.CR.Update(ctx, got)
		})
	}
	cases := []struct {
		name    string
		mut     func(*agentv1alpha1.PodCheckpoint)
		invalid bool
	}{
		{"node is immutable", func(p *agentv1alpha1.PodCheckpoint) { p.Spec.NodeName = "other" }, true},
		{"pod is immutable", func(p *agentv1alpha1.PodCheckpoint) { p.Spec.PodName = "q" }, true},
		{"unknown action", func(p *agentv1alpha1.PodCheckpoint) { p.Spec.Action = "Explode" }, true},
		{"checkpoint to thaw", func(p *agentv1alpha1.PodCheckpoint) { p.Spec.Action = agentv1alpha1.CheckpointActionThaw }, false},
		{"thaw back to checkpoint", func(p *agentv1alpha1.PodCheckpoint) { p.Spec.Action = agentv1alpha1.CheckpointActionCheckpoint }, true},
		{"thaw to release", func(p *agentv1alpha1.PodCheckpoint) { p.Spec.Action = agentv1alpha1.CheckpointActionRelease }, true},
	}
	for _, tc := range cases {
		err := update(tc.mut)
		if tc.invalid && !apierrors.IsInvalid(err) {
			t.Errorf("%s: got %v, want Invalid", tc.name, err)
		}
		if !tc.invalid && err != nil {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
	pr := &agentv1alpha1.PodRestore{
		ObjectMeta: metav1.ObjectMeta{Name: "v", Namespace: ns},
		Spec:       agentv1alpha1.PodRestoreSpec{MigrationUID: "m", Workload: agentv1alpha1.WorkloadReference{Kind: "StatefulSet", Name: "w"}},
	}
	if err := me.CR.Create(ctx, pr); !apierrors.IsInvalid(err) {
		t.Errorf("PodRestore without checkpoints: got %v, want Invalid", err)
	}
	pr.Spec.Workload.Kind = "Job"
	pr.Spec.Checkpoints = []agentv1alpha1.RestoreCheckpoint{{Name: "c", Containers: []agentv1alpha1.ContainerImage{{Name: "app", Image: "r/x@sha256:00"}}}}
	if err := me.CR.Create(ctx, pr); !apierrors.IsInvalid(err) {
		t.Errorf("PodRestore of a Job: got %v, want Invalid", err)
	}
	pr.Spec.Workload.Kind = "StatefulSet"
	if err := me.CR.Create(ctx, pr); err != nil {
		t.Fatalf("valid PodRestore: %v", err)
	}
	// The restore controller writes status concurrently: retry conflicts.
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		got := &agentv1alpha1.PodRestore{}
		if err := me.CR.Get(ctx, client.ObjectKeyFromObject(pr), got); err != nil {
			return err
		}
		got.Spec.Checkpoints[0].Containers[0].Image = "r/y@sha256:11"
		return me.CR.Update(ctx, got)
	})
	if !apierrors.IsInvalid(err) {
		t.Errorf("changing a PodRestore's checkpoints: got %v, want Invalid", err)
	}
}
