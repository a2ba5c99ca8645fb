package controller

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/livemigrate/livemigrate/agent/replication/engine"
)

// Label values.
const (
	resultSuccess  = "success"
	resultFailure  = "failure"
	resultMatch    = "match"
	resultMismatch = "mismatch"
	resultAborted  = "aborted"
	roleSource     = "source"
	roleTarget     = "target"
	stagePreFreeze = "prefreeze"
	stageFinal     = "final"
)

// Metrics of volume replication; RegisterMetrics adds them to
// controller-runtime's registry. Labels are bounded: pass kind, result,
// role, stage, method, reason; never object names or error text.
var (
	passes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "livemigrate_replication_passes_total",
		Help: "Passes run by the source agent, by pass (full, delta, final, verify, repair, preverify) and result.",
	}, []string{"pass", "result"})
	passSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "livemigrate_replication_pass_duration_seconds",
		Help:    "Wall time of one rsync pass, by pass.",
		Buckets: prometheus.ExponentialBuckets(0.05, 2, 16),
	}, []string{"pass"})
	deltaBytes = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "livemigrate_replication_delta_bytes",
		Help:    "File data a pass had to send (rsync literal data), by pass.",
		Buckets: prometheus.ExponentialBuckets(4096, 4, 14),
	}, []string{"pass"})
	wireBytes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "livemigrate_replication_wire_bytes_total",
		Help: "Bytes sent over the mutual-TLS tunnel, by role of the sending agent.",
	}, []string{"role"})
	fileBytes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "livemigrate_replication_file_bytes_total",
		Help: "File data processed by passes (matched and literal), by pass.",
	}, []string{"pass"})
	verifications = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "livemigrate_replication_verifications_total",
		Help: "Checksum verification passes, by result (match, mismatch).",
	}, []string{"result"})
	finalSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "livemigrate_replication_final_duration_seconds",
		Help:    "Duration of the final pass including verification (replication's share of the downtime).",
		Buckets: prometheus.ExponentialBuckets(0.05, 2, 14),
	})
	estimateSecs = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "livemigrate_replication_estimated_final_duration_seconds",
		Help:    "Estimated final-delta duration at the end of pre-copy.",
		Buckets: prometheus.ExponentialBuckets(0.05, 2, 14),
	})
	active = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "livemigrate_replication_active",
		Help: "Replications this agent is running (source) or receiving (target).",
	}, []string{"role"})
	rejected = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "livemigrate_replication_rejected_connections_total",
		Help: "Connections to the receivers refused: failed mutual-TLS authentication, or a TLS server name that names no replication served here.",
	})
	replications = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "livemigrate_replication_replications_total",
		Help: "Replications finished by the source agent, by result (success, failure, aborted).",
	}, []string{"result"})
	retries = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "livemigrate_replication_pass_retries_total",
		Help: "Failed pre-copy passes run again after a backoff, by pass (full, delta).",
	}, []string{"pass"})
	verified = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "livemigrate_replication_verified_entries_total",
		Help: "Entries found equal by a verification, by stage (prefreeze, final) and how: checksummed (content read on both ends), blockcompared (sent by the block delta and compared block by block) or unchanged (identities equal to a recorded verification; not read).",
	}, []string{"stage", "how"})
	finalMethods = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "livemigrate_replication_final_methods_total",
		Help: "Successful final passes by method (blockdelta, rsync) and, for rsync, why the block delta was not used (disabled, no-records, not-applicable, failed, mismatch).",
	}, []string{"method", "fallback"})
	startFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "livemigrate_replication_start_failures_total",
		Help: "Attempts to start a receiver (role target) or sender (role source) that failed, by reason (the ReceiverReady or SenderReady condition's reason).",
	}, []string{"role", "reason"})
)

var registerOnce sync.Once

// RegisterMetrics adds the replication metrics to controller-runtime's
// registry, which the manager serves on --metrics-bind-address. Safe to
// call more than once (a process may run more than one manager in tests).
func RegisterMetrics() {
	registerOnce.Do(func() { ctrlmetrics.Registry.MustRegister(collectors()...) })
}

func collectors() []prometheus.Collector {
	return []prometheus.Collector{passes, passSeconds, deltaBytes, wireBytes, fileBytes, verifications,
		finalSeconds, estimateSecs, active, rejected, replications, retries, verified, finalMethods, startFailures}
}

func observePass(r engine.PassResult) {
	res := resultSuccess
	if r.Err != nil {
		res = resultFailure
	}
	p := string(r.Pass)
	passes.WithLabelValues(p, res).Inc()
	passSeconds.WithLabelValues(p).Observe(r.Duration.Seconds())
	wireBytes.WithLabelValues(roleSource).Add(float64(r.WireSent))
	if r.Err == nil && r.Pass != engine.PassVerify && r.Pass != engine.PassPreVerify {
		deltaBytes.WithLabelValues(p).Observe(float64(r.Stats.LiteralData))
		fileBytes.WithLabelValues(p).Add(float64(r.Stats.LiteralData + r.Stats.MatchedData))
	}
	if r.Pass == engine.PassVerify && r.Err == nil {
		if len(r.Differences) == 0 {
			verifications.WithLabelValues(resultMatch).Inc()
		} else {
			verifications.WithLabelValues(resultMismatch).Inc()
		}
	}
}

func observeRetry(r engine.Retry) {
	retries.WithLabelValues(string(r.Pass)).Inc()
}

func observeVerify(stage string, c engine.VerifyCounts) {
	verified.WithLabelValues(stage, "checksummed").Add(float64(c.Checksummed))
	verified.WithLabelValues(stage, "unchanged").Add(float64(c.Unchanged))
	if stage == stageFinal {
		verified.WithLabelValues(stage, "blockcompared").Add(float64(c.BlockCompared))
	}
}

func observeFinal(r engine.FinalResult) {
	finalMethods.WithLabelValues(string(r.Method), string(r.Fallback)).Inc()
}

func replicationDone(result string) {
	replications.WithLabelValues(result).Inc()
}

func addActive(role string, d float64) {
	active.WithLabelValues(role).Add(d)
}

func addWireBytes(role string, n int64) {
	wireBytes.WithLabelValues(role).Add(float64(n))
}

func observeEstimate(d time.Duration) {
	estimateSecs.Observe(d.Seconds())
}

func observeFinalDuration(d time.Duration) {
	finalSeconds.Observe(d.Seconds())
}

func startFailed(role, reason string) {
	startFailures.WithLabelValues(role, reason).Inc()
}

func rejectedConnection() {
	rejected.Inc()
}
