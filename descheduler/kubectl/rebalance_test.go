package kubectl

import (
	"bytes"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/livemigrate/livemigrate/descheduler/policy"
	"github.com/livemigrate/livemigrate/test/builder"
)

func rebalanceWorld() []client.Object {
	sts := func(name string, kv ...string) client.Object {
		s := &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name, Annotations: map[string]string{}}}
		for i := 0; i+1 < len(kv); i += 2 {
			s.Annotations[kv[i]] = kv[i+1]
		}
		return s
	}
	binding := func(name, cpu string) client.Object {
		return builder.MakeBinding("default", name).Resource("apps/v1", "StatefulSet").SingleCluster().
			Request("cpu", cpu, "memory", "512Mi").ScheduledOn(1, "member1").Obj()
	}
	alloc := []string{"cpu", "10", "memory", "10Gi", "pods", "100"}
	return []client.Object{
		builder.Ready(builder.MakeCluster("member1").Allocatable(alloc...).Allocated("cpu", "9", "memory", "2Gi", "pods", "10").Obj(), true),
		builder.Ready(builder.MakeCluster("member2").Allocatable(alloc...).Allocated("cpu", "2", "memory", "2Gi", "pods", "10").Obj(), true),
		builder.Ready(builder.MakeCluster("member3").Allocatable(alloc...).Allocated("cpu", "6", "memory", "2Gi", "pods", "10").Obj(), true),
		sts("db", policy.AnnotationEvictionStrategy, "LiveMigrate"), binding("db", "1"),
		sts("keep", policy.AnnotationEvictionStrategy, "LiveMigrate", policy.AnnotationRebalance, "false"), binding("keep", "1"),
		sts("load"), binding("load", "5"),
	}
}

func TestPlanRebalance(t *testing.T) {
	c := fake.NewClientBuilder().WithScheme(Scheme()).WithObjects(rebalanceWorld()...).Build()
	var out bytes.Buffer
	if err := run(t, newTestOptions(c, &out), "plan", "--rebalance"); err != nil {
		t.Fatalf("plan --rebalance: %v", err)
	}
	got := out.String()
	t.Logf("plan --rebalance:\n%s", got)
	for _, want := range []string{
		"Bands: high 80.0%",
		"member1          Source      90.0%   20.0%   10.0%",
		"member2          Receiver    20.0%",
		"member3          Between     60.0%",
		"2 candidate(s), 1 move(s) chosen (at most 5 per round)",
		"statefulset/default/db", "member2", "chosen: member1 is above the high band (80.0%)",
		"statefulset/default/keep", "rebalance_disabled: livemigrate.io/rebalance is false (StatefulSet default/keep)",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "default/load") {
		t.Errorf("a workload that is not opted in is listed:\n%s", got)
	}

	out.Reset()
	if err := run(t, newTestOptions(c, &out), "plan", "--rebalance", "--rebalance-high", "95"); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "Nothing to do: no cluster is above the high band (95.0%)") {
		t.Errorf("with a high band of 95%%:\n%s", out.String())
	}
	err := run(t, newTestOptions(c, &out), "plan", "--rebalance", "--rebalance-low", "90")
	if err == nil || !strings.Contains(err.Error(), "--rebalance-low") {
		t.Errorf("a low band above the high band: err = %v", err)
	}
	if err := run(t, newTestOptions(c, &out), "plan", "--rebalance", "statefulset/db"); err == nil || !strings.Contains(err.Error(), "takes 0 argument(s)") {
		t.Errorf("plan --rebalance with a workload: err = %v", err)
	}
}
