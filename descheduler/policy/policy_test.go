package policy

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
	"github.com/livemigrate/livemigrate/test/builder"
)

var (
	tmpl = Source{Level: LevelTemplate, Kind: "Deployment", Namespace: "ns", Name: "app"}
	pp   = Source{Level: LevelPropagationPolicy, Kind: "PropagationPolicy", Namespace: "ns", Name: "pp"}
	cpp  = Source{Level: LevelClusterPropagationPolicy, Kind: "ClusterPropagationPolicy", Name: "cpp"}
	def  = Source{Level: LevelDefault}
)

func TestValidate(t *testing.T) {
	cases := map[string]struct {
		annotations map[string]string
		want        []string // substrings, one per error, in key order
	}{
		"none":                  {},
		"other prefixes":        {annotations: map[string]string{"latency.livemigrate.io/near": "x", "app": "y"}},
		"all valid":             {annotations: map[string]string{AnnotationEvictionStrategy: "LiveMigrateIfPossible", AnnotationDowntimeBudget: "1500ms", AnnotationRebalance: "false", AnnotationDrainPriority: "-3"}},
		"strategy":              {annotations: map[string]string{AnnotationEvictionStrategy: "live"}, want: []string{`metadata.annotations[livemigrate.io/eviction-strategy]: Unsupported value: "live": supported values: "LiveMigrate", "LiveMigrateIfPossible", "None"`}},
		"budget syntax":         {annotations: map[string]string{AnnotationDowntimeBudget: "2"}, want: []string{`metadata.annotations[livemigrate.io/downtime-budget]: Invalid value: "2": must be a positive duration, e.g. 2s or 500ms`}},
		"budget zero":           {annotations: map[string]string{AnnotationDowntimeBudget: "0s"}, want: []string{`downtime-budget]: Invalid value: "0s": must be a positive duration`}},
		"rebalance":             {annotations: map[string]string{AnnotationRebalance: "yes"}, want: []string{`rebalance]: Unsupported value: "yes": supported values: "true", "false"`}},
		"priority":              {annotations: map[string]string{AnnotationDrainPriority: "high"}, want: []string{`drain-priority]: Invalid value: "high": must be an integer from -2147483648 to 2147483647`}},
		"priority range":        {annotations: map[string]string{AnnotationDrainPriority: "2147483648"}, want: []string{`Invalid value: "2147483648"`}},
		"unknown key":           {annotations: map[string]string{"livemigrate.io/downtime-budgt": "2s"}, want: []string{`metadata.annotations: Unsupported value: "livemigrate.io/downtime-budgt": supported values: "livemigrate.io/eviction-strategy", "livemigrate.io/downtime-budget"`}},
		"memory transfer":       {annotations: map[string]string{AnnotationMemoryTransfer: "PostCopy"}},
		"memory transfer value": {annotations: map[string]string{AnnotationMemoryTransfer: "postcopy"}, want: []string{`metadata.annotations[livemigrate.io/memory-transfer]: Unsupported value: "postcopy": supported values: "StopAndCopy", "PostCopy"`}},
		"several, sorted":       {annotations: map[string]string{AnnotationRebalance: "1", AnnotationEvictionStrategy: "Always"}, want: []string{"eviction-strategy", "rebalance"}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			errs := Validate(tc.annotations)
			if len(errs) != len(tc.want) {
				t.Fatalf("got %d errors %v, want %d", len(errs), errs, len(tc.want))
			}
			for i, w := range tc.want {
				if !strings.Contains(errs[i].Error(), w) {
					t.Errorf("error %d = %q, want it to contain %q", i, errs[i].Error(), w)
				}
			}
		})
	}
}

func dur(d time.Duration) *time.Duration { return &d }

// from is the sources of the values; memory-transfer is the default
// unless a fifth source is given.
func from(strategy, budget, rebalance, priority Source, memory ...Source) map[string]Source {
	m := map[string]Source{AnnotationEvictionStrategy: strategy, AnnotationDowntimeBudget: budget, AnnotationRebalance: rebalance, AnnotationDrainPriority: priority,
		AnnotationMemoryTransfer: def}
	if len(memory) > 0 {
		m[AnnotationMemoryTransfer] = memory[0]
	}
	return m
}

