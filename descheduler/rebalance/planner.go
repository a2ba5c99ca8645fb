package rebalance

import (
	"context"
	"fmt"
	"time"

	clusterv1alpha1 "github.com/karmada-io/karmada/pkg/apis/cluster/v1alpha1"
	workv1alpha2 "github.com/karmada-io/karmada/pkg/apis/work/v1alpha2"
	"github.com/karmada-io/karmada/pkg/scheduler/framework"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
	"github.com/livemigrate/livemigrate/descheduler/options"
	"github.com/livemigrate/livemigrate/descheduler/policy"
)

// Planner computes a round from what a reader serves: the descheduler's
// informer caches, or the API server for `kubectl livemigrate plan
// --rebalance`.
type Planner struct {
	Reader client.Reader
	// Plugins are the Filter plugins a target must pass (as the placement
	// of a migration runs them).
	Plugins []framework.Plugin
	Config  Config
	// DefaultBudget is --default-downtime-budget, DefaultCheckpointEstimate
	// --default-checkpoint-estimate and DowntimeHistory --downtime-history.
	DefaultBudget             time.Duration
	DefaultCheckpointEstimate int64
	DowntimeHistory           int
}

// NewPlanner is the decision with the descheduler's flags, reading from
// reader and filtering targets with plugins.
func NewPlanner(o *options.Options, reader client.Reader, plugins []framework.Plugin) *Planner {
	return &Planner{
		Reader:  reader,
		Plugins: plugins,
		Config: Config{
			Bands:    Bands{High: float64(o.RebalanceHigh) / 100, Low: float64(o.RebalanceLow) / 100},
			Cooldown: o.RebalanceCooldown, MaxMoves: o.RebalanceMaxMovesPerRound, Settle: DefaultSettle,
			MaxActive: o.MaxActive, MaxActivePerCluster: o.MaxActivePerCluster, Bandwidth: o.DefaultBandwidth.Value(),
		},
		DefaultBudget:             o.DefaultDowntimeBudget,
		DefaultCheckpointEstimate: o.DefaultCheckpointEstimate.Value(),
		DowntimeHistory:           o.DowntimeHistory,
	}
}

// List reads a round's objects. From an informer cache nothing is copied:
// a round only reads them.
func List(ctx context.Context, c client.Reader) (*Objects, error) {
	var clusters clusterv1alpha1.ClusterList
	if err := c.List(ctx, &clusters, client.UnsafeDisableDeepCopy); err != nil {
		return nil, fmt.Errorf("listing member clusters: %w", err)
	}
	var bindings workv1alpha2.ResourceBindingList
	if err := c.List(ctx, &bindings, client.UnsafeDisableDeepCopy); err != nil {
		return nil, fmt.Errorf("listing ResourceBindings: %w", err)
	}
	var migrations lmv1alpha1.LiveMigrationList
	if err := c.List(ctx, &migrations, client.UnsafeDisableDeepCopy); err != nil {
		return nil, fmt.Errorf("listing LiveMigrations: %w", err)
	}
	return &Objects{Clusters: clusters.Items, Bindings: bindings.Items, Migrations: migrations.Items}, nil
}

// Plan lists the objects and decides a round at now; created holds the
// workloads whose LiveMigration the caller created and the cache may not
// show yet.
func (p *Planner) Plan(ctx context.Context, now time.Time, created map[string]bool) (*Objects, *Plan, error) {
	objs, err := List(ctx, p.Reader)
	if err != nil {
		return nil, nil, err
	}
	objs.Created = created
	resolver := &policy.Resolver{Client: p.Reader}
	in, err := Snapshot(ctx, objs, p.Config, Sizing{
		Policy:                    resolver.ForBinding,
		VolumeBytes:               p.volumeBytes,
		DefaultBudget:             p.DefaultBudget,
		DefaultCheckpointEstimate: p.DefaultCheckpointEstimate,
	}, now)
	if err != nil {
		return nil, nil, err
	}
	env := NewPluginEnv(ctx, p.Plugins, objs, p.DowntimeHistory, p.Config.Bandwidth)
	return objs, Decide(in, p.Config, env), nil
}

// volumeBytes is what a StatefulSet's volume claim templates request, for
// all its replicas; other kinds count none.
func (p *Planner) volumeBytes(ctx context.Context, rb *workv1alpha2.ResourceBinding) (int64, error) {
	ref := rb.Spec.Resource
	if ref.Kind != "StatefulSet" {
		return 0, nil
	}
	sts := &appsv1.StatefulSet{}
	if err := p.Reader.Get(ctx, types.NamespacedName{Namespace: rb.Namespace, Name: ref.Name}, sts); err != nil {
		if apierrors.IsNotFound(err) {
			return 0, nil
		}
		return 0, fmt.Errorf("getting StatefulSet %s/%s: %w", rb.Namespace, ref.Name, err)
	}
	var perReplica int64
	for _, t := range sts.Spec.VolumeClaimTemplates {
		if q, ok := t.Spec.Resources.Requests[corev1.ResourceStorage]; ok {
			perReplica += q.Value()
		}
	}
	replicas := int64(1)
	if sts.Spec.Replicas != nil {
		replicas = int64(*sts.Spec.Replicas)
	}
	return perReplica * replicas, nil
}
