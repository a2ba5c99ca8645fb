package capacity

import (
	"context"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"

	clusterv1alpha1 "github.com/karmada-io/karmada/pkg/apis/cluster/v1alpha1"
	"github.com/karmada-io/karmada/pkg/scheduler/framework"

	"github.com/livemigrate/livemigrate/plugins/config"
	"github.com/livemigrate/livemigrate/test/builder"
)

func newPlugin(t testing.TB, args *config.CapacityArgs) *Capacity {
	t.Helper()
	p, err := New(args)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return p
}

func TestFilter(t *testing.T) {
	small := builder.MakeCluster("small").Allocatable("cpu", "4", "memory", "8Gi", "pods", "110").Allocated("cpu", "1", "memory", "2Gi", "pods", "10")
	tests := []struct {
		name       string
		binding    *builder.BindingWrapper
		cluster    *clusterv1alpha1.Cluster
		wantCode   framework.Code
		wantReason string
	}{
		{
			name:     "fits",
			binding:  builder.MakeBinding("default", "db").Replicas(3).Request("cpu", "1", "memory", "1Gi").SingleCluster(),
			cluster:  small.Obj(),
			wantCode: framework.Success,
		},
		{
			name:       "cpu does not fit all replicas on one cluster",
			binding:    builder.MakeBinding("default", "db").Replicas(4).Request("cpu", "1").SingleCluster(),
			cluster:    small.Obj(),
			wantCode:   framework.Unschedulable,
			wantReason: "insufficient cpu: 4 replica(s) need 4, 3 free",
		},
		{
			name:    "allocating counts as used",
			binding: builder.MakeBinding("default", "db").Replicas(2).Request("memory", "2Gi").SingleCluster(),
			cluster: builder.MakeCluster("c").Allocatable("memory", "8Gi").Allocated("memory", "2Gi").
				Allocating("memory", "3Gi").Obj(),
			wantCode:   framework.Unschedulable,
			wantReason: "insufficient memory: 2 replica(s) need 4Gi, 3Gi free",
		},
		{
			name:       "missing extended resource",
			binding:    builder.MakeBinding("default", "llm").Request("nvidia.com/gpu", "1"),
			cluster:    small.Obj(),
			wantCode:   framework.Unschedulable,
			wantReason: "insufficient nvidia.com/gpu",
		},
		{
			name:     "extended resource present",
			binding:  builder.MakeBinding("default", "llm").Request("nvidia.com/gpu", "2"),
			cluster:  builder.MakeCluster("gpu").Allocatable("nvidia.com/gpu", "8").Allocated("nvidia.com/gpu", "6").Obj(),
			wantCode: framework.Success,
		},
		{
			name:     "already running there is never filtered",
			binding:  builder.MakeBinding("default", "db").Replicas(10).Request("cpu", "1").SingleCluster().ScheduledOn(10, "small"),
			cluster:  small.Obj(),
			wantCode: framework.Success,
		},
		{
			name:     "no resource summary passes",
			binding:  builder.MakeBinding("default", "db").Request("cpu", "100"),
			cluster:  builder.MakeCluster("empty").Obj(),
			wantCode: framework.Success,
		},
		{
			name:     "divided replicas: one replica must fit",
			binding:  builder.MakeBinding("default", "web").Replicas(10).Request("cpu", "1").Divided(),
			cluster:  small.Obj(),
			wantCode: framework.Success,
		},
		{
			name:       "duplicated replicas: all must fit",
			binding:    builder.MakeBinding("default", "web").Replicas(10).Request("cpu", "1").Duplicated(),
			cluster:    small.Obj(),
			wantCode:   framework.Unschedulable,
			wantReason: "insufficient cpu: 10 replica(s)",
		},
		{
			name:    "pods exhausted",
			binding: builder.MakeBinding("default", "web").Replicas(2).Request("cpu", "10m").SingleCluster(),
			cluster: builder.MakeCluster("full").Allocatable("cpu", "4", "pods", "10").
				Allocated("pods", "9").Obj(),
			wantCode:   framework.Unschedulable,
			wantReason: "insufficient pods: 2 replica(s) need 2, 1 free",
		},
		{
			name:    "enough in total but no node large enough",
			binding: builder.MakeBinding("default", "db").Request("cpu", "6", "memory", "20Gi"),
			cluster: builder.MakeCluster("many-small").Allocatable("cpu", "64", "memory", "256Gi").
				ResourceModel(0, "cpu", "0", "4", "memory", "0", "16Gi").
				ResourceModel(1, "cpu", "4", "8", "memory", "16Gi", "32Gi").
				Modeling(0, 16).Modeling(1, 0).Obj(),
			wantCode:   framework.Unschedulable,
			wantReason: "no node large enough for one replica",
		},
		{
			name:    "a populated larger grade fits",
			binding: builder.MakeBinding("default", "db").Request("cpu", "6", "memory", "20Gi"),
			cluster: builder.MakeCluster("mixed").Allocatable("cpu", "64", "memory", "256Gi").
				ResourceModel(0, "cpu", "0", "4", "memory", "0", "16Gi").
				ResourceModel(1, "cpu", "4", "8", "memory", "16Gi", "32Gi").
				Modeling(0, 14).Modeling(1, 1).Obj(),
			wantCode: framework.Success,
		},
		{
			// A grade-0 node may have many CPUs when its memory put it in
			// grade 0: not sure enough to reject.
			name:    "small grade but one resource within bounds",
			binding: builder.MakeBinding("default", "db").Request("cpu", "6", "memory", "4Gi"),
			cluster: builder.MakeCluster("many-small").Allocatable("cpu", "64", "memory", "256Gi").
				ResourceModel(0, "cpu", "0", "4", "memory", "0", "16Gi").
				ResourceModel(1, "cpu", "4", "8", "memory", "16Gi", "32Gi").
				Modeling(0, 16).Modeling(1, 0).Obj(),
			wantCode: framework.Success,
		},
		{
			name:     "no request, no replicas",
			binding:  builder.MakeBinding("default", "cm").Replicas(0),
			cluster:  small.Obj(),
			wantCode: framework.Success,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPlugin(t, nil)
			res := p.Filter(context.Background(), tt.binding.SpecObj(), nil, tt.cluster)
			if diff := cmp.Diff(tt.wantCode, res.Code()); diff != "" {
				t.Fatalf("code (-want +got):\n%s\nreasons: %v", diff, res.Reasons())
			}
			if tt.wantReason != "" && !strings.Contains(strings.Join(res.Reasons(), ";"), tt.wantReason) {
				t.Errorf("reasons %q do not contain %q", res.Reasons(), tt.wantReason)
			}
		})
	}
}

