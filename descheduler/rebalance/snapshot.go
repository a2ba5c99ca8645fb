package rebalance

import (
	"context"
	"fmt"
	"time"

	clusterv1alpha1 "github.com/karmada-io/karmada/pkg/apis/cluster/v1alpha1"
	workv1alpha2 "github.com/karmada-io/karmada/pkg/apis/work/v1alpha2"
	"k8s.io/apimachinery/pkg/api/meta"

	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
	"github.com/livemigrate/livemigrate/descheduler/policy"
	"github.com/livemigrate/livemigrate/descheduler/trigger"
	"github.com/livemigrate/livemigrate/plugins/capacity"
)

// Objects are what a round reads, as listed from the informer caches.
type Objects struct {
	Clusters   []clusterv1alpha1.Cluster
	Bindings   []workv1alpha2.ResourceBinding
	Migrations []lmv1alpha1.LiveMigration
	// Created holds the workloads (Kind/namespace/name) this process
	// created a LiveMigration for that the cache may not show yet.
	Created map[string]bool
}

// Sizing resolves what a snapshot needs per candidate beyond the objects.
type Sizing struct {
	// Policy resolves the workload's policy (policy.Resolver.ForBinding).
	Policy func(ctx context.Context, rb *workv1alpha2.ResourceBinding) (*policy.Policy, error)
	// VolumeBytes is the size of the workload's volumes (nil: 0).
	VolumeBytes func(ctx context.Context, rb *workv1alpha2.ResourceBinding) (int64, error)
	// DefaultBudget applies without livemigrate.io/downtime-budget.
	DefaultBudget time.Duration
	// DefaultCheckpointEstimate is the checkpoint size per replica without
	// a memory request.
	DefaultCheckpointEstimate int64
}

// Key returns Kind/namespace/name of the workload rb propagates.
func Key(rb *workv1alpha2.ResourceBinding) string {
	return rb.Spec.Resource.Kind + "/" + rb.Namespace + "/" + rb.Spec.Resource.Name
}

func migrationKey(lm *lmv1alpha1.LiveMigration) string {
	return lm.Spec.WorkloadRef.Kind + "/" + lm.Namespace + "/" + lm.Spec.WorkloadRef.Name
}

// endOf is when a finished migration ended.
func endOf(lm *lmv1alpha1.LiveMigration) time.Time {
	if t := lm.Status.CompletionTime; t != nil {
		return t.Time
	}
	if ts := lm.Status.PhaseTransitions; len(ts) > 0 {
		return ts[len(ts)-1].EnteredAt.Time
	}
	return lm.CreationTimestamp.Time
}

