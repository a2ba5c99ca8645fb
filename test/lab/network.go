package lab

import (
	"fmt"
	"time"

	"github.com/livemigrate/livemigrate/test/lab/relay"
)

// Link returns the simulated link between two members: the sum of their
// delays one way, and the smaller of their bandwidth caps.
func (l *Lab) Link(from, to string) (relay.Link, error) {
	a, b := l.Member(from), l.Member(to)
	if a == nil || b == nil {
		return relay.Link{}, fmt.Errorf("no member %q or %q", from, to)
	}
	return linkBetween(a.Spec.Position, b.Spec.Position), nil
}

func linkBetween(a, b NetworkPosition) relay.Link {
	bw := a.BytesPerSecond
	if bw == 0 || (b.BytesPerSecond != 0 && b.BytesPerSecond < bw) {
		bw = b.BytesPerSecond
	}
	return relay.Link{Delay: a.Delay.Duration + b.Delay.Duration, BytesPerSecond: bw}
}

// ExpectedRTT is the round-trip time the relays add between two members.
func (l *Lab) ExpectedRTT(from, to string) (time.Duration, error) {
	link, err := l.Link(from, to)
	if err != nil {
		return 0, err
	}
	return 2 * link.Delay, nil
}

// Relay returns the address at which member from reaches target, an
// endpoint in member to, through the simulated link between them. Relays
// are created on first use and live until Stop.
func (l *Lab) Relay(from, to, target string) (string, error) {
	link, err := l.Link(from, to)
	if err != nil {
		return "", err
	}
	key := from + "|" + to + "|" + target
	l.relayMu.Lock()
	defer l.relayMu.Unlock()
	if r, ok := l.relays[key]; ok {
		return r.Addr(), nil
	}
	r, err := relay.Start(l.ctx, relay.Symmetric(target, link))
	if err != nil {
		return "", fmt.Errorf("relay from %s to %s: %w", from, to, err)
	}
	l.relays[key] = r
	return r.Addr(), nil
}
