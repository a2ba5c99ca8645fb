package metrics

import "github.com/prometheus/client_golang/prometheus"

// Admission results of the policy annotation webhook.
const (
	AdmissionAllowed = "allowed"
	AdmissionDenied  = "denied"
	AdmissionError   = "error"
)

// PolicyKind bounds the kind label of the policy admission metric.
func PolicyKind(kind string) string {
	switch kind {
	case "Deployment", "StatefulSet", "PropagationPolicy", "ClusterPropagationPolicy":
		return kind
	}
	return "other"
}

// PolicyAdmissionRequests counts the requests the policy annotation webhook
// answered. The webhook configuration's matchConditions send it only objects
// carrying a livemigrate.io/ annotation, so this counts exactly those.
var PolicyAdmissionRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "livemigrate_policy_admission_requests_total",
	Help: "Admission requests answered by the policy annotation webhook, by kind and result (allowed, denied, error).",
}, []string{"kind", "result"})

func triggerMetrics() []prometheus.Collector {
	return []prometheus.Collector{PolicyAdmissionRequests}
}
