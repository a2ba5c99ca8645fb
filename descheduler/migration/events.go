package migration

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"

	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
	"github.com/livemigrate/livemigrate/descheduler/metrics"
)

// workloadObject is a reference to the migrated workload, for events.
func workloadObject(lm *lmv1alpha1.LiveMigration) *metav1.PartialObjectMetadata {
	apiVersion := lm.Spec.WorkloadRef.APIVersion
	if apiVersion == "" {
		apiVersion = "apps/v1"
	}
	return &metav1.PartialObjectMetadata{
		TypeMeta:   metav1.TypeMeta{APIVersion: apiVersion, Kind: lm.Spec.WorkloadRef.Kind},
		ObjectMeta: metav1.ObjectMeta{Namespace: lm.Namespace, Name: lm.Spec.WorkloadRef.Name},
	}
}

// phaseChanged emits events on the LiveMigration and on the workload and
// records the metrics of a phase change that was persisted.
func (r *Reconciler) phaseChanged(ctx context.Context, lm *lmv1alpha1.LiveMigration, prev lmv1alpha1.LiveMigrationPhase, now time.Time) {
	st := &lm.Status
	klog.FromContext(ctx).V(2).Info("Migration phase changed", "from", prev, "to", st.Phase)

	eventType := corev1.EventTypeNormal
	note := fmt.Sprintf("live migration %s: %s → %s", lm.Name, prev, st.Phase)
	if st.Phase == lmv1alpha1.PhaseRollingBack || st.Phase == lmv1alpha1.PhaseFailed {
		eventType = corev1.EventTypeWarning
		if st.Failure != nil {
			note = fmt.Sprintf("%s (%s failed: %s: %s)", note, st.Failure.Phase, st.Failure.Reason, st.Failure.Message)
		}
	}
	if st.Phase == lmv1alpha1.PhaseSucceeded && st.Downtime != nil {
		note = fmt.Sprintf("%s, downtime %s", note, st.Downtime.Duration)
	}
	if r.Recorder != nil {
		wl := workloadObject(lm)
		r.Recorder.Eventf(lm, wl, eventType, string(st.Phase), "LiveMigrate", "%s", note)
		r.Recorder.Eventf(wl, lm, eventType, "LiveMigration"+string(st.Phase), "LiveMigrate", "%s", note)
	}

	if prev != "" {
		if at := enteredAt(st, prev); !at.IsZero() {
			metrics.PhaseDuration.WithLabelValues(string(prev)).Observe(now.Sub(at).Seconds())
		}
	}
	switch st.Phase {
	case lmv1alpha1.PhaseSucceeded:
		metrics.MigrationsTotal.WithLabelValues(string(metrics.OutcomeSucceeded)).Inc()
		if st.Downtime != nil {
			metrics.Downtime.Observe(st.Downtime.Seconds())
		}
		metrics.BytesTotal.WithLabelValues(string(metrics.BytesMemory)).Add(float64(st.Bytes.Memory))
		metrics.BytesTotal.WithLabelValues(string(metrics.BytesVolumePreCopy)).Add(float64(st.Bytes.VolumePreCopy))
		metrics.BytesTotal.WithLabelValues(string(metrics.BytesFinalDelta)).Add(float64(st.Bytes.FinalDelta))
	case lmv1alpha1.PhaseFailed:
		outcome := metrics.OutcomeFailed
		if st.Failure != nil && st.Failure.Reason == "Aborted" {
			outcome = metrics.OutcomeAborted
		}
		metrics.MigrationsTotal.WithLabelValues(string(outcome)).Inc()
		metrics.BytesTotal.WithLabelValues(string(metrics.BytesMemory)).Add(float64(st.Bytes.Memory))
		metrics.BytesTotal.WithLabelValues(string(metrics.BytesVolumePreCopy)).Add(float64(st.Bytes.VolumePreCopy))
		metrics.BytesTotal.WithLabelValues(string(metrics.BytesFinalDelta)).Add(float64(st.Bytes.FinalDelta))
	}
}
