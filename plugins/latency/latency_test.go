package latency

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/tools/record"
	clocktesting "k8s.io/utils/clock/testing"

	clusterv1alpha1 "github.com/karmada-io/karmada/pkg/apis/cluster/v1alpha1"
	policyv1alpha1 "github.com/karmada-io/karmada/pkg/apis/policy/v1alpha1"
	workv1alpha2 "github.com/karmada-io/karmada/pkg/apis/work/v1alpha2"
	"github.com/karmada-io/karmada/pkg/scheduler/framework"

	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
	"github.com/livemigrate/livemigrate/plugins/config"
	"github.com/livemigrate/livemigrate/test/builder"
)

type fakeTemplates map[string]*unstructured.Unstructured

func (f fakeTemplates) GetTemplate(ref *workv1alpha2.ObjectReference) (*unstructured.Unstructured, error) {
	if t, ok := f[ref.Namespace+"/"+ref.Name]; ok {
		return t, nil
	}
	return nil, apierrors.NewNotFound(schema.GroupResource{Resource: "deployments"}, ref.Name)
}

type fakePolicies struct {
	pp  map[string]*policyv1alpha1.PropagationPolicy
	cpp map[string]*policyv1alpha1.ClusterPropagationPolicy
}

func (f fakePolicies) GetPropagationPolicy(ns, name string) (metav1.Object, error) {
	if p, ok := f.pp[ns+"/"+name]; ok {
		return p, nil
	}
	return nil, apierrors.NewNotFound(schema.GroupResource{Resource: "propagationpolicies"}, name)
}

func (f fakePolicies) GetClusterPropagationPolicy(name string) (metav1.Object, error) {
	if p, ok := f.cpp[name]; ok {
		return p, nil
	}
	return nil, apierrors.NewNotFound(schema.GroupResource{Resource: "clusterpropagationpolicies"}, name)
}

var now = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

// lab returns latencies among member1..3 and to origin eu-users:
// member1 is close to eu-users (5ms), member2 medium (30ms), member3 far
// (85ms); member1–member2 10ms; member3's data is stale except to eu-users.
func lab() *Store {
	s := NewStore(config.P50)
	fresh, stale := now.Add(-30*time.Second), now.Add(-time.Hour)
	for _, cl := range []*lmv1alpha1.ClusterLatency{
		builder.MakeLatency("member1").Peer("member2", 10*time.Millisecond, fresh).Origin("eu-users", 5*time.Millisecond, fresh).Obj(),
		builder.MakeLatency("member2").Origin("eu-users", 30*time.Millisecond, fresh).Obj(),
		builder.MakeLatency("member3").Peer("member1", 50*time.Millisecond, stale).Origin("eu-users", 85*time.Millisecond, fresh).
			Origin("us-users", 2*time.Millisecond, stale).Obj(),
	} {
		s.Update(cl)
	}
	return s
}

