// Package metrics holds the Prometheus metrics of the livemigrate-descheduler,
// registered on controller-runtime's registry. Label values are typed
// constants (phases, outcomes, byte kinds): never object names or error text.
package metrics

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
)

// Outcome of a finished migration.
type Outcome string

const (
	OutcomeSucceeded Outcome = "succeeded"
	OutcomeFailed    Outcome = "failed"
	OutcomeAborted   Outcome = "aborted"
)

// BytesKind is what moved bytes carried.
type BytesKind string

const (
	BytesMemory        BytesKind = "memory"
	BytesVolumePreCopy BytesKind = "volume_precopy"
	BytesFinalDelta    BytesKind = "final_delta"
)

var (
	// MigrationsTotal counts finished migrations by outcome.
	MigrationsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "livemigrate_migrations_total",
		Help: "Live migrations finished, by outcome (succeeded, failed, aborted).",
	}, []string{"outcome"})

	// ActiveMigrations is the number of migrations not yet Succeeded or Failed.
	ActiveMigrations = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "livemigrate_active_migrations",
		Help: "Live migrations in progress.",
	})

	// PhaseDuration observes how long each phase took.
	PhaseDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "livemigrate_migration_phase_duration_seconds",
		Help:    "Time spent in each live-migration phase.",
		Buckets: prometheus.ExponentialBuckets(0.05, 2, 16),
	}, []string{"phase"})

	// Downtime observes freeze → target Ready of successful migrations.
	Downtime = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "livemigrate_migration_downtime_seconds",
		Help:    "Measured downtime (source frozen to target Ready) of successful live migrations.",
		Buckets: prometheus.ExponentialBuckets(0.05, 2, 14),
	})

	// BytesTotal counts bytes moved by kind.
	BytesTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "livemigrate_migration_bytes_total",
		Help: "Bytes moved by live migrations, by kind (memory, volume_precopy, final_delta).",
	}, []string{"kind"})
)

var registerOnce sync.Once

// Register adds the metrics to controller-runtime's registry, which the
// manager serves on --metrics-bind-address. Safe to call more than once.
func Register() {
	registerOnce.Do(func() {
		ctrlmetrics.Registry.MustRegister(MigrationsTotal, ActiveMigrations, PhaseDuration, Downtime, BytesTotal)
		ctrlmetrics.Registry.MustRegister(triggerMetrics()...)
	})
}
