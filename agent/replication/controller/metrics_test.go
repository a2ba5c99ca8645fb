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

// TestMetricsMethods checks what each recording method counts, and that a
// nil *Metrics (a reconciler without metrics) records nothing and does not
// panic.
func TestMetricsMethods(t *testing.T) {
	record := func(m *Metrics) {
		m.addActive(roleSource, 1)
		m.addActive(roleTarget, 1)
		m.addActive(roleTarget, -1)
		m.addWireBytes(roleTarget, 512)
		m.replicationDone(resultSuccess)
		m.replicationDone(resultAborted)
		m.replicationDone(resultAborted)
		m.startFailed(roleTarget, string(ReasonPortUnavailable))
		m.rejectedConnection()
		m.observeEstimate(time.Second)
		m.observeFinalDuration(2 * time.Second)
		m.observeRetry(engine.Retry{Pass: engine.PassFull})
		m.observeVerify(stageFinal, engine.VerifyCounts{Checksummed: 3})
		m.observeFinal(engine.FinalResult{Method: engine.FinalBlockDelta})
	}
	record(nil)

	m := NewMetrics(prometheus.NewRegistry())
	record(m)
	for _, c := range []struct {
		name string
		got  prometheus.Metric
		want float64
	}{
		{"active source", m.active.WithLabelValues(roleSource), 1},
		{"active target", m.active.WithLabelValues(roleTarget), 0},
		{"target wire bytes", m.wireBytes.WithLabelValues(roleTarget), 512},
		{"successes", m.replications.WithLabelValues(resultSuccess), 1},
		{"aborted", m.replications.WithLabelValues(resultAborted), 2},
		{"start failures", m.startFailures.WithLabelValues(roleTarget, string(ReasonPortUnavailable)), 1},
		{"rejected", m.rejected, 1},
		{"retries", m.retries.WithLabelValues(string(engine.PassFull)), 1},
		{"checksummed", m.verified.WithLabelValues(stageFinal, "checksummed"), 3},
		{"final methods", m.finalMethods.WithLabelValues(string(engine.FinalBlockDelta), ""), 1},
	} {
		if v := value(t, c.got); v != c.want {
			t.Errorf("%s = %v, want %v", c.name, v, c.want)
		}
	}
}
