package restore

import (
	"github.com/prometheus/client_golang/prometheus"
)

type result string

const (
	resultClaimed      result = "claimed"
	resultNoCheckpoint result = "no_checkpoint"
	resultConflict     result = "conflict"
	resultError        result = "error"
)

// Metrics of the restore webhook.
type Metrics struct {
	admissions *prometheus.CounterVec
}

// NewMetrics creates the webhook's metrics and registers them on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{admissions: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "livemigrate_agent_restore_admissions_total",
		Help: "Pod admissions by the restore webhook that involved a pending PodRestore, by result (claimed, no_checkpoint, conflict, error).",
	}, []string{"result"})}
	if reg != nil {
		reg.MustRegister(m.admissions)
	}
	return m
}

func (m *Metrics) observe(r result) {
	if m == nil {
		return
	}
	m.admissions.WithLabelValues(string(r)).Inc()
}
