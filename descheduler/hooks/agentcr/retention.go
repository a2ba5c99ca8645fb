package agentcr

import (
	"context"
	"errors"
	"fmt"
	"time"

	clusterv1alpha1 "github.com/karmada-io/karmada/pkg/apis/cluster/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"
)

// DefaultSweepInterval is how often the RetentionSweeper looks for
// retained claims whose retention ended.
const DefaultSweepInterval = 5 * time.Minute

// RetentionSweeper deletes, in every member cluster, the claims retained
// after a migration (LabelRetained) whose AnnotationRetainedUntil has
// passed, with the volume a migration provisioned for them. A claim that a
// pod mounts, or whose retained-until is missing or unreadable, is kept. It
// runs on the leader only.
type RetentionSweeper struct {
	Clients ClientGetter
	// Clusters reads the Karmada Cluster objects.
	Clusters client.Reader
	Clock    clock.PassiveClock
	// Interval between sweeps; DefaultSweepInterval when 0.
	Interval time.Duration
}

var _ manager.Runnable = &RetentionSweeper{}

// Start sweeps every Interval until ctx ends.
func (s *RetentionSweeper) Start(ctx context.Context) error {
	log := klog.FromContext(ctx).WithName("retention")
	ctx = klog.NewContext(ctx, log)
	every := s.Interval
	if every <= 0 {
		every = DefaultSweepInterval
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if _, err := s.Sweep(ctx); err != nil {
			log.Error(err, "Sweeping retained claims failed")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Sweep makes one pass over the member clusters and returns how many
// claims it deleted. A cluster it cannot reach is skipped and reported in
// the error; the others are swept.
func (s *RetentionSweeper) Sweep(ctx context.Context) (int, error) {
	log := klog.FromContext(ctx)
	var clusters clusterv1alpha1.ClusterList
	if err := s.Clusters.List(ctx, &clusters); err != nil {
		return 0, fmt.Errorf("listing clusters: %w", err)
	}
	now := s.Clock.Now()
	deleted := 0
	var errs []error
	for _, cl := range clusters.Items {
		mc, err := s.Clients.Get(ctx, cl.Name)
		if err != nil {
			errs = append(errs, fmt.Errorf("cluster %s: %w", cl.Name, err))
			continue
		}
		var claims corev1.PersistentVolumeClaimList
		if err := mc.List(ctx, &claims, client.MatchingLabels{LabelRetained: "true"}); err != nil {
			errs = append(errs, fmt.Errorf("listing retained claims of %s: %w", cl.Name, err))
			continue
		}
		for i := range claims.Items {
			c := &claims.Items[i]
			until, err := time.Parse(time.RFC3339, c.Annotations[AnnotationRetainedUntil])
			if err != nil || now.Before(until) || !c.DeletionTimestamp.IsZero() {
				continue
			}
			user, err := otherUser(ctx, mc, c, nil)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if user != "" {
				log.V(2).Info("Retention ended but a pod mounts the claim; kept", "cluster", cl.Name, "claim", klog.KObj(c), "pod", user)
				continue
			}
			if err := deleteRetained(ctx, mc, cl.Name, c); err != nil {
				errs = append(errs, err)
				continue
			}
			deleted++
			log.Info("Deleted a retained claim whose retention ended", "cluster", cl.Name, "claim", klog.KObj(c),
				"retainedFor", c.Annotations[AnnotationRetainedFor], "retainedUntil", c.Annotations[AnnotationRetainedUntil])
		}
	}
	return deleted, errors.Join(errs...)
}
