package prober

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
)

// TargetKind labels metrics by what was probed.
type TargetKind string

// Target kinds.
const (
	KindPeer   TargetKind = "peer"
	KindOrigin TargetKind = "origin"
)

// FailureReason labels probe failures.
type FailureReason string

// Failure reasons.
const (
	ReasonDial     FailureReason = "dial"
	ReasonWrite    FailureReason = "write"
	ReasonRead     FailureReason = "read"
	ReasonMismatch FailureReason = "mismatch"
)

// WriteResult labels status writes.
type WriteResult string

// Write results.
const (
	WriteSuccess WriteResult = "success"
	WriteError   WriteResult = "error"
)

var (
	rttSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "livemigrate_prober_rtt_seconds",
		Help:    "Round-trip time of one successful probe sample.",
		Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16), // 100µs … ~3.3s
	}, []string{"target_kind"})

	probeFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "livemigrate_prober_probe_failures_total",
		Help: "Probe samples that failed, by target kind and reason.",
	}, []string{"target_kind", "reason"})

	statusWrites = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "livemigrate_prober_status_writes_total",
		Help: "ClusterLatency status writes, by result.",
	}, []string{"result"})

	roundDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "livemigrate_prober_round_duration_seconds",
		Help:    "Duration of one probe round over all targets.",
		Buckets: prometheus.ExponentialBuckets(0.001, 2, 15),
	})
)

var registerOnce sync.Once

// RegisterMetrics registers the prober's metrics on the controller-runtime
// registry (served on --metrics-bind-address). Safe to call more than once.
func RegisterMetrics() {
	registerOnce.Do(func() {
		ctrlmetrics.Registry.MustRegister(rttSeconds, probeFailures, statusWrites, roundDuration)
	})
}
