package restore

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
)

type result string

const (
	resultClaimed      result = "claimed"
	resultNoCheckpoint result = "no_checkpoint"
	resultConflict     result = "conflict"
	resultError        result = "error"
)

// admissions is the restore webhook's metric; RegisterMetrics adds it to
// controller-runtime's registry.
var admissions = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "livemigrate_agent_restore_admissions_total",
	Help: "Pod admissions by the restore webhook that involved a pending PodRestore, by result (claimed, no_checkpoint, conflict, error).",
}, []string{"result"})

var registerOnce sync.Once

// RegisterMetrics adds the webhook's metrics to controller-runtime's
// registry, which the manager serves on --metrics-bind-address. Safe to
// call more than once.
func RegisterMetrics() {
	registerOnce.Do(func() { ctrlmetrics.Registry.MustRegister(admissions) })
}

func observeAdmission(r result) {
	admissions.WithLabelValues(string(r)).Inc()
}
