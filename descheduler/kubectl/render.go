package kubectl

import (
	"fmt"
	"io"
	"strings"
	"time"

	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
	"github.com/livemigrate/livemigrate/descheduler/migration"
	"github.com/livemigrate/livemigrate/descheduler/policy"
)

// FormatBytes prints a byte count with a binary unit.
func FormatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%dB", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f%ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func totalBytes(st *lmv1alpha1.LiveMigrationStatus) int64 {
	return st.Bytes.Memory + st.Bytes.VolumePreCopy + st.Bytes.FinalDelta
}

// progress is the fraction of the happy path done.
func progress(p lmv1alpha1.LiveMigrationPhase) float64 {
	phases := migration.Phases()
	for i, q := range phases {
		if q == p {
			return float64(i) / float64(len(phases)-1)
		}
	}
	return 0
}

// Progress renders a migration as it advances: a redrawn progress bar on a
// terminal, one plain line per change otherwise.
type Progress struct {
	Out      io.Writer
	Terminal bool
	Width    int

	last      string
	lastBytes int64
	lastTime  time.Time
	drawn     bool
}

// Update renders the migration observed at now.
func (p *Progress) Update(lm *lmv1alpha1.LiveMigration, now time.Time) {
	st := &lm.Status
	bytes := totalBytes(st)
	rate := ""
	if !p.lastTime.IsZero() && now.After(p.lastTime) && bytes > p.lastBytes {
		rate = FormatBytes(int64(float64(bytes-p.lastBytes)/now.Sub(p.lastTime).Seconds())) + "/s"
	}
	if bytes != p.lastBytes || p.lastTime.IsZero() {
		p.lastBytes, p.lastTime = bytes, now
	}
	phase := string(st.Phase)
	if phase == "" {
		phase = string(lmv1alpha1.PhasePending)
	}
	info := fmt.Sprintf("%-13s %s→%s  %s", phase, orDash(st.SourceCluster), orDash(st.TargetCluster), FormatBytes(bytes))
	if rate != "" {
		info += "  " + rate
	}
	if st.Downtime != nil {
		info += "  downtime " + st.Downtime.Duration.Round(time.Millisecond).String()
	}
	if !p.Terminal {
		if info != p.last {
			fmt.Fprintln(p.Out, info)
			p.last = info
		}
		return
	}
	width := p.Width
	if width <= 0 {
		width = 30
	}
	done := int(progress(st.Phase) * float64(width))
	bar := strings.Repeat("█", done) + strings.Repeat("░", width-done)
	fmt.Fprintf(p.Out, "\r\033[K[%s] %3.0f%% %s", bar, progress(st.Phase)*100, info)
	p.drawn = true
	p.last = info
}

// Finish ends the display with a summary line.
func (p *Progress) Finish(lm *lmv1alpha1.LiveMigration) {
	if p.Terminal && p.drawn {
		fmt.Fprintln(p.Out)
	}
	fmt.Fprintln(p.Out, Summary(lm))
}

