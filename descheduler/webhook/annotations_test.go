package webhook

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/livemigrate/livemigrate/descheduler/metrics"
)

func metaRaw(t *testing.T, kind, name string, annotations map[string]string) runtime.RawExtension {
	t.Helper()
	b, err := json.Marshal(map[string]any{"apiVersion": "v1", "kind": kind,
		"metadata": map[string]any{"name": name, "namespace": "ns", "annotations": annotations}})
	if err != nil {
		t.Fatal(err)
	}
	return runtime.RawExtension{Raw: b}
}

func TestPolicyAnnotations(t *testing.T) {
	cases := map[string]struct {
		kind     string
		op       admissionv1.Operation
		cur, old map[string]string
		deny     []string
	}{
		"valid": {kind: "Deployment", op: admissionv1.Create, cur: map[string]string{"livemigrate.io/eviction-strategy": "LiveMigrate", "livemigrate.io/downtime-budget": "2s"}},
		"bad strategy on a StatefulSet": {kind: "StatefulSet", op: admissionv1.Create, cur: map[string]string{"livemigrate.io/eviction-strategy": "Live"},
			deny: []string{`StatefulSet ns/x: metadata.annotations[livemigrate.io/eviction-strategy]: Unsupported value: "Live": supported values: "LiveMigrate", "LiveMigrateIfPossible", "None"`}},
		"bad budget on a PropagationPolicy": {kind: "PropagationPolicy", op: admissionv1.Create, cur: map[string]string{"livemigrate.io/downtime-budget": "-1s"},
			deny: []string{`PropagationPolicy ns/x: metadata.annotations[livemigrate.io/downtime-budget]: Invalid value: "-1s": must be a positive duration`}},
		"two bad values, both named": {kind: "ClusterPropagationPolicy", op: admissionv1.Create, cur: map[string]string{"livemigrate.io/rebalance": "on", "livemigrate.io/drain-priority": "1.5"},
			deny: []string{`drain-priority]: Invalid value: "1.5"`, `rebalance]: Unsupported value: "on": supported values: "true", "false"`}},
		"unknown key": {kind: "Deployment", op: admissionv1.Create, cur: map[string]string{"livemigrate.io/strategy": "LiveMigrate"},
			deny: []string{`Unsupported value: "livemigrate.io/strategy": supported values: "livemigrate.io/eviction-strategy"`}},
		"update keeps an old bad value": {kind: "Deployment", op: admissionv1.Update,
			cur: map[string]string{"livemigrate.io/eviction-strategy": "Live", "karmada.io/x": "y"},
			old: map[string]string{"livemigrate.io/eviction-strategy": "Live"}},
		"update changes a bad value to another bad value": {kind: "Deployment", op: admissionv1.Update,
			cur:  map[string]string{"livemigrate.io/eviction-strategy": "Liv"},
			old:  map[string]string{"livemigrate.io/eviction-strategy": "Live"},
			deny: []string{`Unsupported value: "Liv"`}},
		"update adds a bad value": {kind: "Deployment", op: admissionv1.Update,
			cur:  map[string]string{"livemigrate.io/eviction-strategy": "LiveMigrate", "livemigrate.io/drain-priority": "top"},
			old:  map[string]string{"livemigrate.io/eviction-strategy": "LiveMigrate"},
			deny: []string{`drain-priority]: Invalid value: "top"`}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			req := admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{Operation: tc.op, Namespace: "ns", Name: "x",
				Kind: metav1.GroupVersionKind{Kind: tc.kind}, Object: metaRaw(t, tc.kind, "x", tc.cur)}}
			if tc.old != nil {
				req.OldObject = metaRaw(t, tc.kind, "x", tc.old)
			}
			result := metrics.AdmissionAllowed
			if len(tc.deny) > 0 {
				result = metrics.AdmissionDenied
			}
			before := counterValue(t, metrics.PolicyAdmissionRequests.WithLabelValues(tc.kind, result))
			resp := PolicyAnnotations{}.Handle(context.Background(), req)
			if got := counterValue(t, metrics.PolicyAdmissionRequests.WithLabelValues(tc.kind, result)); got != before+1 {
				t.Errorf("requests{%s,%s} went from %v to %v, want +1", tc.kind, result, before, got)
			}
			if len(tc.deny) == 0 {
				if !resp.Allowed {
					t.Fatalf("denied: %s", resp.Result.Message)
				}
				return
			}
			if resp.Allowed {
				t.Fatalf("allowed, want denied with %q", tc.deny)
			}
			for _, want := range tc.deny {
				if !strings.Contains(resp.Result.Message, want) {
					t.Errorf("message %q lacks %q", resp.Result.Message, want)
				}
			}
		})
	}
}

func TestPolicyAnnotationsUndecodable(t *testing.T) {
	resp := PolicyAnnotations{}.Handle(context.Background(), admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		Operation: admissionv1.Create, Kind: metav1.GroupVersionKind{Kind: "Deployment"}, Object: runtime.RawExtension{Raw: []byte("{")}}})
	if resp.Allowed || resp.Result.Code != 400 {
		t.Fatalf("resp = %+v, want a 400 error", resp.Result)
	}
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	m := &dto.Metric{}
	if err := c.Write(m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}
