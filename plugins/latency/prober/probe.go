package prober

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sort"
	"time"

	"github.com/livemigrate/livemigrate/internal/strutil"
)

// target is a probed endpoint with its kept connection.
type target struct {
	Target
	kind TargetKind
	conn net.Conn
	seq  uint64
}

// sampleResult is one round's outcome for one target.
type sampleResult struct {
	rtts     []time.Duration
	failures int32
	lastErr  string
}

// dialer is how connections are made (tests may shorten timeouts).
type dialer interface {
	DialContext(ctx context.Context, network, address string) (net.Conn, error)
}

// sample measures one round trip over t's kept connection, dialling first
// when there is none (dial time is not measured).
func (t *target) sample(ctx context.Context, d dialer, timeout time.Duration) (time.Duration, FailureReason, error) {
	if t.conn == nil {
		dctx, cancel := context.WithTimeout(ctx, timeout)
		conn, err := d.DialContext(dctx, "tcp", t.Address)
		cancel()
		if err != nil {
			return 0, ReasonDial, err
		}
		if tc, ok := conn.(*net.TCPConn); ok {
			_ = tc.SetNoDelay(true)
		}
		t.conn = conn
	}
	var out, in [payloadSize]byte
	t.seq++
	binary.BigEndian.PutUint64(out[:8], t.seq)
	binary.BigEndian.PutUint64(out[8:], rand.Uint64())
	_ = t.conn.SetDeadline(time.Now().Add(timeout))
	start := time.Now()
	if _, err := t.conn.Write(out[:]); err != nil {
		t.reset()
		return 0, ReasonWrite, err
	}
	if _, err := io.ReadFull(t.conn, in[:]); err != nil {
		t.reset()
		return 0, ReasonRead, err
	}
	rtt := time.Since(start)
	if !bytes.Equal(in[:], out[:]) {
		t.reset()
		return 0, ReasonMismatch, fmt.Errorf("echo returned different bytes")
	}
	return rtt, "", nil
}

func (t *target) reset() {
	if t.conn != nil {
		_ = t.conn.Close()
		t.conn = nil
	}
}

// round takes n samples, gap apart.
func (t *target) round(ctx context.Context, d dialer, n int, gap, timeout time.Duration) sampleResult {
	var r sampleResult
	for i := 0; i < n && ctx.Err() == nil; i++ {
		if i > 0 && gap > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(gap):
			}
		}
		rtt, reason, err := t.sample(ctx, d, timeout)
		if err != nil {
			r.failures++
			r.lastErr = strutil.Truncate(fmt.Sprintf("%s: %v", reason, err), 256)
			probeFailures.WithLabelValues(string(t.kind), string(reason)).Inc()
			continue
		}
		rttSeconds.WithLabelValues(string(t.kind)).Observe(rtt.Seconds())
		r.rtts = append(r.rtts, rtt)
	}
	return r
}

// percentile returns the nearest-rank p-th percentile (0 < p ≤ 100) of
// sorted, which must not be empty.
func percentile(sorted []time.Duration, p int) time.Duration {
	rank := (p*len(sorted) + 99) / 100
	if rank < 1 {
		rank = 1
	}
	return sorted[rank-1]
}

func summarize(rtts []time.Duration) (p50, p90 time.Duration) {
	s := append([]time.Duration(nil), rtts...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return percentile(s, 50), percentile(s, 90)
}