func TestFilterFollowsClusterUpdates(t *testing.T) {
	p := newPlugin(t, nil)
	spec := builder.MakeBinding("default", "db").Replicas(2).Request("cpu", "1").SingleCluster().SpecObj()
	c := builder.MakeCluster("a").Allocatable("cpu", "4").Allocated("cpu", "1").ResourceVersion("1").Obj()
	p.OnClusterUpdate(c)
	if res := p.Filter(context.Background(), spec, nil, c); !res.IsSuccess() {
		t.Fatalf("before update: %v", res.Reasons())
	}
	c2 := builder.MakeCluster("a").Allocatable("cpu", "4").Allocated("cpu", "3").ResourceVersion("2").Obj()
	// The informer has not delivered rv 2 yet: the plugin recomputes on sight.
	if res := p.Filter(context.Background(), spec, nil, c2); res.IsSuccess() {
		t.Fatalf("after update: want unschedulable")
	}
	p.OnClusterDelete("a")
	if _, ok := p.clusters["a"]; ok {
		t.Errorf("cluster a still cached after delete")
	}
}

func TestScore(t *testing.T) {
	most := config.MostAllocated
	roomy := builder.MakeCluster("roomy").Allocatable("cpu", "10", "memory", "10Gi").Allocated("cpu", "1", "memory", "1Gi").Obj()
	busy := builder.MakeCluster("busy").Allocatable("cpu", "10", "memory", "10Gi").Allocated("cpu", "7", "memory", "7Gi").Obj()
	none := builder.MakeCluster("none").Obj()
	binding := builder.MakeBinding("default", "db").Replicas(2).Request("cpu", "1", "memory", "1Gi").SingleCluster()
	tests := []struct {
		name    string
		args    *config.CapacityArgs
		binding *builder.BindingWrapper
		want    map[string]int64
	}{
		{
			name:    "least allocated prefers headroom",
			binding: binding,
			want:    map[string]int64{"roomy": 70, "busy": 10, "none": 0},
		},
		{
			name:    "most allocated packs",
			args:    &config.CapacityArgs{Strategy: &most},
			binding: binding,
			want:    map[string]int64{"roomy": 30, "busy": 90, "none": 0},
		},
		{
			name:    "weights",
			args:    &config.CapacityArgs{ResourceWeights: map[corev1.ResourceName]int64{"cpu": 3, "memory": 1}},
			binding: builder.MakeBinding("default", "db").Replicas(1).Request("cpu", "1"),
			// roomy: cpu (9-1)/10=80, mem 90 -> (240+90)/4 = 82
			want: map[string]int64{"roomy": 82, "busy": 22, "none": 0},
		},
		{
			name:    "current cluster's replicas are not counted twice",
			binding: builder.MakeBinding("default", "db").Replicas(2).Request("cpu", "1", "memory", "1Gi").SingleCluster().ScheduledOn(2, "busy"),
			want:    map[string]int64{"roomy": 70, "busy": 30, "none": 0},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPlugin(t, tt.args)
			got := map[string]int64{}
			for _, c := range []*clusterv1alpha1.Cluster{roomy, busy, none} {
				s, res := p.Score(context.Background(), tt.binding.SpecObj(), c)
				if !res.IsSuccess() {
					t.Fatalf("Score(%s): %v", c.Name, res.AsError())
				}
				got[c.Name] = s
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("scores (-want +got):\n%s", diff)
			}
		})
	}
}

