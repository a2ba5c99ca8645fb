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
	// Near is the member whose site the origin hangs off ("" for the backbone).
	Near string
	// Addr is the echo endpoint itself (without any relay).
	Addr string
}

// hop is one leg of the simulated network: a member or an origin and the
// link from it towards the backbone.
type hop struct {
	name string
	pos  NetworkPosition
}

// pathUp returns the legs from a member or origin up to the backbone.
func (l *Lab) pathUp(name string) ([]hop, bool) {
	if m := l.Member(name); m != nil {
		return []hop{{name: name, pos: m.Spec.Position}}, true
	}
	for _, o := range l.Origins {
		if o.Name != name {
			continue
		}
		path := []hop{{name: o.Name, pos: o.Position}}
		if o.Near != "" {
			m := l.Member(o.Near)
			if m == nil {
				return nil, false
			}
			path = append(path, hop{name: m.Name, pos: m.Spec.Position})
		}
		return path, true
	}
	return nil, false
}

// linkOf returns the link between the ends of two paths up: the legs they
// do not share, their delays added, their smallest bandwidth cap.
func linkOf(a, b []hop) relay.Link {
	for len(a) > 0 && len(b) > 0 && a[len(a)-1].name == b[len(b)-1].name {
		a, b = a[:len(a)-1], b[:len(b)-1]
	}
	var link relay.Link
	for _, h := range append(append([]hop(nil), a...), b...) {
		link.Delay += h.pos.Delay.Duration
		if bw := h.pos.BytesPerSecond; bw > 0 && (link.BytesPerSecond == 0 || bw < link.BytesPerSecond) {
			link.BytesPerSecond = bw
		}
	}
	return link
}

// Link returns the simulated link between two members or origins. Members
// and origins sit on a tree: members on the backbone, origins on the
// backbone or at a member's site (OriginSpec.Near). The one-way delay is the
// sum of the delays of the legs between the two, the bandwidth the smallest
// cap among them.
func (l *Lab) Link(from, to string) (relay.Link, error) {
	a, ok := l.pathUp(from)
	if !ok {
		return relay.Link{}, fmt.Errorf("no member or origin %q", from)
	}
	b, ok := l.pathUp(to)
	if !ok {
		return relay.Link{}, fmt.Errorf("no member or origin %q", to)
	}
	return linkOf(a, b), nil
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
		l.Origins = append(l.Origins, &Origin{Name: spec.Name, Position: spec.Position, Near: spec.Near, Addr: ln.Addr().String()})
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

// ExpectedRTT is the round-trip time the relays add between two members
// or origins.
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
