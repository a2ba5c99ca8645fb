package workload

import (
	"context"
	"strings"
	"testing"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/livemigrate/livemigrate/agent/report"
	"github.com/livemigrate/livemigrate/descheduler/migration"
	"github.com/livemigrate/livemigrate/test/builder"
)

func mkNode(name, arch, runtime string, ready bool) *corev1.Node {
	st := corev1.ConditionTrue
	if !ready {
		st = corev1.ConditionFalse
	}
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Status: corev1.NodeStatus{
		Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: st}},
		NodeInfo:   corev1.NodeSystemInfo{Architecture: arch, OperatingSystem: "linux", ContainerRuntimeVersion: runtime},
	}}
}

func TestCompatibility(t *testing.T) {
	src := fake.NewClientBuilder().WithScheme(builder.Scheme()).WithObjects(mkNode("s1", "amd64", "cri-o://1.30.0", true)).Build()
	cases := map[string]struct {
		target []client.Object
		want   string
	}{
		"same platform":          {target: []client.Object{mkNode("t1", "amd64", "cri-o://1.31.2", true)}},
		"unknown fields compare": {target: []client.Object{mkNode("t1", "", "", true)}},
		"other arch": {target: []client.Object{mkNode("t1", "arm64", "cri-o://1.30.0", true)},
			want: "pod db-0 runs on linux/amd64 cri-o (node s1); no Ready node of b matches (it has linux/arm64 cri-o)"},
		"other runtime": {target: []client.Object{mkNode("t1", "amd64", "containerd://2.0", true)},
			want: "it has linux/amd64 containerd"},
		"matching node not ready": {target: []client.Object{mkNode("t1", "amd64", "cri-o://1.30.0", false)},
			want: "no Ready schedulable node"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			dst := fake.NewClientBuilder().WithScheme(builder.Scheme()).WithObjects(tc.target...).Build()
			c := &Compatibility{Clients: clients{"a": src, "b": dst}}
			err := c.Check(context.Background(), migration.Migration{Source: "a", Target: "b"}, []migration.Pod{{Name: "db-0", Node: "s1"}})
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !migration.IsStepFailed(err) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want StepFailed with %q", err, tc.want)
			}
		})
	}
}

func mkReport(node, criuVersion, check string) *coordinationv1.Lease {
	return &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: "livemigrate-system", Name: report.LeaseName(node), Annotations: map[string]string{
		report.AnnotationCRIUVersion: criuVersion, report.AnnotationCRIUCheck: check, report.AnnotationKernel: "6.18.0", report.AnnotationArchitecture: "amd64",
	}}}
}

// The agents' reports take part: a target whose criu check failed, or
// whose CRIU is older than the source's, cannot restore.
func TestCompatibilityCRIU(t *testing.T) {
	src := fake.NewClientBuilder().WithScheme(builder.Scheme()).WithObjects(mkNode("s1", "amd64", "cri-o://1.30.0", true), mkReport("s1", "4.2.1", report.CRIUCheckOK)).Build()
	cases := map[string]struct {
		target []client.Object
		want   string
	}{
		"same CRIU":             {target: []client.Object{mkNode("t1", "amd64", "cri-o://1.30.0", true), mkReport("t1", "4.2.1", report.CRIUCheckOK)}},
		"newer CRIU":            {target: []client.Object{mkNode("t1", "amd64", "cri-o://1.30.0", true), mkReport("t1", "4.10", report.CRIUCheckOK)}},
		"target without report": {target: []client.Object{mkNode("t1", "amd64", "cri-o://1.30.0", true)}},
		"one of two nodes fits": {target: []client.Object{mkNode("t1", "amd64", "cri-o://1.30.0", true), mkReport("t1", "4.1.1", report.CRIUCheckOK), mkNode("t2", "amd64", "cri-o://1.30.0", true), mkReport("t2", "4.2.1", report.CRIUCheckOK)}},
		"older CRIU": {target: []client.Object{mkNode("t1", "amd64", "cri-o://1.30.0", true), mkReport("t1", "4.1.1", report.CRIUCheckOK)},
			want: "pod db-0 runs on linux/amd64 cri-o, kernel 6.18.0, CRIU 4.2.1 (node s1); no Ready node of b matches (it has linux/amd64 cri-o, kernel 6.18.0, CRIU 4.1.1)"},
		"criu check failed": {target: []client.Object{mkNode("t1", "amd64", "cri-o://1.30.0", true), mkReport("t1", "4.2.1", "criu check failed (exit status 1): kerndat_vdso_fill_symtable failed")},
			want: "it has linux/amd64 cri-o, kernel 6.18.0, CRIU 4.2.1 (criu check failed (exit status 1): kerndat_vdso_fill_symtable failed)"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			dst := fake.NewClientBuilder().WithScheme(builder.Scheme()).WithObjects(tc.target...).Build()
			c := &Compatibility{Clients: clients{"a": src, "b": dst}, AgentNamespace: "livemigrate-system"}
			err := c.Check(context.Background(), migration.Migration{Source: "a", Target: "b"}, []migration.Pod{{Name: "db-0", Node: "s1"}})
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !migration.IsStepFailed(err) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want StepFailed with %q", err, tc.want)
			}
		})
	}
}

func TestCompareVersions(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{{"4.2.1", "4.2.1", 0}, {"4.10", "4.2.1", 1}, {"3.17.1", "4.2", -1}, {"4.2", "4.2.0", 0}, {"4.2.1", "4.2", 1}} {
		if got := compareVersions(tc.a, tc.b); got != tc.want {
			t.Errorf("compareVersions(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}
