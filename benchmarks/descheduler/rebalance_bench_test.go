package descheduler

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	clusterv1alpha1 "github.com/karmada-io/karmada/pkg/apis/cluster/v1alpha1"
	policyv1alpha1 "github.com/karmada-io/karmada/pkg/apis/policy/v1alpha1"
	workv1alpha2 "github.com/karmada-io/karmada/pkg/apis/work/v1alpha2"
	"github.com/karmada-io/karmada/pkg/scheduler/framework"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
	"github.com/livemigrate/livemigrate/descheduler/app"
	"github.com/livemigrate/livemigrate/descheduler/maintenance"
	"github.com/livemigrate/livemigrate/descheduler/options"
	"github.com/livemigrate/livemigrate/descheduler/placement"
	"github.com/livemigrate/livemigrate/descheduler/policy"
	"github.com/livemigrate/livemigrate/descheduler/rebalance"
	"github.com/livemigrate/livemigrate/plugins/capacity"
	"github.com/livemigrate/livemigrate/plugins/config"
	"github.com/livemigrate/livemigrate/test/builder"
)

const (
	numClusters = 100
	numBindings = 10000
	numPolicies = 10
)

var now = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

// fixture is 100 clusters (a tenth above the high band, three tenths below
// the low band, the rest between) and 10,000 StatefulSets, 100 per cluster,
// propagated by 10 PropagationPolicies of which 6 opt in; a tenth of the
// templates set livemigrate.io/rebalance: "false". 1,000 LiveMigrations
// ended in the last two hours, 4 are running.
func fixture() (*informerReader, []framework.Plugin) {
	r := newInformerReader(app.KarmadaScheme())
	cp, err := capacity.New(&config.CapacityArgs{})
	if err != nil {
		panic(err)
	}
	for i := range numClusters {
		cpu, mem := 65, 40
		switch {
		case i%10 == 0:
			cpu, mem = 88, 60
		case i%10 <= 3:
			cpu, mem = 30, 30
		}
		c := builder.MakeCluster(fmt.Sprintf("member-%03d", i)).Label("region", fmt.Sprintf("r%d", i%5)).
			Allocatable("cpu", "128", "memory", "512Gi", "pods", "1100").
			Allocated("cpu", fmt.Sprintf("%d", cpu*128/100), "memory", fmt.Sprintf("%dGi", mem*512/100), "pods", "300").Obj()
		meta.SetStatusCondition(&c.Status.Conditions, metav1.Condition{Type: clusterv1alpha1.ClusterConditionReady, Status: metav1.ConditionTrue, Reason: "Ready"})
		cp.OnClusterUpdate(c) // as the cluster informer's handler does
		r.add(c)
	}
	for i := range numPolicies {
		pp := &policyv1alpha1.PropagationPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: fmt.Sprintf("pp-%d", i)}}
		if i < 6 {
			pp.Annotations = map[string]string{policy.AnnotationEvictionStrategy: "LiveMigrate", policy.AnnotationDowntimeBudget: "30s"}
		}
		r.add(pp)
	}
	for i := range numBindings {
		name := fmt.Sprintf("app-%05d", i)
		cluster := fmt.Sprintf("member-%03d", i%numClusters)
		replicas := int32(1 + i%3)
		rb := builder.MakeBinding("shop", name).Resource("apps/v1", "StatefulSet").SingleCluster().ClusterLabelIn("region", "r0", "r1", "r2", "r3", "r4").
			Replicas(replicas).Request("cpu", fmt.Sprintf("%dm", 250*(1+i%8)), "memory", fmt.Sprintf("%dMi", 512*(1+i%8))).
			ScheduledOn(replicas, cluster).Obj()
		rb.Annotations = map[string]string{policyv1alpha1.PropagationPolicyNamespaceAnnotation: "shop",
			policyv1alpha1.PropagationPolicyNameAnnotation: fmt.Sprintf("pp-%d", (i/numClusters)%numPolicies)}
		tmpl := &metav1.PartialObjectMetadata{TypeMeta: metav1.TypeMeta{APIVersion: "apps/v1", Kind: "StatefulSet"},
			ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name}}
		if i%10 == 5 {
			tmpl.Annotations = map[string]string{policy.AnnotationRebalance: "false"}
		}
		sts := &appsv1.StatefulSet{ObjectMeta: tmpl.ObjectMeta, Spec: appsv1.StatefulSetSpec{Replicas: ptr.To(replicas),
			VolumeClaimTemplates: []corev1.PersistentVolumeClaim{{Spec: corev1.PersistentVolumeClaimSpec{Resources: corev1.VolumeResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("10Gi")}}}}}}}
		r.add(rb, tmpl, sts)
	}
	for i := range 1004 {
		lm := &lmv1alpha1.LiveMigration{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: fmt.Sprintf("lm-%04d", i)},
			Spec: lmv1alpha1.LiveMigrationSpec{WorkloadRef: lmv1alpha1.WorkloadReference{APIVersion: "apps/v1", Kind: "StatefulSet",
				Name: fmt.Sprintf("app-%05d", (i*7)%numBindings)}}}
		st := &lm.Status
		st.SourceCluster, st.TargetCluster = fmt.Sprintf("member-%03d", i%numClusters), fmt.Sprintf("member-%03d", (i+1)%numClusters)
		phase := func(p lmv1alpha1.LiveMigrationPhase, at time.Time) {
			st.Phase = p
			st.PhaseTransitions = append(st.PhaseTransitions, lmv1alpha1.PhaseTransition{Phase: p, EnteredAt: metav1.NewMicroTime(at)})
		}
		if i < 1000 {
			end := now.Add(-time.Duration(i) * 7 * time.Second)
			phase(lmv1alpha1.PhaseCheckpointing, end.Add(-3*time.Second))
			phase(lmv1alpha1.PhaseTransfer, end.Add(-time.Second))
			phase(lmv1alpha1.PhaseSucceeded, end)
			st.CompletionTime = &metav1.Time{Time: end}
			st.Bytes.Memory = 1 << 30
		} else { // running, between clusters of the middle band
			st.SourceCluster, st.TargetCluster = fmt.Sprintf("member-%03d", 5+10*(i-1000)), fmt.Sprintf("member-%03d", 6+10*(i-1000))
			phase(lmv1alpha1.PhasePreCopy, now.Add(-time.Minute))
		}
		r.add(lm)
	}
	filters := append(placement.SchedulerFilters(), &maintenance.Filter{Keys: []string{maintenance.DefaultTaintKey}})
	return r, append(filters, cp)
}

