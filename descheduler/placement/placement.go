package placement

import (
	"context"
	"fmt"
	"sort"

	clusterv1alpha1 "github.com/karmada-io/karmada/pkg/apis/cluster/v1alpha1"
	workv1alpha2 "github.com/karmada-io/karmada/pkg/apis/work/v1alpha2"
	"github.com/karmada-io/karmada/pkg/scheduler/framework"
	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Candidate is one member cluster considered as a target.
type Candidate struct {
	Cluster string `json:"cluster"`
	// Feasible is false when the cluster was filtered out.
	Feasible bool `json:"feasible"`
	// Score is the sum of the plugins' normalized scores.
	Score int64 `json:"score"`
	// Scores by plugin name.
	Scores map[string]int64 `json:"scores,omitempty"`
	// Reasons it was filtered out or not chosen.
	Reasons []string `json:"reasons,omitempty"`
}

// Plan is the outcome of picking a target.
type Plan struct {
	// Target is the chosen cluster, empty when none is feasible.
	Target string `json:"target"`
	// Candidates, best first, infeasible last.
	Candidates []Candidate `json:"candidates"`
}

// Picker scores member clusters with Karmada scheduler plugins.
type Picker struct {
	Client  client.Reader
	Plugins []framework.Plugin
}

// Plan filters and scores every member cluster but the source for the binding.
func (p *Picker) Plan(ctx context.Context, binding *workv1alpha2.ResourceBinding, source string) (*Plan, error) {
	var list clusterv1alpha1.ClusterList
	if err := p.Client.List(ctx, &list); err != nil {
		return nil, fmt.Errorf("listing member clusters: %w", err)
	}
	clusters := make([]*clusterv1alpha1.Cluster, 0, len(list.Items))
	for i := range list.Items {
		clusters = append(clusters, &list.Items[i])
	}
	return Score(ctx, p.Plugins, &binding.Spec, &binding.Status, clusters, source), nil
}

// Score runs the plugins over the clusters; exclude (the source) is never chosen.
func Score(ctx context.Context, plugins []framework.Plugin, spec *workv1alpha2.ResourceBindingSpec,
	status *workv1alpha2.ResourceBindingStatus, clusters []*clusterv1alpha1.Cluster, exclude string) *Plan {
	byName := map[string]*Candidate{}
	var feasible []*clusterv1alpha1.Cluster
	for _, c := range clusters {
		cand := &Candidate{Cluster: c.Name, Feasible: true, Scores: map[string]int64{}}
		byName[c.Name] = cand
		switch {
		case c.Name == exclude:
			cand.Feasible = false
			cand.Reasons = append(cand.Reasons, "is the source cluster")
		case !c.DeletionTimestamp.IsZero():
			cand.Feasible = false
			cand.Reasons = append(cand.Reasons, "is being deleted")
		case !meta.IsStatusConditionTrue(c.Status.Conditions, clusterv1alpha1.ClusterConditionReady):
			cand.Feasible = false
			cand.Reasons = append(cand.Reasons, "is not Ready")
		}
		if !cand.Feasible {
			continue
		}
		for _, pl := range plugins {
			f, ok := pl.(framework.FilterPlugin)
			if !ok {
				continue
			}
			if res := f.Filter(ctx, spec, status, c); !res.IsSuccess() {
				cand.Feasible = false
				for _, r := range res.Reasons() {
					cand.Reasons = append(cand.Reasons, fmt.Sprintf("%s: %s", pl.Name(), r))
				}
			}
		}
		if cand.Feasible {
			feasible = append(feasible, c)
		}
	}
	for _, pl := range plugins {
		s, ok := pl.(framework.ScorePlugin)
		if !ok || len(feasible) == 0 {
			continue
		}
		scores := make(framework.ClusterScoreList, 0, len(feasible))
		for _, c := range feasible {
			v, res := s.Score(ctx, spec, c)
			if !res.IsSuccess() {
				v = 0
				byName[c.Name].Reasons = append(byName[c.Name].Reasons, fmt.Sprintf("%s: score failed: %v", pl.Name(), res.AsError()))
			}
			scores = append(scores, framework.ClusterScore{Cluster: c, Score: v})
		}
		if ext := s.ScoreExtensions(); ext != nil {
			_ = ext.NormalizeScore(ctx, scores)
		}
		for _, cs := range scores {
			cand := byName[cs.Cluster.Name]
			cand.Scores[pl.Name()] = cs.Score
			cand.Score += cs.Score
		}
	}
	plan := &Plan{}
	for _, c := range clusters {
		plan.Candidates = append(plan.Candidates, *byName[c.Name])
	}
	sort.SliceStable(plan.Candidates, func(i, j int) bool {
		a, b := plan.Candidates[i], plan.Candidates[j]
		if a.Feasible != b.Feasible {
			return a.Feasible
		}
		if a.Score != b.Score {
			return a.Score > b.Score
		}
		return a.Cluster < b.Cluster
	})
	if len(plan.Candidates) > 0 && plan.Candidates[0].Feasible {
		plan.Target = plan.Candidates[0].Cluster
		for i := 1; i < len(plan.Candidates) && plan.Candidates[i].Feasible; i++ {
			plan.Candidates[i].Reasons = append(plan.Candidates[i].Reasons,
				fmt.Sprintf("scored %d, below %s's %d", plan.Candidates[i].Score, plan.Target, plan.Candidates[0].Score))
		}
	}
	return plan
}