func TestNormalizeScore(t *testing.T) {
	p := newPlugin(t, nil)
	a, b, c := builder.MakeCluster("a").Obj(), builder.MakeCluster("b").Obj(), builder.MakeCluster("c").Obj()
	scores := framework.ClusterScoreList{{Cluster: a, Score: 50}, {Cluster: b, Score: 25}, {Cluster: c, Score: 0}}
	if res := p.NormalizeScore(context.Background(), scores); !res.IsSuccess() {
		t.Fatal(res.AsError())
	}
	got := []int64{scores[0].Score, scores[1].Score, scores[2].Score}
	if diff := cmp.Diff([]int64{100, 50, 0}, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestNewRejectsBadArgs(t *testing.T) {
	bad := config.ScoringStrategy("Random")
	for name, args := range map[string]*config.CapacityArgs{
		"strategy":        {Strategy: &bad},
		"negative weight": {ResourceWeights: map[corev1.ResourceName]int64{"cpu": -1}},
		"all zero":        {ResourceWeights: map[corev1.ResourceName]int64{"cpu": 0}},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := New(args); err == nil {
				t.Errorf("New accepted %+v", args)
			}
		})
	}
}

// TestNoAllocations checks that, once a cluster and a binding have been
// seen, Filter and Score allocate nothing.
func TestNoAllocations(t *testing.T) {
	p := newPlugin(t, nil)
	spec := builder.MakeBinding("default", "db").Replicas(3).Request("cpu", "1", "memory", "1Gi", "nvidia.com/gpu", "1").SingleCluster().SpecObj()
	c := builder.MakeCluster("a").Allocatable("cpu", "64", "memory", "256Gi", "pods", "110", "nvidia.com/gpu", "8").
		Allocated("cpu", "4", "memory", "8Gi").
		ResourceModel(0, "cpu", "0", "32", "memory", "0", "128Gi").
		ResourceModel(1, "cpu", "32", "128", "memory", "128Gi", "1Ti").Modeling(0, 1).Modeling(1, 1).Obj()
	noSummary := builder.MakeCluster("b").Obj()
	p.OnClusterUpdate(c)
	ctx := context.Background()
	allocs := testing.AllocsPerRun(200, func() {
		if res := p.Filter(ctx, spec, nil, c); !res.IsSuccess() {
			t.Fatal(res.Reasons())
		}
		_, _ = p.Score(ctx, spec, c)
		_, _ = p.Score(ctx, spec, noSummary)
		_ = p.Filter(ctx, spec, nil, noSummary)
	})
	if allocs != 0 {
		t.Errorf("Filter+Score allocate %v times per run, want 0", allocs)
	}
}

func TestUsageIsWhatFilterAndScoreSee(t *testing.T) {
	c := builder.MakeCluster("a").Allocatable("cpu", "10", "memory", "10Gi", "pods", "100").
		Allocated("cpu", "6", "memory", "2Gi", "pods", "20").Allocating("cpu", "1").Obj()
	u := UsageOf(c)
	if !u.Known || u.InUse[UsageCPU] != 7000 || u.Allocatable[UsageMemory] != 10<<30 || u.InUse[UsagePods] != 20 {
		t.Fatalf("usage %+v", u)
	}
	if got := u.Utilization(UsageCPU); got != 0.7 {
		t.Errorf("cpu utilization %v, want 0.7", got)
	}
	p, err := New(&config.CapacityArgs{})
	if err != nil {
		t.Fatal(err)
	}
	info := p.clusterInfo(c)
	for i, name := range UsageNames {
		slot := p.slots.slot(name)
		if free := info.free.get(slot); free != u.Allocatable[i]-u.InUse[i] {
			t.Errorf("%s: the plugin sees %d free, Usage %d of %d in use", name, free, u.InUse[i], u.Allocatable[i])
		}
	}
	if UsageOf(builder.MakeCluster("none").Obj()).Known {
		t.Error("a cluster without a summary must not be Known")
	}
}
