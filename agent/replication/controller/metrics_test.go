package controller

import (
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/livemigrate/livemigrate/agent/replication/engine"
	"github.com/livemigrate/livemigrate/agent/replication/rsync"
)

func TestObservePass(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	m.observePass(engine.PassResult{Pass: engine.PassDelta, Result: rsync.Result{WireSent: 100, Duration: time.Second, Stats: rsync.Stats{LiteralData: 40, MatchedData: 60}}})
	m.observePass(engine.PassResult{Pass: engine.PassVerify, Differences: []string{">fc.T...... a"}})
	m.observePass(engine.PassResult{Pass: engine.PassFinal, Err: errors.New("boom")})

	if got := value(t, m.passes.WithLabelValues("delta", resultSuccess)); got != 1 {
		t.Errorf("delta successes = %v, want 1", got)
	}
	if got := value(t, m.passes.WithLabelValues("final", resultFailure)); got != 1 {
		t.Errorf("final failures = %v, want 1", got)
	}
	if got := value(t, m.verifications.WithLabelValues(resultMismatch)); got != 1 {
		t.Errorf("mismatches = %v, want 1", got)
	}
	if got := value(t, m.wireBytes.WithLabelValues(roleSource)); got != 100 {
		t.Errorf("wire bytes = %v, want 100", got)
	}
	if got := value(t, m.fileBytes.WithLabelValues("delta")); got != 100 {
		t.Errorf("file bytes = %v, want 100", got)
	}
	// Every metric is prefixed and none is labelled by object or error.
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if len(mf.GetName()) < len("livemigrate_replication_") || mf.GetName()[:len("livemigrate_replication_")] != "livemigrate_replication_" {
			t.Errorf("metric %s lacks the livemigrate_replication_ prefix", mf.GetName())
		}
		for _, metric := range mf.GetMetric() {
			for _, l := range metric.GetLabel() {
				switch l.GetName() {
				case "pass", "result", "role":
				default:
					t.Errorf("metric %s has unbounded label %s", mf.GetName(), l.GetName())
				}
			}
		}
	}
}

func value(t *testing.T, c prometheus.Metric) float64 {
	t.Helper()
	var out dto.Metric
	if err := c.Write(&out); err != nil {
		t.Fatal(err)
	}
	if out.Counter != nil {
		return out.Counter.GetValue()
	}
	return out.Gauge.GetValue()
}