func TestResolve(t *testing.T) {
	cases := map[string]struct {
		layers  []Layer
		want    *Policy
		optedIn bool
		fall    bool
	}{
		"absent everywhere": {
			layers: []Layer{{Source: tmpl}, {Source: pp}},
			want:   &Policy{Rebalance: true, From: from(def, def, def, def)},
		},
		"template only": {
			layers:  []Layer{{Source: tmpl, Annotations: map[string]string{AnnotationEvictionStrategy: "LiveMigrate", AnnotationDowntimeBudget: "3s"}}},
			want:    &Policy{Strategy: StrategyLiveMigrate, DowntimeBudget: dur(3 * time.Second), Rebalance: true, From: from(tmpl, tmpl, def, def)},
			optedIn: true,
		},
		"propagation policy opts in every workload it propagates": {
			layers:  []Layer{{Source: tmpl}, {Source: pp, Annotations: map[string]string{AnnotationEvictionStrategy: "LiveMigrateIfPossible", AnnotationDrainPriority: "5"}}},
			want:    &Policy{Strategy: StrategyLiveMigrateIfPossible, Rebalance: true, DrainPriority: 5, From: from(pp, def, def, pp)},
			optedIn: true, fall: true,
		},
		"template wins over propagation policy, which wins over cluster policy": {
			layers: []Layer{
				{Source: tmpl, Annotations: map[string]string{AnnotationEvictionStrategy: "LiveMigrate"}},
				{Source: pp, Annotations: map[string]string{AnnotationEvictionStrategy: "LiveMigrateIfPossible", AnnotationDowntimeBudget: "1s"}},
				{Source: cpp, Annotations: map[string]string{AnnotationEvictionStrategy: "None", AnnotationDowntimeBudget: "9s", AnnotationRebalance: "false"}},
			},
			want:    &Policy{Strategy: StrategyLiveMigrate, DowntimeBudget: dur(time.Second), Rebalance: false, From: from(tmpl, pp, cpp, def)},
			optedIn: true,
		},
		"template opts out of its policy": {
			layers: []Layer{{Source: tmpl, Annotations: map[string]string{AnnotationEvictionStrategy: "None"}},
				{Source: cpp, Annotations: map[string]string{AnnotationEvictionStrategy: "LiveMigrate"}}},
			want: &Policy{Strategy: StrategyNone, Rebalance: true, From: from(tmpl, def, def, def)},
		},
		"memory transfer from the propagation policy, overridden by the template": {
			layers: []Layer{{Source: tmpl, Annotations: map[string]string{AnnotationEvictionStrategy: "LiveMigrate", AnnotationMemoryTransfer: "StopAndCopy"}},
				{Source: pp, Annotations: map[string]string{AnnotationMemoryTransfer: "PostCopy"}}},
			want:    &Policy{Strategy: StrategyLiveMigrate, Rebalance: true, MemoryTransfer: lmv1alpha1.MemoryTransferStopAndCopy, From: from(tmpl, def, def, def, tmpl)},
			optedIn: true,
		},
		"memory transfer from the cluster policy": {
			layers:  []Layer{{Source: tmpl, Annotations: map[string]string{AnnotationEvictionStrategy: "LiveMigrate"}}, {Source: cpp, Annotations: map[string]string{AnnotationMemoryTransfer: "PostCopy"}}},
			want:    &Policy{Strategy: StrategyLiveMigrate, Rebalance: true, MemoryTransfer: lmv1alpha1.MemoryTransferPostCopy, From: from(tmpl, def, def, def, cpp)},
			optedIn: true,
		},
		"malformed value is not opted in": {
			layers: []Layer{{Source: tmpl, Annotations: map[string]string{AnnotationEvictionStrategy: "LiveMigrate", AnnotationDowntimeBudget: "soon"}}},
			want: &Policy{Strategy: StrategyLiveMigrate, Rebalance: true, From: from(tmpl, def, def, def),
				Invalid: []InvalidValue{{Source: tmpl, Message: `metadata.annotations[livemigrate.io/downtime-budget]: Invalid value: "soon": must be a positive duration, e.g. 2s or 500ms`}}},
		},
		"malformed strategy in a lower layer that is overridden still blocks": {
			layers: []Layer{{Source: tmpl, Annotations: map[string]string{AnnotationEvictionStrategy: "LiveMigrateIfPossible"}},
				{Source: pp, Annotations: map[string]string{AnnotationEvictionStrategy: "Yes"}}},
			want: &Policy{Strategy: StrategyLiveMigrateIfPossible, Rebalance: true, From: from(tmpl, def, def, def),
				Invalid: []InvalidValue{{Source: pp, Message: `metadata.annotations[livemigrate.io/eviction-strategy]: Unsupported value: "Yes": supported values: "LiveMigrate", "LiveMigrateIfPossible", "None"`}}},
		},
		"malformed template value does not hide the policy's valid one": {
			layers: []Layer{{Source: tmpl, Annotations: map[string]string{AnnotationDrainPriority: "x"}},
				{Source: pp, Annotations: map[string]string{AnnotationEvictionStrategy: "LiveMigrate", AnnotationDrainPriority: "2"}}},
			want: &Policy{Strategy: StrategyLiveMigrate, Rebalance: true, DrainPriority: 2, From: from(pp, def, def, pp),
				Invalid: []InvalidValue{{Source: tmpl, Message: `metadata.annotations[livemigrate.io/drain-priority]: Invalid value: "x": must be an integer from -2147483648 to 2147483647, higher drains first`}}},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			got := Resolve(tc.layers...)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Resolve (-want +got):\n%s", diff)
			}
			if got.OptedIn() != tc.optedIn {
				t.Errorf("OptedIn = %v, want %v", got.OptedIn(), tc.optedIn)
			}
			if got.MayFallBack() != tc.fall {
				t.Errorf("MayFallBack = %v, want %v", got.MayFallBack(), tc.fall)
			}
		})
	}
}

