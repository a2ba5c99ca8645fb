package controller

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/livemigrate/livemigrate/agent/replication/engine"
	"github.com/livemigrate/livemigrate/agent/replication/protocol"
)

func TestObservePass(t *testing.T) {
	deltaSuccesses := since(t, passes.WithLabelValues("delta", resultSuccess))
	finalFailures := since(t, passes.WithLabelValues("final", resultFailure))
	mismatches := since(t, verifications.WithLabelValues(resultMismatch))
	sourceWire := since(t, wireBytes.WithLabelValues(roleSource))
	deltaFile := since(t, fileBytes.WithLabelValues("delta"))

	observePass(engine.PassResult{Pass: engine.PassDelta, Result: protocol.Result{WireSent: 100, Duration: time.Second, Stats: protocol.Stats{LiteralData: 40, MatchedData: 60}}})
	observePass(engine.PassResult{Pass: engine.PassVerify, Differences: []string{">fc.T...... a"}})
	observePass(engine.PassResult{Pass: engine.PassFinal, Err: errors.New("boom")})

	if got := deltaSuccesses(); got != 1 {
		t.Errorf("delta successes = %v, want 1", got)
	}
	if got := finalFailures(); got != 1 {
		t.Errorf("final failures = %v, want 1", got)
	}
	if got := mismatches(); got != 1 {
		t.Errorf("mismatches = %v, want 1", got)
	}
	if got := sourceWire(); got != 100 {
		t.Errorf("wire bytes = %v, want 100", got)
	}
	if got := deltaFile(); got != 100 {
		t.Errorf("file bytes = %v, want 100", got)
	}
}

// TestMetricsBounded: every metric is prefixed and none is labelled by
// object or error.
func TestMetricsBounded(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors()...)
	observePass(engine.PassResult{Pass: engine.PassDelta})
	observeVerify(stageFinal, engine.VerifyCounts{})
	observeFinal(engine.FinalResult{Method: engine.FinalBlockDelta})
	startFailed(roleTarget, string(ReasonPortUnavailable))
	addActive(roleSource, 0)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if !strings.HasPrefix(mf.GetName(), "livemigrate_replication_") {
			t.Errorf("metric %s lacks the livemigrate_replication_ prefix", mf.GetName())
		}
		for _, metric := range mf.GetMetric() {
			for _, l := range metric.GetLabel() {
				switch l.GetName() {
				case "pass", "result", "role", "stage", "how", "method", "fallback", "reason":
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

// since returns how much c grew from now on. The metrics are the
// process's, shared by every test of the package, so tests read what
// changed rather than absolute values.
func since(t *testing.T, c prometheus.Metric) func() float64 {
	t.Helper()
	before := value(t, c)
	return func() float64 {
		t.Helper()
		return value(t, c) - before
	}
}

// TestMetricsMethods checks what each recording function counts.
func TestMetricsMethods(t *testing.T) {
	for _, c := range []struct {
		name   string
		record func()
		got    prometheus.Metric
		want   float64
	}{
		{"active source", func() { addActive(roleSource, 1) }, active.WithLabelValues(roleSource), 1},
		{"active target", func() { addActive(roleTarget, 1); addActive(roleTarget, -1) }, active.WithLabelValues(roleTarget), 0},
		{"target wire bytes", func() { addWireBytes(roleTarget, 512) }, wireBytes.WithLabelValues(roleTarget), 512},
		{"successes", func() { replicationDone(resultSuccess) }, replications.WithLabelValues(resultSuccess), 1},
		{"aborted", func() { replicationDone(resultAborted); replicationDone(resultAborted) }, replications.WithLabelValues(resultAborted), 2},
		{"start failures", func() { startFailed(roleTarget, string(ReasonPortUnavailable)) }, startFailures.WithLabelValues(roleTarget, string(ReasonPortUnavailable)), 1},
		{"rejected", rejectedConnection, rejected, 1},
		{"retries", func() { observeRetry(engine.Retry{Pass: engine.PassFull}) }, retries.WithLabelValues(string(engine.PassFull)), 1},
		{"checksummed", func() { observeVerify(stageFinal, engine.VerifyCounts{Checksummed: 3}) }, verified.WithLabelValues(stageFinal, "checksummed"), 3},
		{"final methods", func() { observeFinal(engine.FinalResult{Method: engine.FinalBlockDelta}) }, finalMethods.WithLabelValues(string(engine.FinalBlockDelta), ""), 1},
	} {
		grown := since(t, c.got)
		c.record()
		if v := grown(); v != c.want {
			t.Errorf("%s = %v, want %v", c.name, v, c.want)
		}
	}
	// The histograms are recorded without panicking.
	observeEstimate(time.Second)
	observeFinalDuration(2 * time.Second)
}
