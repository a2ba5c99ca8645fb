package controller

import (
	"sync"
	"time"

	"github.com/livemigrate/livemigrate/agent/replication/engine"
	"github.com/livemigrate/livemigrate/agent/replication/transport"
)

// passProgress adds the wire bytes of a pass in progress to
// status.bytesSent, at most once per progress interval, so that a long
// pass shows progress before it ends; at its end only the rest is added.
type passProgress struct {
	counter *transport.Counter

	mu sync.Mutex
	// base is the counter at the end of the previous pass.
	base int64
	// shown is what the current pass has already added to the status.
	shown int64
	last  time.Time
}

func newPassProgress() *passProgress { return &passProgress{counter: &transport.Counter{}} }

// tracked reports whether a pass shows progress: the pre-copy and final
// passes, which carry the volume's data; verification and repair passes
// are added when they end.
func tracked(p engine.Pass) bool {
	return p == engine.PassFull || p == engine.PassDelta || p == engine.PassFinal
}

// during calls apply with the bytes sent since the last update when the
// interval has passed since it; they count as shown once apply succeeds.
func (p *passProgress) during(pass engine.Pass, now time.Time, interval time.Duration, apply func(delta int64) error) {
	if !tracked(pass) {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.last.IsZero() && now.Sub(p.last) < interval {
		return
	}
	sent := p.counter.Sent.Load() - p.base
	if sent <= p.shown {
		return
	}
	if apply(sent-p.shown) == nil {
		p.shown, p.last = sent, now
	}
}

// ended returns what is left to add for a pass that sent wireSent (nothing
// for a failed one: what it sent while running stays counted) and starts
// the next pass.
func (p *passProgress) ended(wireSent int64, ok bool) int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	rest := wireSent - p.shown
	p.base, p.shown = p.counter.Sent.Load(), 0
	if !ok || rest < 0 {
		return 0
	}
	return rest
}
