package lab

import (
	"fmt"
	"io"
	"net"
	"time"

	"github.com/livemigrate/livemigrate/test/lab/relay"
)

// Origin is a named echo endpoint at a network position, standing in for a
// population of users that workloads declare they must be close to
// ("origin:NAME" in the latency annotations). Probers reach it through relays.
type Origin struct {
	Name     string
	Position NetworkPosition
	// Addr is the echo endpoint itself (without any relay).
	Addr string
}

// position returns the network position of a member or an origin.
func (l *Lab) position(name string) (NetworkPosition, bool) {
	if m := l.Member(name); m != nil {
		return m.Spec.Position, true
	}
	for _, o := range l.Origins {
		if o.Name == name {
			return o.Position, true
		}
	}
	return NetworkPosition{}, false
}

// Link returns the simulated link between two members or origins: the sum
// of their delays one way, and the smaller of their bandwidth caps.
func (l *Lab) Link(from, to string) (relay.Link, error) {
	a, ok := l.position(from)
	if !ok {
		return relay.Link{}, fmt.Errorf("no member or origin %q", from)
	}
	b, ok := l.position(to)
	if !ok {
		return relay.Link{}, fmt.Errorf("no member or origin %q", to)
	}
	return linkBetween(a, b), nil
}

// startOrigins serves an echo endpoint for every configured origin.
func (l *Lab) startOrigins() error {
	for _, spec := range l.opts.Origins {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return fmt.Errorf("origin %s: %w", spec.Name, err)
		}
		go func() {
			<-l.ctx.Done()
			_ = ln.Close()
		}()
		go serveEcho(ln)
		l.Origins = append(l.Origins, &Origin{Name: spec.Name, Position: spec.Position, Addr: ln.Addr().String()})
	}
	return nil
}

func serveEcho(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			_, _ = io.Copy(c, c)
		}()
	}
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

// Relay returns the address at which member (or origin) from reaches
// target, an endpoint in member (or origin) to, through the simulated link between them. Relays
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
