package scenario

import (
	"context"
	"fmt"

	clusterv1alpha1 "github.com/karmada-io/karmada/pkg/apis/cluster/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// HoldTaint keeps Karmada from placing new workloads in a member while a
// test steers where its workloads land.
var HoldTaint = corev1.Taint{Key: "lab.livemigrate.io/hold", Effect: corev1.TaintEffectNoSchedule}

// SetClusterTaint adds (or, with remove, removes) a taint, by key, on a
// member's Cluster in the Karmada plane; k must know the Cluster type.
func SetClusterTaint(ctx context.Context, k client.Client, cluster string, taint corev1.Taint, remove bool) error {
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		c := &clusterv1alpha1.Cluster{}
		if err := k.Get(ctx, types.NamespacedName{Name: cluster}, c); err != nil {
			return err
		}
		kept := c.Spec.Taints[:0]
		for _, t := range c.Spec.Taints {
			if t.Key != taint.Key {
				kept = append(kept, t)
			}
		}
		if !remove {
			kept = append(kept, taint)
		}
		c.Spec.Taints = kept
		return k.Update(ctx, c)
	})
	if err != nil {
		return fmt.Errorf("tainting %s: %w", cluster, err)
	}
	return nil
}
