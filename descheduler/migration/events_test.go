package migration

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"

	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
	"github.com/livemigrate/livemigrate/descheduler/metrics"
	"github.com/livemigrate/livemigrate/test/builder"
)

type recordedEvent struct {
	Regarding, Type, Reason string
}

// recorder keeps which object each event was about.
type recorder struct {
	mu     sync.Mutex
	events []recordedEvent
}

func (r *recorder) Eventf(regarding, _ runtime.Object, eventtype, reason, _, note string, args ...interface{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	m, _ := meta.Accessor(regarding)
	kind := regarding.GetObjectKind().GroupVersionKind().Kind
	if _, ok := regarding.(*lmv1alpha1.LiveMigration); ok {
		kind = "LiveMigration"
	}
	_ = fmt.Sprintf(note, args...)
	r.events = append(r.events, recordedEvent{Regarding: kind + "/" + m.GetName(), Type: eventtype, Reason: reason})
}

func TestEventsOnMigrationAndWorkload(t *testing.T) {
	h := newHarness(t, builder.MakeLiveMigration("ns", "mig", "app").Target("b").Obj())
	rec := &recorder{}
	h.r.Recorder = rec
	h.w.restored = false
	h.run(lmv1alpha1.PhaseRestoring, time.Millisecond)
	h.w.fail["restoreStatus"] = NewStepFailedError("RestoreFailed", "boom")
	h.run(lmv1alpha1.PhaseFailed, time.Millisecond)

	var got []recordedEvent
	for _, e := range rec.events {
		if e.Reason == "Restoring" || e.Reason == "LiveMigrationRestoring" || e.Reason == "RollingBack" ||
			e.Reason == "LiveMigrationRollingBack" || e.Reason == "Failed" || e.Reason == "LiveMigrationFailed" {
			got = append(got, e)
		}
	}
	want := []recordedEvent{
		{"LiveMigration/mig", "Normal", "Restoring"}, {"Deployment/app", "Normal", "LiveMigrationRestoring"},
		{"LiveMigration/mig", "Warning", "RollingBack"}, {"Deployment/app", "Warning", "LiveMigrationRollingBack"},
		{"LiveMigration/mig", "Warning", "Failed"}, {"Deployment/app", "Warning", "LiveMigrationFailed"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
}

func value(t *testing.T, m prometheus.Metric) float64 {
	t.Helper()
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		t.Fatal(err)
	}
	switch {
	case d.Counter != nil:
		return d.Counter.GetValue()
	case d.Histogram != nil:
		return float64(d.Histogram.GetSampleCount())
	}
	return 0
}

func TestMetricsRecordOutcomesAndDowntime(t *testing.T) {
	succeeded := value(t, metrics.MigrationsTotal.WithLabelValues("succeeded"))
	aborted := value(t, metrics.MigrationsTotal.WithLabelValues("aborted"))
	memory := value(t, metrics.BytesTotal.WithLabelValues("memory"))
	downtimes := value(t, metrics.Downtime)

	h := newHarness(t, builder.MakeLiveMigration("ns", "mig", "app").Target("b").Obj())
	h.run(lmv1alpha1.PhaseSucceeded, time.Millisecond)
	if d := value(t, metrics.MigrationsTotal.WithLabelValues("succeeded")) - succeeded; d != 1 {
		t.Errorf("succeeded += %v, want 1", d)
	}
	if d := value(t, metrics.BytesTotal.WithLabelValues("memory")) - memory; d != 10<<20 {
		t.Errorf("memory bytes += %v, want %d", d, 10<<20)
	}
	if d := value(t, metrics.Downtime) - downtimes; d != 1 {
		t.Errorf("downtime observations += %v, want 1", d)
	}

	a := newHarness(t, builder.MakeLiveMigration("ns", "mig", "app").Target("b").Abort().Obj())
	a.run(lmv1alpha1.PhaseFailed, time.Millisecond)
	if d := value(t, metrics.MigrationsTotal.WithLabelValues("aborted")) - aborted; d != 1 {
		t.Errorf("aborted += %v, want 1", d)
	}
}