// iterate is the baseline: list the bindings from the cache and sum their
// requests per cluster.
func iterate(ctx context.Context, r client.Reader) (map[string]*rebalance.Amounts, error) {
	var list workv1alpha2.ResourceBindingList
	if err := r.List(ctx, &list, client.UnsafeDisableDeepCopy); err != nil {
		return nil, err
	}
	sums := map[string]*rebalance.Amounts{}
	for i := range list.Items {
		rb := &list.Items[i]
		for _, tc := range rb.Spec.Clusters {
			s := sums[tc.Name]
			if s == nil {
				s = &rebalance.Amounts{}
				sums[tc.Name] = s
			}
			if rr := rb.Spec.ReplicaRequirements; rr != nil {
				for j, name := range capacity.UsageNames {
					if q, ok := rr.ResourceRequest[name]; ok {
						s[j] += capacity.AmountOf(name, q) * int64(tc.Replicas)
					}
				}
			}
			s[capacity.UsagePods] += int64(tc.Replicas)
		}
	}
	return sums, nil
}

func planner(r client.Reader, plugins []framework.Plugin) *rebalance.Planner {
	return rebalance.NewPlanner(options.New(), r, plugins)
}

// TestFixture checks what one round over the fixture decides, so that the
// benchmark measures a round that has work to do.
func TestFixture(t *testing.T) {
	r, plugins := fixture()
	_, plan, err := planner(r, plugins).Plan(context.Background(), now, nil)
	if err != nil {
		t.Fatal(err)
	}
	classes := map[rebalance.Class]int{}
	for _, c := range plan.Clusters {
		classes[c.Class]++
	}
	outcomes := map[rebalance.Outcome]int{}
	for _, d := range plan.Decisions {
		outcomes[d.Outcome]++
	}
	t.Logf("clusters %v; decisions %v", classes, outcomes)
	if classes[rebalance.ClassSource] != 10 || classes[rebalance.ClassReceiver] != 30 {
		t.Errorf("classes %v, want 10 sources and 30 receivers", classes)
	}
	if outcomes[rebalance.OutcomeChosen] != options.New().RebalanceMaxMovesPerRound || outcomes[rebalance.OutcomeMaxMoves] == 0 {
		t.Errorf("outcomes %v: want the round to choose its maximum and stop", outcomes)
	}
	sums, err := iterate(context.Background(), r)
	if err != nil {
		t.Fatal(err)
	}
	var pods int64 // member-000 holds app-00000, app-00100, …, each with 1 + i%3 replicas
	for i := 0; i < numBindings; i += numClusters {
		pods += int64(1 + i%3)
	}
	if len(sums) != numClusters || sums["member-000"][capacity.UsagePods] != pods {
		t.Errorf("baseline sums: %d clusters, member-000 %v", len(sums), sums["member-000"])
	}
}

// cpuTime is the process's user+system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkRebalanceRound measures one rebalancing round (decide) and the
// baseline (iterate) on the same informer stores.
func BenchmarkRebalanceRound(b *testing.B) {
	r, plugins := fixture()
	ctx := context.Background()
	p := planner(r, plugins)
	run := func(b *testing.B, f func() error) {
		b.ReportAllocs()
		start := cpuTime()
		b.ResetTimer()
		for b.Loop() {
			if err := f(); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		b.ReportMetric(float64(cpuTime()-start)/float64(b.N), "cpu-ns/op")
	}
	b.Run("iterate", func(b *testing.B) {
		run(b, func() error { _, err := iterate(ctx, r); return err })
	})
	b.Run("decide", func(b *testing.B) {
		run(b, func() error { _, _, err := p.Plan(ctx, now, nil); return err })
	})
}
