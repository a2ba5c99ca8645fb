package prober

import (
	"context"
	"net"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
	"github.com/livemigrate/livemigrate/internal/strutil"
)

// StatusWriter writes the status of the ClusterLatency named name.
type StatusWriter interface {
	WriteStatus(ctx context.Context, name string, status *lmv1alpha1.ClusterLatencyStatus) error
}

// Prober measures RTTs to its targets, round after round, and writes them.
type Prober struct {
	cfg     *Config
	writer  StatusWriter
	clock   clock.WithTicker
	dialer  dialer
	version string
	targets []*target
}

// New returns a prober for a defaulted, validated cfg.
func New(cfg *Config, writer StatusWriter, version string) *Prober {
	p := &Prober{cfg: cfg, writer: writer, clock: clock.RealClock{}, dialer: &net.Dialer{}, version: version}
	for _, t := range cfg.Peers {
		p.targets = append(p.targets, &target{Target: t, kind: KindPeer})
	}
	for _, t := range cfg.Origins {
		p.targets = append(p.targets, &target{Target: t, kind: KindOrigin})
	}
	return p
}

// Run probes every interval until ctx is done. A failed status write is
// logged and retried on the next round.
func (p *Prober) Run(ctx context.Context) {
	logger := klog.FromContext(ctx).WithValues("cluster", p.cfg.ClusterName)
	defer p.close()
	ticker := p.clock.NewTicker(p.cfg.Interval.Duration)
	defer ticker.Stop()
	for {
		if err := p.RunOnce(ctx); err != nil && ctx.Err() == nil {
			logger.Error(err, "Writing ClusterLatency status failed; retrying next round")
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C():
		}
	}
}

// RunOnce runs one round (all targets concurrently) and writes its result.
func (p *Prober) RunOnce(ctx context.Context) error {
	status := p.Round(ctx)
	err := p.writer.WriteStatus(ctx, p.cfg.ClusterName, status)
	if err != nil {
		statusWrites.WithLabelValues(string(WriteError)).Inc()
		return err
	}
	statusWrites.WithLabelValues(string(WriteSuccess)).Inc()
	klog.FromContext(ctx).V(2).Info("Wrote ClusterLatency status", "cluster", p.cfg.ClusterName,
		"peers", len(status.Peers), "origins", len(status.Origins))
	return nil
}

// Round measures every target once and returns the status to write.
func (p *Prober) Round(ctx context.Context) *lmv1alpha1.ClusterLatencyStatus {
	start := p.clock.Now()
	n := int(*p.cfg.Samples)
	gap := p.cfg.Interval.Duration / time.Duration(4*n)
	if gap > 200*time.Millisecond {
		gap = 200 * time.Millisecond
	}
	results := make([]sampleResult, len(p.targets))
	var wg sync.WaitGroup
	for i, t := range p.targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = t.round(ctx, p.dialer, n, gap, p.cfg.Timeout.Duration)
		}()
	}
	wg.Wait()
	now := metav1.NewTime(p.clock.Now())
	roundDuration.Observe(now.Sub(start).Seconds())
	status := &lmv1alpha1.ClusterLatencyStatus{LastProbeTime: &now, ProberVersion: p.version}
	for i, t := range p.targets {
		r := results[i]
		m := lmv1alpha1.RTTMeasurement{
			Name: t.Name, Address: t.Address, Samples: int32(len(r.rtts)), Failures: r.failures,
			ObservedAt: now, LastError: r.lastErr,
		}
		if len(r.rtts) > 0 {
			p50, p90 := summarize(r.rtts)
			m.P50 = &metav1.Duration{Duration: p50.Round(time.Microsecond)}
			m.P90 = &metav1.Duration{Duration: p90.Round(time.Microsecond)}
		}
		if t.kind == KindPeer {
			status.Peers = append(status.Peers, m)
		} else {
			status.Origins = append(status.Origins, m)
		}
	}
	status.Summary = summaryLine(status)
	return status
}

// summaryLine renders the p50s as "member2=25.4ms member3=85.2ms |
// eu-users=11.2ms" ("?" for a target without samples), at most 1024 bytes.
func summaryLine(st *lmv1alpha1.ClusterLatencyStatus) string {
	var b strings.Builder
	write := func(ms []lmv1alpha1.RTTMeasurement) {
		for i, m := range ms {
			if i > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(m.Name)
			b.WriteByte('=')
			if m.P50 == nil {
				b.WriteByte('?')
			} else {
				b.WriteString(m.P50.Duration.Round(100 * time.Microsecond).String())
			}
		}
	}
	write(st.Peers)
	if len(st.Origins) > 0 {
		b.WriteString(" | ")
		write(st.Origins)
	}
	return strutil.Truncate(b.String(), 1024)
}

func (p *Prober) close() {
	for _, t := range p.targets {
		t.reset()
	}
}
