package controller

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/types"
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
	// frozen are the PodCheckpoints whose pod this agent holds frozen; the
	// gauge is their number (setFrozen).
	frozenMu        sync.Mutex
	frozen          map[types.NamespacedName]bool
	thaws           prometheus.Counter
	archivesRemoved prometheus.Counter
	restoredPods    *prometheus.CounterVec
}

// NewMetrics creates the agent's metrics and registers them on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		frozen: map[types.NamespacedName]bool{},
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
			Help: "Pods this agent holds frozen (frozen for a checkpoint, neither thawed nor released).",
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

// setFrozen records whether this agent holds the pod of the PodCheckpoint
// key frozen. The gauge counts keys, not calls: repeating a call changes
// nothing, so a restarted agent rebuilds the gauge by reconciling every
// PodCheckpoint once (PodCheckpointReconciler.trackFrozen), and a thaw after
// a restart cannot drive it below zero.
func (m *Metrics) setFrozen(key types.NamespacedName, frozen bool) {
	m.frozenMu.Lock()
	defer m.frozenMu.Unlock()
	if frozen {
		m.frozen[key] = true
	} else {
		delete(m.frozen, key)
	}
	m.frozenPods.Set(float64(len(m.frozen)))
}
