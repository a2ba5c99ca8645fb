package policy

import (
	"context"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/livemigrate/livemigrate/descheduler/metrics"
	"github.com/livemigrate/livemigrate/test/builder"
)

func TestAuditor(t *testing.T) {
	bad := deployment(AnnotationEvictionStrategy, "Sometimes")
	c := fake.NewClientBuilder().WithScheme(builder.Scheme()).WithObjects(bad).Build()
	rec := events.NewFakeRecorder(10)
	a := &Auditor{Client: c, Recorder: rec, GVK: AuditedKinds[0]}
	req := reconcile.Request{NamespacedName: types.NamespacedName{Namespace: "ns", Name: "app"}}
	gauge := metrics.InvalidPolicyObjects.WithLabelValues("Deployment")

	for range 2 {
		if _, err := a.Reconcile(context.Background(), req); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case e := <-rec.Events:
		if !strings.Contains(e, "Warning InvalidPolicy") || !strings.Contains(e, `"Sometimes"`) || !strings.Contains(e, "not opted in") {
			t.Errorf("event %q", e)
		}
	default:
		t.Fatal("no event for a malformed annotation")
	}
	select {
	case e := <-rec.Events:
		t.Errorf("a second event for the same value: %q", e)
	default:
	}
	if got := gaugeValue(t, gauge); got != 1 {
		t.Errorf("invalid objects = %v, want 1", got)
	}

	// Fixed: no event, the gauge goes down.
	bad.Annotations[AnnotationEvictionStrategy] = "LiveMigrate"
	if err := c.Update(context.Background(), bad); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Reconcile(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	if got := gaugeValue(t, gauge); got != 0 {
		t.Errorf("invalid objects = %v after the fix, want 0", got)
	}
	select {
	case e := <-rec.Events:
		t.Errorf("event after the fix: %q", e)
	default:
	}
}

func gaugeValue(t *testing.T, g interface{ Write(*dto.Metric) error }) float64 {
	t.Helper()
	m := &dto.Metric{}
	if err := g.Write(m); err != nil {
		t.Fatal(err)
	}
	return m.GetGauge().GetValue()
}
