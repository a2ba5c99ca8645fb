package controller

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/types"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
)

// Result label values.
const (
	resultSuccess = "success"
	resultFailure = "failure"
)

// Metrics of the agent's reconcilers. RegisterMetrics adds them to
// controller-runtime's registry; labels are bounded (results only).
var (
	checkpoints = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "livemigrate_agent_checkpoints_total",
		Help: "Pod checkpoints finished, by result (success, failure).",
	}, []string{"result"})
	checkpointSecs = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "livemigrate_agent_checkpoint_duration_seconds",
		Help:    "Time from the freeze to the last checkpoint image pushed.",
		Buckets: prometheus.ExponentialBuckets(0.1, 2, 14),
	})
	checkpointBytes = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "livemigrate_agent_checkpoint_archive_bytes_total",
		Help: "Bytes of checkpoint archives taken.",
	})
	pushSecs = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "livemigrate_agent_image_push_duration_seconds",
		Help:    "Time to build and push one checkpoint image.",
		Buckets: prometheus.ExponentialBuckets(0.05, 2, 14),
	})
	pushThroughput = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "livemigrate_agent_image_push_throughput_bytes_per_second",
		Help:    "Throughput of checkpoint image pushes.",
		Buckets: prometheus.ExponentialBuckets(1<<20, 2, 12),
	})
	frozenPods = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "livemigrate_agent_frozen_pods",
		Help: "Pods this agent holds frozen (frozen for a checkpoint, neither thawed nor released).",
	})
	thaws = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "livemigrate_agent_thaws_total",
		Help: "Pods thawed by a rollback.",
	})
	archivesRemoved = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "livemigrate_agent_archives_removed_total",
		Help: "Checkpoint archives deleted from the node.",
	})
	restoredPods = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "livemigrate_agent_restored_pods_total",
		Help: "Pods restored from a checkpoint that reached Ready, or failed.",
	}, []string{"result"})
)

var registerOnce sync.Once

// RegisterMetrics adds the reconcilers' metrics to controller-runtime's
// registry, which the manager serves on --metrics-bind-address. Safe to
// call more than once.
func RegisterMetrics() {
	registerOnce.Do(func() {
		ctrlmetrics.Registry.MustRegister(checkpoints, checkpointSecs, checkpointBytes, pushSecs, pushThroughput,
			frozenPods, thaws, archivesRemoved, restoredPods)
	})
}

// frozenSet is the set of PodCheckpoints whose pod this agent holds frozen;
// the frozen-pods gauge is its size. The zero value is empty.
type frozenSet struct {
	mu   sync.Mutex
	keys map[types.NamespacedName]bool
}

// set records whether this agent holds the pod of the PodCheckpoint key
// frozen. The gauge counts keys, not calls: repeating a call changes
// nothing, so a restarted agent rebuilds the gauge by reconciling every
// PodCheckpoint once (PodCheckpointReconciler.trackFrozen), and a thaw after
// a restart cannot drive it below zero.
func (s *frozenSet) set(key types.NamespacedName, frozen bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if frozen {
		if s.keys == nil {
			s.keys = map[types.NamespacedName]bool{}
		}
		s.keys[key] = true
	} else {
		delete(s.keys, key)
	}
	frozenPods.Set(float64(len(s.keys)))
}
