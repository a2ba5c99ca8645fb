package controller

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Result label values.
const (
	resultSuccess = "success"
	resultFailure = "failure"
)

// Metrics of the agent's reconcilers.
type Metrics struct {
	checkpoints     *prometheus.CounterVec
	checkpointSecs  prometheus.Histogram
	checkpointBytes prometheus.Counter
	pushSecs        prometheus.Histogram
	pushThroughput  prometheus.Histogram
	frozenPods      prometheus.Gauge
	thaws           prometheus.Counter
	archivesRemoved prometheus.Counter
	restoredPods    *prometheus.CounterVec
}

// NewMetrics creates the agent's metrics and registers them on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		checkpoints: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "livemigrate_agent_checkpoints_total",
			Help: "Pod checkpoints finished, by result (success, failure).",
		}, []string{"result"}),
		checkpointSecs: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "livemigrate_agent_checkpoint_duration_seconds",
			Help:    "Time from the freeze to the last checkpoint image pushed.",
			Buckets: prometheus.ExponentialBuckets(0.1, 2, 14),
		}),
		checkpointBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "livemigrate_agent_checkpoint_archive_bytes_total",
			Help: "Bytes of checkpoint archives taken.",
		}),
		pushSecs: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "livemigrate_agent_image_push_duration_seconds",
			Help:    "Time to build and push one checkpoint image.",
			Buckets: prometheus.ExponentialBuckets(0.05, 2, 14),
		}),
		pushThroughput: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "livemigrate_agent_image_push_throughput_bytes_per_second",
			Help:    "Throughput of checkpoint image pushes.",
			Buckets: prometheus.ExponentialBuckets(1<<20, 2, 12),
		}),
		frozenPods: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "livemigrate_agent_frozen_pods",
			Help: "Pods this agent holds frozen.",
		}),
		thaws: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "livemigrate_agent_thaws_total",
			Help: "Pods thawed by a rollback.",
		}),
		archivesRemoved: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "livemigrate_agent_archives_removed_total",
			Help: "Checkpoint archives deleted from the node.",
		}),
		restoredPods: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "livemigrate_agent_restored_pods_total",
			Help: "Pods restored from a checkpoint that reached Ready, or failed.",
		}, []string{"result"}),
	}
	if reg != nil {
		reg.MustRegister(m.checkpoints, m.checkpointSecs, m.checkpointBytes, m.pushSecs, m.pushThroughput,
			m.frozenPods, m.thaws, m.archivesRemoved, m.restoredPods)
	}
	return m
}