// Snapshot builds the input of a round: every cluster's figures, the moves
// to take into account, and the workloads bound to the sources with their
// requests, sizes and eligibility. Only the bindings on a source are
// resolved further (policy, volumes); the others cost one look at their
// clusters.
func Snapshot(ctx context.Context, objs *Objects, cfg Config, sz Sizing, now time.Time) (*Input, error) {
	in := &Input{Now: now}
	for i := range objs.Clusters {
		c := &objs.Clusters[i]
		in.Clusters = append(in.Clusters, Cluster{Name: c.Name,
			Ready: c.DeletionTimestamp.IsZero() && meta.IsStatusConditionTrue(c.Status.Conditions, clusterv1alpha1.ClusterConditionReady),
			Usage: capacity.UsageOf(c)})
	}
	// Migrations first: the moves the round counts, and each workload's
	// active migration and last end.
	type history struct {
		active  *lmv1alpha1.LiveMigration
		last    *lmv1alpha1.LiveMigration
		lastEnd time.Time
	}
	hist := map[string]*history{}
	horizon := max(cfg.Cooldown, cfg.Settle)
	var moving []*lmv1alpha1.LiveMigration
	for i := range objs.Migrations {
		lm := &objs.Migrations[i]
		key := migrationKey(lm)
		h := hist[key]
		if h == nil {
			h = &history{}
			hist[key] = h
		}
		if !lm.Status.Phase.IsTerminal() {
			h.active = lm
			moving = append(moving, lm)
			continue
		}
		if end := endOf(lm); end.After(h.lastEnd) {
			h.last, h.lastEnd = lm, end
		}
		if now.Sub(endOf(lm)) < horizon {
			moving = append(moving, lm)
		}
	}
	bindings := map[string]*workv1alpha2.ResourceBinding{}
	for i := range objs.Bindings {
		rb := &objs.Bindings[i]
		if _, ok := hist[Key(rb)]; ok {
			bindings[Key(rb)] = rb
		}
	}
	for _, lm := range moving {
		m := Move{Workload: migrationKey(lm), From: lm.Status.SourceCluster, To: lm.Status.TargetCluster,
			Rebalance: policy.TriggerOf(lm.Labels) == policy.TriggerRebalance}
		if m.To == "" {
			m.To = lm.Spec.TargetCluster
		}
		if lm.Status.Phase.IsTerminal() {
			m.End, m.Succeeded = endOf(lm), lm.Status.Phase == lmv1alpha1.PhaseSucceeded
		}
		if rb := bindings[m.Workload]; rb != nil {
			m.Requests = requests(rb)
			if m.From == "" && m.End.IsZero() && len(rb.Spec.Clusters) == 1 {
				m.From = rb.Spec.Clusters[0].Name // Pending: the source is where it runs
			}
		}
		in.Moves = append(in.Moves, m)
	}

	_, _, sources := newRound(in, cfg, nil)
	if len(sources) == 0 {
		return in, nil
	}
	for i := range objs.Bindings {
		rb := &objs.Bindings[i]
		source := ""
		for _, tc := range rb.Spec.Clusters {
			if sources[tc.Name] {
				source = tc.Name
				break
			}
		}
		ref := rb.Spec.Resource
		if source == "" || ref.APIVersion != "apps/v1" || (ref.Kind != "Deployment" && ref.Kind != "StatefulSet") || !rb.DeletionTimestamp.IsZero() {
			continue
		}
		w, err := candidate(ctx, rb, source, sz)
		if err != nil {
			return nil, err
		}
		if w == nil {
			continue
		}
		h := hist[w.Key()]
		switch {
		case w.Ineligible != "":
		case h != nil && h.active != nil:
			w.Ineligible, w.Detail = OutcomeMigrating, "LiveMigration "+h.active.Name+" is in progress"
		case objs.Created[w.Key()]:
			w.Ineligible, w.Detail = OutcomeMigrating, "a LiveMigration was just created"
		case h != nil && h.last != nil && now.Sub(h.lastEnd) < cfg.Cooldown:
			w.Ineligible, w.Detail = OutcomeCooldown, fmt.Sprintf("LiveMigration %s ended %s ago; it may move again after the cooldown of %s",
				h.last.Name, now.Sub(h.lastEnd).Round(time.Second), cfg.Cooldown)
		}
		in.Workloads = append(in.Workloads, w)
	}
	return in, nil
}

// candidate describes a workload on a source; nil when it is not opted in
// (left alone, not reported).
func candidate(ctx context.Context, rb *workv1alpha2.ResourceBinding, source string, sz Sizing) (*Workload, error) {
	pol, err := sz.Policy(ctx, rb)
	if err != nil {
		return nil, err
	}
	ref := rb.Spec.Resource
	w := &Workload{Kind: ref.Kind, Namespace: rb.Namespace, Name: ref.Name, Binding: rb, Cluster: source, Requests: requests(rb), Policy: pol}
	switch {
	case len(pol.Invalid) > 0:
		w.Ineligible, w.Detail = OutcomeInvalidPolicy, "not opted in: "+pol.InvalidMessage()
		return w, nil
	case !pol.OptedIn():
		return nil, nil
	case !pol.Rebalance:
		w.Ineligible, w.Detail = OutcomeRebalanceOff, policy.AnnotationRebalance+" is false ("+pol.From[policy.AnnotationRebalance].String()+")"
		return w, nil
	case len(rb.Spec.Clusters) > 1:
		w.Ineligible, w.Detail = OutcomeNotHandled, fmt.Sprintf("placed on %d clusters: a live migration moves a workload placed on one cluster", len(rb.Spec.Clusters))
		return w, nil
	}
	w.Budget = sz.DefaultBudget
	if pol.DowntimeBudget != nil {
		w.Budget = *pol.DowntimeBudget
	}
	w.MemoryBytes = trigger.CheckpointBytes(rb, sz.DefaultCheckpointEstimate)
	if sz.VolumeBytes != nil {
		if w.VolumeBytes, err = sz.VolumeBytes(ctx, rb); err != nil {
			return nil, err
		}
	}
	return w, nil
}

// requests is what the workload holds on its cluster: its replicas' requests
// and one pod each.
func requests(rb *workv1alpha2.ResourceBinding) Amounts {
	var a Amounts
	replicas := int64(rb.Spec.Replicas)
	if len(rb.Spec.Clusters) == 1 && rb.Spec.Clusters[0].Replicas > 0 {
		replicas = int64(rb.Spec.Clusters[0].Replicas)
	}
	if rr := rb.Spec.ReplicaRequirements; rr != nil {
		for i, name := range capacity.UsageNames {
			if q, ok := rr.ResourceRequest[name]; ok {
				a[i] = capacity.AmountOf(name, q) * replicas
			}
		}
	}
	a[capacity.UsagePods] += replicas
	return a
}
