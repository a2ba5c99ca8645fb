package placement

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"
	clusterv1alpha1 "github.com/karmada-io/karmada/pkg/apis/cluster/v1alpha1"
	workv1alpha2 "github.com/karmada-io/karmada/pkg/apis/work/v1alpha2"
	"github.com/karmada-io/karmada/pkg/scheduler/framework"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/livemigrate/livemigrate/plugins/capacity"
	"github.com/livemigrate/livemigrate/plugins/config"
	"github.com/livemigrate/livemigrate/test/builder"
)

// fixed scores clusters from a table and filters those it marks.
type fixed struct {
	name   string
	scores map[string]int64
	reject map[string]string
}

func (f fixed) Name() string { return f.name }
func (f fixed) Filter(_ context.Context, _ *workv1alpha2.ResourceBindingSpec, _ *workv1alpha2.ResourceBindingStatus, c *clusterv1alpha1.Cluster) *framework.Result {
	if why, ok := f.reject[c.Name]; ok {
		return framework.NewResult(framework.Unschedulable, why)
	}
	return framework.NewResult(framework.Success)
}
func (f fixed) Score(_ context.Context, _ *workv1alpha2.ResourceBindingSpec, c *clusterv1alpha1.Cluster) (int64, *framework.Result) {
	return f.scores[c.Name], framework.NewResult(framework.Success)
}
func (f fixed) ScoreExtensions() framework.ScoreExtensions { return nil }

func TestScoreSumsPluginsAndExplains(t *testing.T) {
	clusters := []*clusterv1alpha1.Cluster{
		builder.Ready(builder.MakeCluster("a").Obj(), true),
		builder.Ready(builder.MakeCluster("b").Obj(), true),
		builder.Ready(builder.MakeCluster("c").Obj(), true),
		builder.Ready(builder.MakeCluster("d").Obj(), false),
		builder.Ready(builder.MakeCluster("e").Obj(), true),
	}
	plugins := []framework.Plugin{
		fixed{name: "One", scores: map[string]int64{"a": 100, "b": 40, "c": 50, "e": 90}, reject: map[string]string{"e": "no room"}},
		fixed{name: "Two", scores: map[string]int64{"a": 100, "b": 30, "c": 10}},
	}
	spec := builder.MakeBinding("ns", "app").ScheduledOn(1, "a").SpecObj()
	got := Score(context.Background(), plugins, spec, &workv1alpha2.ResourceBindingStatus{}, clusters, "a")
	want := &Plan{Target: "b", Candidates: []Candidate{
		{Cluster: "b", Feasible: true, Score: 70, Scores: map[string]int64{"One": 40, "Two": 30}},
		{Cluster: "c", Feasible: true, Score: 60, Scores: map[string]int64{"One": 50, "Two": 10}, Reasons: []string{"scored 60, below b's 70"}},
		{Cluster: "a", Scores: map[string]int64{}, Reasons: []string{"is the source cluster"}},
		{Cluster: "d", Scores: map[string]int64{}, Reasons: []string{"is not Ready"}},
		{Cluster: "e", Scores: map[string]int64{}, Reasons: []string{"One: no room"}},
	}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("plan (-want +got):\n%s", diff)
	}
}

func TestPickerWithCapacityPlugin(t *testing.T) {
	cp, err := capacity.New(&config.CapacityArgs{})
	if err != nil {
		t.Fatal(err)
	}
	objs := []client.Object{
		builder.Ready(builder.MakeCluster("a").Allocatable("cpu", "8", "memory", "16Gi", "pods", "100").Obj(), true),
		builder.Ready(builder.MakeCluster("roomy").Allocatable("cpu", "64", "memory", "256Gi", "pods", "100").Obj(), true),
		builder.Ready(builder.MakeCluster("tight").Allocatable("cpu", "8", "memory", "16Gi", "pods", "100").Allocated("cpu", "6", "memory", "8Gi").Obj(), true),
		builder.Ready(builder.MakeCluster("full").Allocatable("cpu", "2", "memory", "2Gi", "pods", "100").Allocated("cpu", "2", "memory", "2Gi").Obj(), true),
	}
	c := fake.NewClientBuilder().WithScheme(builder.Scheme()).WithObjects(objs...).Build()
	p := &Picker{Client: c, Plugins: []framework.Plugin{cp}}
	rb := builder.MakeBinding("ns", "app").SingleCluster().Request("cpu", "1", "memory", "1Gi").ScheduledOn(1, "a").Obj()
	plan, err := p.Plan(context.Background(), rb, "a")
	if err != nil {
		t.Fatal(err)
	}
	if plan.Target != "roomy" {
		t.Fatalf("target = %q, want roomy: %+v", plan.Target, plan.Candidates)
	}
	last := plan.Candidates[len(plan.Candidates)-1]
	if last.Feasible || len(last.Reasons) == 0 {
		t.Errorf("want an infeasible cluster with reasons last, got %+v", last)
	}
}