func TestTriggerOf(t *testing.T) {
	for labels, want := range map[string]Trigger{"maintenance": TriggerMaintenance, "rebalance": TriggerRebalance, "placement": TriggerPlacement, "": TriggerManual, "other": TriggerManual} {
		if got := TriggerOf(map[string]string{LabelTrigger: labels}); got != want {
			t.Errorf("TriggerOf(%q) = %q, want %q", labels, got, want)
		}
	}
}

// TestResolverForBinding reads the layers the way Karmada links them: the
// policy named in the binding's annotations, not one matched by selectors.
func TestResolverForBinding(t *testing.T) {
	strategy := func(v string) []string { return []string{AnnotationEvictionStrategy, v} }
	ppBinding := builder.MakeBinding("ns", "app").SingleCluster().ScheduledOn(1, "a").Obj()
	ppBinding.Annotations = map[string]string{"propagationpolicy.karmada.io/name": "pp", "propagationpolicy.karmada.io/namespace": "ns"}
	cppBinding := builder.MakeBinding("ns", "app").SingleCluster().ScheduledOn(1, "a").Obj()
	cppBinding.Annotations = map[string]string{"clusterpropagationpolicy.karmada.io/name": "cpp"}
	cases := map[string]struct {
		objs []client.Object
		rb   string
		want Strategy
		from Source
	}{
		"template":                            {objs: []client.Object{deployment(strategy("LiveMigrate")...), builder.MakePolicy("ns", "pp", strategy("None")...)}, rb: "pp", want: StrategyLiveMigrate, from: tmpl},
		"propagation policy from the binding": {objs: []client.Object{deployment(), builder.MakePolicy("ns", "pp", strategy("LiveMigrateIfPossible")...), builder.MakeClusterPolicy("cpp", strategy("None")...)}, rb: "pp", want: StrategyLiveMigrateIfPossible, from: pp},
		"cluster policy from the binding":     {objs: []client.Object{deployment(), builder.MakePolicy("ns", "pp", strategy("None")...), builder.MakeClusterPolicy("cpp", strategy("LiveMigrate")...)}, rb: "cpp", want: StrategyLiveMigrate, from: cpp},
		"policy gone":                         {objs: []client.Object{deployment()}, rb: "pp", from: def},
		"template gone":                       {objs: []client.Object{builder.MakePolicy("ns", "pp", strategy("LiveMigrate")...)}, rb: "pp", want: StrategyLiveMigrate, from: pp},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			c := fake.NewClientBuilder().WithScheme(builder.Scheme()).WithObjects(tc.objs...).Build()
			rb := ppBinding
			if tc.rb == "cpp" {
				rb = cppBinding
			}
			p, err := (&Resolver{Client: c}).ForBinding(context.Background(), rb)
			if err != nil {
				t.Fatal(err)
			}
			if p.Strategy != tc.want || p.From[AnnotationEvictionStrategy] != tc.from {
				t.Errorf("strategy %q from %v, want %q from %v", p.Strategy, p.From[AnnotationEvictionStrategy], tc.want, tc.from)
			}
		})
	}
}

// deployment is the template ns/app with annotations (k, v pairs).
func deployment(kv ...string) *appsv1.Deployment {
	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "app", Annotations: map[string]string{}}}
	for i := 0; i+1 < len(kv); i += 2 {
		d.Annotations[kv[i]] = kv[i+1]
	}
	return d
}
