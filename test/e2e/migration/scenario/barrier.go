package scenario

import (
	"context"
	"fmt"
	"slices"
	"time"

	policyv1alpha1 "github.com/karmada-io/karmada/pkg/apis/policy/v1alpha1"
	workv1alpha2 "github.com/karmada-io/karmada/pkg/apis/work/v1alpha2"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// barrierNamespace holds the probes of WaitSchedulable.
const barrierNamespace = "default"

// WaitSchedulable waits until Karmada's scheduler places a new workload in
// exactly the clusters want, and no other: a test that taints clusters to
// steer where its next workload lands calls it after the taints, because
// the scheduler decides from its own informer cache, which may not have
// seen a taint set a moment ago. It probes with a ConfigMap propagated to
// every cluster (Duplicated): a probe scheduled before the scheduler saw
// the taints is deleted and a new one tried.
func (e *Env) WaitSchedulable(ctx context.Context, want ...string) error {
	k := e.Karmada.CR
	want = slices.Clone(want)
	slices.Sort(want)
	var last []string
	for attempt := 0; ; attempt++ {
		name := fmt.Sprintf("lab-schedulable-probe-%d-%d", time.Now().UnixNano(), attempt)
		got, err := e.probePlacement(ctx, k, name)
		if err != nil {
			return err
		}
		if slices.Equal(got, want) {
			return nil
		}
		last = got
		select {
		case <-ctx.Done():
			return fmt.Errorf("the Karmada scheduler still places new workloads in %v, want %v: %w", last, want, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// probePlacement creates a probe ConfigMap and its PropagationPolicy,
// returns the clusters its binding was scheduled to (sorted) and deletes
// both.
func (e *Env) probePlacement(ctx context.Context, k client.Client, name string) ([]string, error) {
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: barrierNamespace, Name: name}}
	pp := &policyv1alpha1.PropagationPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: barrierNamespace, Name: name},
		Spec: policyv1alpha1.PropagationSpec{
			ResourceSelectors: []policyv1alpha1.ResourceSelector{{APIVersion: "v1", Kind: "ConfigMap", Name: name}},
		},
	}
	defer func() {
		for _, o := range []client.Object{cm, pp} {
			if err := k.Delete(context.Background(), o); err != nil && !apierrors.IsNotFound(err) {
				e.Logf("deleting the scheduling probe %T %s: %v", o, name, err)
			}
		}
	}()
	if err := create(ctx, k, pp); err != nil {
		return nil, err
	}
	if err := create(ctx, k, cm); err != nil {
		return nil, err
	}
	var got []string
	err := poll(ctx, "the scheduling probe "+name+" to be scheduled", func() (bool, string, error) {
		rb := &workv1alpha2.ResourceBinding{}
		if err := k.Get(ctx, client.ObjectKey{Namespace: barrierNamespace, Name: name + "-configmap"}, rb); err != nil {
			return false, err.Error(), nil
		}
		if len(rb.Spec.Clusters) == 0 {
			return false, "not scheduled", nil
		}
		got = got[:0]
		for _, c := range rb.Spec.Clusters {
			got = append(got, c.Name)
		}
		slices.Sort(got)
		return true, "", nil
	})
	return got, err
}
