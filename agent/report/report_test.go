package report

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
)

// The report is created, then renewed with a later renewTime and the
// node's current runtime, keeping its acquireTime.
func TestRenewCreatesThenRenewsTheNodeReport(t *testing.T) {
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-1"}, Status: corev1.NodeStatus{NodeInfo: corev1.NodeSystemInfo{ContainerRuntimeVersion: "cri-o://1.33.2"}}}
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(node).Build()
	clk := clocktesting.NewFakeClock(time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC))
	r := &Reporter{Client: c, Reader: c, Clock: clk, Node: "node-1", Namespace: "livemigrate-system", Interval: 10 * time.Second, Freezer: "v2",
		KernelRelease: func() (string, error) { return "6.1.0-test", nil }}
	ctx := context.Background()
	if err := r.Renew(ctx); err != nil {
		t.Fatal(err)
	}
	first := clk.Now()
	clk.Step(10 * time.Second)
	node.Status.NodeInfo.ContainerRuntimeVersion = "cri-o://1.34.0"
	if err := c.Status().Update(ctx, node); err != nil {
		t.Fatal(err)
	}
	if err := r.Renew(ctx); err != nil {
		t.Fatal(err)
	}
	lease := &coordinationv1.Lease{}
	if err := c.Get(ctx, types.NamespacedName{Namespace: "livemigrate-system", Name: "livemigrate-agent-node-1"}, lease); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{AnnotationKernel: "6.1.0-test", AnnotationArchitecture: lease.Annotations[AnnotationArchitecture], AnnotationRuntime: "cri-o://1.34.0", AnnotationFreezer: "v2"}
	if d := cmp.Diff(want, lease.Annotations); d != "" {
		t.Errorf("annotations (-want +got):\n%s", d)
	}
	if lease.Annotations[AnnotationArchitecture] == "" {
		t.Error("no architecture reported")
	}
	if !lease.Spec.RenewTime.Time.Equal(clk.Now()) || !lease.Spec.AcquireTime.Time.Equal(first) {
		t.Errorf("renewTime %v acquireTime %v, want %v and %v", lease.Spec.RenewTime, lease.Spec.AcquireTime, clk.Now(), first)
	}
	if *lease.Spec.LeaseDurationSeconds != 30 || *lease.Spec.HolderIdentity != "node-1" || lease.Labels[LabelComponent] != ComponentValue {
		t.Errorf("lease spec %+v labels %v", lease.Spec, lease.Labels)
	}
}

// With a CRIU probe, the report carries the node's CRIU version and what
// criu check said.
func TestReporterCRIU(t *testing.T) {
	scheme := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(scheme)
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-1"}}
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(node).Build()
	r := &Reporter{Client: c, Reader: c, Clock: clocktesting.NewFakeClock(time.Now()), Node: "node-1", Namespace: "livemigrate-system", Interval: 10 * time.Second,
		KernelRelease: func() (string, error) { return "6.18.0", nil },
		CRIU:          func(context.Context) (string, string) { return "4.2.1", CRIUCheckOK }}
	if err := r.Renew(context.Background()); err != nil {
		t.Fatal(err)
	}
	lease := &coordinationv1.Lease{}
	if err := c.Get(context.Background(), types.NamespacedName{Namespace: "livemigrate-system", Name: LeaseName("node-1")}, lease); err != nil {
		t.Fatal(err)
	}
	if v, ck := lease.Annotations[AnnotationCRIUVersion], lease.Annotations[AnnotationCRIUCheck]; v != "4.2.1" || ck != CRIUCheckOK {
		t.Errorf("criu-version %q, criu-check %q; want 4.2.1 and ok", v, ck)
	}
}