// Summary is one sentence about a finished (or running) migration.
func Summary(lm *lmv1alpha1.LiveMigration) string {
	st := &lm.Status
	switch st.Phase {
	case lmv1alpha1.PhaseSucceeded:
		s := fmt.Sprintf("livemigration %s succeeded: %s %s moved %s → %s", lm.Name, lm.Spec.WorkloadRef.Kind, lm.Spec.WorkloadRef.Name, st.SourceCluster, st.TargetCluster)
		if st.Downtime != nil {
			s += fmt.Sprintf(", downtime %s", st.Downtime.Round(time.Millisecond))
		}
		return s + fmt.Sprintf(", %s moved (memory %s, volumes %s + final delta %s)",
			FormatBytes(totalBytes(st)), FormatBytes(st.Bytes.Memory), FormatBytes(st.Bytes.VolumePreCopy), FormatBytes(st.Bytes.FinalDelta))
	case lmv1alpha1.PhaseFailed:
		if f := st.Failure; f != nil {
			return fmt.Sprintf("livemigration %s failed in %s (%s): %s; the workload still runs on %s",
				lm.Name, f.Phase, f.Reason, f.Message, orDash(st.SourceCluster))
		}
		return fmt.Sprintf("livemigration %s failed", lm.Name)
	default:
		return fmt.Sprintf("livemigration %s is %s", lm.Name, st.Phase)
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// Table prints migrations the way `kubectl get` would.
func Table(out io.Writer, items []lmv1alpha1.LiveMigration, now time.Time) {
	fmt.Fprintf(out, "%-24s %-26s %-13s %-10s %-10s %-10s %s\n", "NAME", "WORKLOAD", "PHASE", "SOURCE", "TARGET", "DOWNTIME", "AGE")
	for i := range items {
		lm := &items[i]
		down := "-"
		if lm.Status.Downtime != nil {
			down = lm.Status.Downtime.Duration.Round(time.Millisecond).String()
		}
		phase := string(lm.Status.Phase)
		if phase == "" {
			phase = string(lmv1alpha1.PhasePending)
		}
		wl := strings.ToLower(lm.Spec.WorkloadRef.Kind) + "/" + lm.Spec.WorkloadRef.Name
		fmt.Fprintf(out, "%-24s %-26s %-13s %-10s %-10s %-10s %s\n", lm.Name, wl, phase,
			orDash(lm.Status.SourceCluster), orDash(lm.Status.TargetCluster), down, age(now.Sub(lm.CreationTimestamp.Time)))
	}
}

func age(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	default:
		return fmt.Sprintf("%dd", int(d.Hours()/24))
	}
}

// Describe prints one migration in detail.
func Describe(out io.Writer, lm *lmv1alpha1.LiveMigration) {
	st := &lm.Status
	fmt.Fprintf(out, "Name:       %s/%s\n", lm.Namespace, lm.Name)
	fmt.Fprintf(out, "Workload:   %s %s\n", lm.Spec.WorkloadRef.Kind, lm.Spec.WorkloadRef.Name)
	fmt.Fprintf(out, "Trigger:    %s\n", policy.TriggerOf(lm.Labels))
	if why := lm.Annotations[policy.AnnotationReason]; why != "" {
		fmt.Fprintf(out, "Reason:     %s\n", why)
	}
	fmt.Fprintf(out, "Phase:      %s\n", orDash(string(st.Phase)))
	fmt.Fprintf(out, "Source:     %s\n", orDash(st.SourceCluster))
	fmt.Fprintf(out, "Target:     %s\n", orDash(st.TargetCluster))
	fmt.Fprintf(out, "Bytes:      memory %s, volume pre-copy %s, final delta %s\n",
		FormatBytes(st.Bytes.Memory), FormatBytes(st.Bytes.VolumePreCopy), FormatBytes(st.Bytes.FinalDelta))
	if st.EstimatedDowntime != nil {
		fmt.Fprintf(out, "Estimated:  %s\n", st.EstimatedDowntime.Round(time.Millisecond))
	}
	if st.Downtime != nil {
		fmt.Fprintf(out, "Downtime:   %s\n", st.Downtime.Round(time.Millisecond))
	}
	if f := st.Failure; f != nil {
		fmt.Fprintf(out, "Failed in:  %s (%s): %s\n", f.Phase, f.Reason, f.Message)
	}
	if len(st.PhaseTransitions) > 0 {
		fmt.Fprintln(out, "Phases:")
		for _, t := range st.PhaseTransitions {
			fmt.Fprintf(out, "  %-13s %s\n", t.Phase, t.EnteredAt.UTC().Format(time.RFC3339))
		}
	}
	if len(st.Volumes) > 0 {
		fmt.Fprintln(out, "Volumes:")
		for _, v := range st.Volumes {
			fmt.Fprintf(out, "  %-24s pod=%s rounds=%d sent=%s last-delta=%s final-delta=%s synced=%v\n", v.ClaimName, orDash(v.PodName), v.Rounds,
				FormatBytes(v.PreCopyBytes), FormatBytes(v.LastDeltaBytes), FormatBytes(v.FinalDeltaBytes), v.Synced)
		}
	}
	if len(st.Pods) > 0 {
		fmt.Fprintln(out, "Pods:")
		for _, p := range st.Pods {
			fmt.Fprintf(out, "  %-24s node=%s frozen=%v checkpoint=%s restored=%v\n", p.Name, orDash(p.SourceNode), p.Frozen, FormatBytes(p.CheckpointBytes), p.Restored)
		}
	}
	if len(st.Conditions) > 0 {
		fmt.Fprintln(out, "Conditions:")
		for _, c := range st.Conditions {
			fmt.Fprintf(out, "  %-18s %-7s %s: %s\n", c.Type, c.Status, c.Reason, c.Message)
		}
	}
}