func newPlugin(t testing.TB, tmpl fakeTemplates, pol fakePolicies, rec EventRecorder) *Latency {
	t.Helper()
	p, err := New(&config.LatencyArgs{MaxAge: &metav1.Duration{Duration: 5 * time.Minute}},
		Handle{Store: lab(), Templates: tmpl, Policies: pol, Recorder: rec, Clock: clocktesting.NewFakePassiveClock(now)})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

var clusters = []*clusterv1alpha1.Cluster{
	builder.MakeCluster("member1").Obj(), builder.MakeCluster("member2").Obj(),
	builder.MakeCluster("member3").Obj(), builder.MakeCluster("member4").Obj(),
}

func TestParseNear(t *testing.T) {
	tests := []struct {
		in      string
		want    []Target
		wantErr string
	}{
		{in: "cluster:member2,origin:eu-users", want: []Target{{TargetCluster, "member2", 1}, {TargetOrigin, "eu-users", 1}}},
		{in: " origin:eu-users=3 , cluster:m1=1 ", want: []Target{{TargetOrigin, "eu-users", 3}, {TargetCluster, "m1", 1}}},
		{in: "region:eu", wantErr: "unknown kind"},
		{in: "eu-users", wantErr: "want cluster:NAME"},
		{in: "origin:", wantErr: "want cluster:NAME"},
		{in: "origin:a=0", wantErr: "weight"},
		{in: "origin:a=x", wantErr: "weight"},
		{in: "origin:a,origin:a=2", wantErr: "twice"},
		{in: " , ", wantErr: "no targets"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseNear(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseRequirement(t *testing.T) {
	tests := []struct {
		near, max string
		want      *Requirement
		wantErr   string
	}{
		{},
		{near: "origin:o", max: "40ms", want: &Requirement{Targets: []Target{{TargetOrigin, "o", 1}}, MaxRTT: 40 * time.Millisecond}},
		{near: "origin:o", want: &Requirement{Targets: []Target{{TargetOrigin, "o", 1}}}},
		{max: "40ms", wantErr: "is missing"},
		{near: "origin:o", max: "forty", wantErr: "not a duration"},
		{near: "origin:o", max: "-1ms", wantErr: "positive"},
	}
	for _, tt := range tests {
		t.Run(tt.near+"|"+tt.max, func(t *testing.T) {
			got, err := ParseRequirement(tt.near, tt.max)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestFilter(t *testing.T) {
	tests := []struct {
		name    string
		tmpl    *unstructured.Unstructured
		running []string
		want    map[string]framework.Code
		reasons map[string]string
	}{
		{
			name: "no annotations filters nothing",
			tmpl: builder.MakeTemplate("default", "db").Obj(),
			want: map[string]framework.Code{"member1": 0, "member2": 0, "member3": 0, "member4": 0},
		},
		{
			name: "max-rtt to an origin",
			tmpl: builder.MakeTemplate("default", "db").Annotation(AnnotationNear, "origin:eu-users").Annotation(AnnotationMaxRTT, "40ms").Obj(),
			// member4 has no measurement: unknown never filters.
			want:    map[string]framework.Code{"member1": 0, "member2": 0, "member3": framework.Unschedulable, "member4": 0},
			reasons: map[string]string{"member3": "measured RTT to origin:eu-users is 85ms, above latency.livemigrate.io/max-rtt 40ms"},
		},
		{
			name: "stale data counts as missing",
			tmpl: builder.MakeTemplate("default", "db").Annotation(AnnotationNear, "cluster:member1").Annotation(AnnotationMaxRTT, "20ms").Obj(),
			// member3→member1 is 50ms but an hour old; member2→member1 comes
			// from member1's own measurement (symmetric).
			want: map[string]framework.Code{"member1": 0, "member2": 0, "member3": 0, "member4": 0},
		},
		{
			name: "peer cluster above max, symmetric lookup",
			tmpl: builder.MakeTemplate("default", "db").Annotation(AnnotationNear, "cluster:member1").Annotation(AnnotationMaxRTT, "5ms").Obj(),
			want: map[string]framework.Code{"member1": 0, "member2": framework.Unschedulable, "member3": 0, "member4": 0},
		},
		{
			name:    "the cluster it runs on is never filtered",
			tmpl:    builder.MakeTemplate("default", "db").Annotation(AnnotationNear, "origin:eu-users").Annotation(AnnotationMaxRTT, "40ms").Obj(),
			running: []string{"member3"},
			want:    map[string]framework.Code{"member1": 0, "member2": 0, "member3": 0, "member4": 0},
		},
		{
			name: "invalid annotation is ignored",
			tmpl: builder.MakeTemplate("default", "db").Annotation(AnnotationNear, "origin:eu-users").Annotation(AnnotationMaxRTT, "1 ms").Obj(),
			want: map[string]framework.Code{"member1": 0, "member2": 0, "member3": 0, "member4": 0},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPlugin(t, fakeTemplates{"default/db": tt.tmpl}, fakePolicies{}, nil)
			spec := builder.MakeBinding("default", "db").ScheduledOn(1, tt.running...).SpecObj()
			got := map[string]framework.Code{}
			for _, c := range clusters {
				res := p.Filter(context.Background(), spec, nil, c)
				got[c.Name] = res.Code()
				if want := tt.reasons[c.Name]; want != "" && !strings.Contains(strings.Join(res.Reasons(), ";"), want) {
					t.Errorf("%s: reasons %q, want %q", c.Name, res.Reasons(), want)
				}
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("codes (-want +got):\n%s", diff)
			}
		})
	}
}

func scoreAll(t *testing.T, p *Latency, spec *workv1alpha2.ResourceBindingSpec) map[string]int64 {
	t.Helper()
	var list framework.ClusterScoreList
	for _, c := range clusters {
		s, res := p.Score(context.Background(), spec, c)
		if !res.IsSuccess() {
			t.Fatal(res.AsError())
		}
		list = append(list, framework.ClusterScore{Cluster: c, Score: s})
	}
	if res := p.NormalizeScore(context.Background(), list); !res.IsSuccess() {
		t.Fatal(res.AsError())
	}
	got := map[string]int64{}
	for _, s := range list {
		got[s.Cluster.Name] = s.Score
	}
	return got
}

func TestScore(t *testing.T) {
	tests := []struct {
		name string
		near string
		want map[string]int64
	}{
		{name: "none", near: "", want: map[string]int64{"member1": 0, "member2": 0, "member3": 0, "member4": 0}},
		{
			name: "origin",
			near: "origin:eu-users",
			// 100·(5+1)/(rtt+1): 30ms → 19, 85ms → 6; member4 unknown → 0.
			want: map[string]int64{"member1": 100, "member2": 19, "member3": 6, "member4": 0},
		},
		{
			name: "cluster itself is 0ms",
			near: "cluster:member2",
			// member1: 10ms → 100·1/11 = 9; member3 has no fresh data.
			want: map[string]int64{"member1": 9, "member2": 100, "member3": 0, "member4": 0},
		},
		{
			name: "weighted",
			near: "cluster:member2=1,origin:eu-users=3",
			// member1: (10+3·5)/4 = 6.25ms; member2: (0+3·30)/4 = 22.5ms;
			// member3: only eu-users known: 85ms.
			want: map[string]int64{"member1": 100, "member2": 30, "member3": 8, "member4": 0},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tmpl := builder.MakeTemplate("default", "db")
			if tt.near != "" {
				tmpl.Annotation(AnnotationNear, tt.near)
			}
			p := newPlugin(t, fakeTemplates{"default/db": tmpl.Obj()}, fakePolicies{}, nil)
			if diff := cmp.Diff(tt.want, scoreAll(t, p, builder.MakeBinding("default", "db").SpecObj())); diff != "" {
				t.Errorf("scores (-want +got):\n%s", diff)
			}
		})
	}
}

func TestAnnotationSources(t *testing.T) {
	pp := builder.MakePolicy("default", "pp", AnnotationNear, "origin:eu-users", AnnotationMaxRTT, "20ms")
	cpp := builder.MakeClusterPolicy("cpp", AnnotationNear, "cluster:member2", AnnotationMaxRTT, "5ms")
	pols := fakePolicies{
		pp:  map[string]*policyv1alpha1.PropagationPolicy{"default/pp": pp},
		cpp: map[string]*policyv1alpha1.ClusterPropagationPolicy{"cpp": cpp},
	}
	tests := []struct {
		name string
		tmpl *unstructured.Unstructured
		want *Requirement
	}{
		{
			name: "from PropagationPolicy",
			tmpl: builder.MakeTemplate("default", "db").Policy("default", "pp").Obj(),
			want: &Requirement{Targets: []Target{{TargetOrigin, "eu-users", 1}}, MaxRTT: 20 * time.Millisecond},
		},
		{
			name: "from ClusterPropagationPolicy",
			tmpl: builder.MakeTemplate("default", "db").ClusterPolicy("cpp").Obj(),
			want: &Requirement{Targets: []Target{{TargetCluster, "member2", 1}}, MaxRTT: 5 * time.Millisecond},
		},
		{
			name: "template wins, per annotation",
			tmpl: builder.MakeTemplate("default", "db").Policy("default", "pp").Annotation(AnnotationMaxRTT, "50ms").Obj(),
			want: &Requirement{Targets: []Target{{TargetOrigin, "eu-users", 1}}, MaxRTT: 50 * time.Millisecond},
		},
		{
			name: "policy gone",
			tmpl: builder.MakeTemplate("default", "db").Policy("default", "missing").Obj(),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPlugin(t, fakeTemplates{"default/db": tt.tmpl}, pols, nil)
			got := p.resolver.requirement(context.Background(), builder.MakeBinding("default", "db").SpecObj())
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestInvalidAnnotationEventOncePerResourceVersion(t *testing.T) {
	rec := record.NewFakeRecorder(10)
	tmpl := builder.MakeTemplate("default", "db").Annotation(AnnotationNear, "origin:eu-users=many").Obj()
	templates := fakeTemplates{"default/db": tmpl}
	gen := &atomic.Uint64{}
	p := newPlugin(t, templates, fakePolicies{}, rec)
	p.resolver.generation = gen
	for i := 0; i < 3; i++ {
		gen.Add(1) // as if the informers saw unrelated changes
		spec := builder.MakeBinding("default", "db").SpecObj()
		for _, c := range clusters {
			if res := p.Filter(context.Background(), spec, nil, c); !res.IsSuccess() {
				t.Fatalf("invalid annotation filtered %s", c.Name)
			}
		}
	}
	templates["default/db"] = builder.MakeTemplate("default", "db").Annotation(AnnotationNear, "origin:eu-users=many").ResourceVersion("2").Obj()
	gen.Add(1)
	p.Filter(context.Background(), builder.MakeBinding("default", "db").SpecObj(), nil, clusters[0])
	close(rec.Events)
	var events []string
	for e := range rec.Events {
		events = append(events, e)
	}
	if len(events) != 2 {
		t.Fatalf("got %d events, want 2 (one per resourceVersion): %q", len(events), events)
	}
	if !strings.Contains(events[0], "Warning InvalidLatencyAnnotation") || !strings.Contains(events[0], "weight must be an integer") {
		t.Errorf("event %q does not say what is wrong", events[0])
	}
}

func TestNoAllocations(t *testing.T) {
	tmpl := builder.MakeTemplate("default", "db").Annotation(AnnotationNear, "cluster:member2,origin:eu-users=3").Annotation(AnnotationMaxRTT, "200ms").Obj()
	p := newPlugin(t, fakeTemplates{"default/db": tmpl}, fakePolicies{}, nil)
	spec := builder.MakeBinding("default", "db").SpecObj()
	ctx := context.Background()
	p.Filter(ctx, spec, nil, clusters[0])
	allocs := testing.AllocsPerRun(200, func() {
		for _, c := range clusters {
			if res := p.Filter(ctx, spec, nil, c); !res.IsSuccess() {
				t.Fatal(res.Reasons())
			}
			_, _ = p.Score(ctx, spec, c)
		}
	})
	if allocs != 0 {
		t.Errorf("Filter+Score allocate %v times per run, want 0", allocs)
	}
}

func TestStoreEventHandlerUnstructured(t *testing.T) {
	s := NewStore(config.P90)
	cl := builder.MakeLatency("member1").Origin("o", 7*time.Millisecond, now).Obj()
	cl.Status.Origins[0].P90 = &metav1.Duration{Duration: 9 * time.Millisecond}
	u := &unstructured.Unstructured{}
	obj, err := runtimeToUnstructured(cl)
	if err != nil {
		t.Fatal(err)
	}
	u.Object = obj
	s.EventHandler().OnAdd(u, false)
	d, ok := s.RTT("member1", &Target{Kind: TargetOrigin, Name: "o"}, now.Add(-time.Minute))
	if !ok || d != 9*time.Millisecond {
		t.Errorf("RTT = %v, %v; want 9ms (p90)", d, ok)
	}
	s.EventHandler().OnDelete(u)
	if _, ok := s.RTT("member1", &Target{Kind: TargetOrigin, Name: "o"}, time.Time{}); ok {
		t.Errorf("RTT still known after delete")
	}
}

// TestFreshnessPerCycle checks that the clock is read once per scheduling
// cycle: Karmada deep-copies the binding for each attempt, and a new spec
// sees measurements that have gone stale in the meantime as missing.
func TestFreshnessPerCycle(t *testing.T) {
	tmpl := builder.MakeTemplate("default", "db").Annotation(AnnotationNear, "origin:eu-users").Annotation(AnnotationMaxRTT, "40ms").Obj()
	clk := clocktesting.NewFakePassiveClock(now)
	p, err := New(&config.LatencyArgs{MaxAge: &metav1.Duration{Duration: 5 * time.Minute}},
		Handle{Store: lab(), Templates: fakeTemplates{"default/db": tmpl}, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	rb := builder.MakeBinding("default", "db").Obj()
	member3 := clusters[2] // 85ms to eu-users, measured 30s before now
	ctx := context.Background()
	first := rb.DeepCopy()
	if res := p.Filter(ctx, &first.Spec, nil, member3); res.Code() != framework.Unschedulable {
		t.Fatalf("first cycle: code %v, want Unschedulable", res.Code())
	}
	clk.SetTime(now.Add(10 * time.Minute))
	if res := p.Filter(ctx, &first.Spec, nil, member3); res.Code() != framework.Unschedulable {
		t.Errorf("same cycle after the clock moved: code %v, want Unschedulable (judged as of the cycle's start)", res.Code())
	}
	second := rb.DeepCopy()
	if res := p.Filter(ctx, &second.Spec, nil, member3); !res.IsSuccess() {
		t.Errorf("next cycle: %v, want success (the measurement is stale)", res.Reasons())
	}
	if s, _ := p.Score(ctx, &second.Spec, member3); s != unknownScore {
		t.Errorf("next cycle: score %d, want %d (stale)", s, unknownScore)
	}
}
