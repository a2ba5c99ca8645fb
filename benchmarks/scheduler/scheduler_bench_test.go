package scheduler

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	clusterv1alpha1 "github.com/karmada-io/karmada/pkg/apis/cluster/v1alpha1"
	workv1alpha2 "github.com/karmada-io/karmada/pkg/apis/work/v1alpha2"
	"github.com/karmada-io/karmada/pkg/scheduler/framework"
	"github.com/karmada-io/karmada/pkg/scheduler/framework/plugins/clusteraffinity"
	"github.com/karmada-io/karmada/pkg/scheduler/framework/plugins/clusterlocality"
	"github.com/karmada-io/karmada/pkg/scheduler/framework/plugins/spreadconstraint"
	"github.com/karmada-io/karmada/pkg/scheduler/framework/plugins/tainttoleration"
	"github.com/karmada-io/karmada/pkg/scheduler/framework/runtime"

	"github.com/livemigrate/livemigrate/plugins/capacity"
	"github.com/livemigrate/livemigrate/plugins/config"
	"github.com/livemigrate/livemigrate/plugins/latency"
	"github.com/livemigrate/livemigrate/test/builder"
)

const numClusters = 1000

type oneTemplate struct{ t *unstructured.Unstructured }

func (o oneTemplate) GetTemplate(ref *workv1alpha2.ObjectReference) (*unstructured.Unstructured, error) {
	if ref.Name == o.t.GetName() && ref.Namespace == o.t.GetNamespace() {
		return o.t, nil
	}
	return nil, apierrors.NewNotFound(schema.GroupResource{Resource: "deployments"}, ref.Name)
}

// fixture is 1,000 clusters (labelled with one of 10 regions; a tenth
// tainted, a twentieth nearly full, a tenth without latency data) and one
// binding a stateful app would have.
func fixture() ([]*clusterv1alpha1.Cluster, *workv1alpha2.ResourceBinding, *latency.Store) {
	now := time.Now()
	store := latency.NewStore(config.P50)
	clusters := make([]*clusterv1alpha1.Cluster, numClusters)
	for i := range clusters {
		name := fmt.Sprintf("member-%04d", i)
		w := builder.MakeCluster(name).Label("region", fmt.Sprintf("r%d", i%10)).Region(fmt.Sprintf("r%d", i%10)).
			Allocatable("cpu", "64", "memory", "256Gi", "pods", "1100").
			Allocated("cpu", fmt.Sprintf("%d", 8+i%40), "memory", fmt.Sprintf("%dGi", 16+i%200), "pods", "200")
		if i%10 == 3 {
			w.Taint("maintenance", "true", "NoSchedule")
		}
		if i%20 == 7 {
			w.Allocated("cpu", "63", "memory", "250Gi", "pods", "200")
		}
		clusters[i] = w.Obj()
		if i%10 != 9 {
			rtt := time.Duration(1+i%97) * time.Millisecond
			store.Update(builder.MakeLatency(name).Peer("member-0000", rtt, now).Origin("eu-users", rtt/2+time.Millisecond, now).Obj())
		}
	}
	// Placement as a stateful app's PropagationPolicy has it: clusters
	// selected by label (every cluster matches, so the label selector is
	// evaluated for all 1,000 and feasibility is unchanged), one cluster, a
	// toleration.
	regions := make([]string, 10)
	for i := range regions {
		regions[i] = fmt.Sprintf("r%d", i)
	}
	rb := builder.MakeBinding("default", "db").Replicas(3).Request("cpu", "2", "memory", "4Gi").SingleCluster().
		ClusterLabelIn("region", regions...).Toleration("dedicated", "NoSchedule").Obj()
	return clusters, rb, store
}

func builtinRegistry() runtime.Registry {
	return runtime.Registry{
		clusteraffinity.Name:  clusteraffinity.New,
		tainttoleration.Name:  tainttoleration.New,
		spreadconstraint.Name: spreadconstraint.New,
		clusterlocality.Name:  clusterlocality.New,
	}
}

func livemigrateRegistry(b *testing.B, store *latency.Store) runtime.Registry {
	r := builtinRegistry()
	tmpl := builder.MakeTemplate("default", "db").
		Annotation(latency.AnnotationNear, "cluster:member-0000,origin:eu-users=3").
		Annotation(latency.AnnotationMaxRTT, "80ms").Obj()
	must := func(err error) {
		if err != nil {
			b.Fatal(err)
		}
	}
	must(r.Register(capacity.Name, func() (framework.Plugin, error) { return capacity.New(nil) }))
	must(r.Register(latency.Name, func() (framework.Plugin, error) {
		return latency.New(&config.LatencyArgs{MaxAge: &metav1.Duration{Duration: time.Hour}},
			latency.Handle{Store: store, Templates: oneTemplate{tmpl}})
	}))
	return r
}

// cycle runs one scheduling cycle the way Karmada's scheduler does: on a
// deep copy of the binding (as scheduler.doScheduleBinding takes one from
// the lister), so nothing a plugin caches by spec pointer outlives the
// cycle, then Filter on every cluster and Score on the feasible ones.
func cycle(b *testing.B, fwk framework.Framework, binding *workv1alpha2.ResourceBinding,
	clusters []*clusterv1alpha1.Cluster, feasible []*clusterv1alpha1.Cluster) []*clusterv1alpha1.Cluster {
	ctx := context.Background()
	rb := binding.DeepCopy()
	spec := &rb.Spec
	fc := &framework.FilterContext{Context: ctx, BindingSpec: spec, BindingStatus: &rb.Status}
	feasible = feasible[:0]
	for _, c := range clusters {
		fc.Cluster = c
		if res := fwk.RunFilterPlugins(fc); res.IsSuccess() {
			feasible = append(feasible, c)
		}
	}
	if _, res := fwk.RunScorePlugins(ctx, spec, feasible); !res.IsSuccess() {
		b.Fatal(res.AsError())
	}
	return feasible
}

func BenchmarkFilterScore(b *testing.B) {
	clusters, rb, store := fixture()
	for _, bc := range []struct {
		name     string
		registry func() runtime.Registry
	}{
		{"builtin", builtinRegistry},
		{"livemigrate", func() runtime.Registry { return livemigrateRegistry(b, store) }},
		// The framework's own cost of two more plugins that do nothing: the
		// floor any pair of out-of-tree plugins pays (see benchmarks/README.md).
		{"builtin+2noop", noopRegistry},
	} {
		b.Run(bc.name, func(b *testing.B) {
			fwk, err := runtime.NewFramework(bc.registry())
			if err != nil {
				b.Fatal(err)
			}
			feasible := make([]*clusterv1alpha1.Cluster, 0, len(clusters))
			feasible = cycle(b, fwk, rb, clusters, feasible) // warm the plugins' caches
			b.ResetTimer()
			b.ReportAllocs()
			cpu0 := cpuTime()
			for i := 0; i < b.N; i++ {
				feasible = cycle(b, fwk, rb, clusters, feasible)
			}
			// CPU time (user + system, all threads: GC included) per op is
			// far less disturbed than ns/op by other load on the machine.
			b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
			b.ReportMetric(float64(len(feasible)), "feasible")
		})
	}
}

// cpuTime returns the process's user + system CPU time in nanoseconds.
func cpuTime() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// TestFixtureFeasible checks that the livemigrate plugins do filter in the
// benchmark (so it measures real work), and that the binding's cluster
// affinity is evaluated (a cluster outside its regions is rejected).
func TestFixtureFeasible(t *testing.T) {
	clusters, rb, store := fixture()
	b := &testing.B{}
	builtin, err := runtime.NewFramework(builtinRegistry())
	if err != nil {
		t.Fatal(err)
	}
	lm, err := runtime.NewFramework(livemigrateRegistry(b, store))
	if err != nil {
		t.Fatal(err)
	}
	nb := len(cycle(b, builtin, rb, clusters, nil))
	nl := len(cycle(b, lm, rb, clusters, nil))
	if nb != 900 || nl >= nb || nl == 0 {
		t.Fatalf("feasible: builtin %d (want 900), livemigrate %d (want fewer, not 0)", nb, nl)
	}
	outside := builder.MakeCluster("elsewhere").Label("region", "r10").Region("r10").
		Allocatable("cpu", "64", "memory", "256Gi", "pods", "1100").Obj()
	if n := len(cycle(b, builtin, rb, []*clusterv1alpha1.Cluster{outside}, nil)); n != 0 {
		t.Errorf("a cluster outside the affinity's regions is feasible")
	}
}

// noop is a Filter and Score plugin that does nothing.
type noop struct{ name string }

func (p noop) Name() string { return p.name }

func (p noop) Filter(context.Context, *workv1alpha2.ResourceBindingSpec, *workv1alpha2.ResourceBindingStatus,
	*clusterv1alpha1.Cluster) *framework.Result {
	return nil
}

func (p noop) Score(context.Context, *workv1alpha2.ResourceBindingSpec, *clusterv1alpha1.Cluster) (int64, *framework.Result) {
	return 0, nil
}

func (p noop) ScoreExtensions() framework.ScoreExtensions { return nil }

func noopRegistry() runtime.Registry {
	r := builtinRegistry()
	r["NoopA"] = func() (framework.Plugin, error) { return noop{"NoopA"}, nil }
	r["NoopB"] = func() (framework.Plugin, error) { return noop{"NoopB"}, nil }
	return r
}

// BenchmarkPluginCalls measures the livemigrate plugins alone, called
// directly (no framework) on every one of the 1,000 clusters: Filter then
// Score, per op one full pass, on the same binding (so the plugins'
// once-per-cycle work is done once, not per op). allocs/op is what the
// plugins themselves add per pass: only rejected clusters allocate (their
// reason).
func BenchmarkPluginCalls(b *testing.B) {
	clusters, rb, store := fixture()
	spec := &rb.Spec
	reg := livemigrateRegistry(b, store)
	for _, name := range []string{capacity.Name, latency.Name} {
		b.Run(name, func(b *testing.B) {
			pl, err := reg[name]()
			if err != nil {
				b.Fatal(err)
			}
			f, s := pl.(framework.FilterPlugin), pl.(framework.ScorePlugin)
			ctx := context.Background()
			pass := func() {
				for _, c := range clusters {
					_ = f.Filter(ctx, spec, nil, c)
					_, _ = s.Score(ctx, spec, c)
				}
			}
			pass()
			b.ResetTimer()
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				pass()
			}
		})
	}
}
