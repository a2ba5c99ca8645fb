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
	link := linkOf(a, b)
	if l.Member(from) != nil && l.Member(to) != nil && from != to {
		link.Switch = l.linkSwitch(from, to)
	}
	return link, nil
}

// linkSwitch returns the switch of the link between two members, the same
// for both directions.
func (l *Lab) linkSwitch(a, b string) *relay.Switch {
	if b < a {
		a, b = b, a
	}
	l.wiresMu.Lock()
	defer l.wiresMu.Unlock()
	if l.switches == nil {
		l.switches = map[string]*relay.Switch{}
	}
	key := a + "|" + b
	if l.switches[key] == nil {
		l.switches[key] = relay.NewSwitch()
	}
	return l.switches[key]
}

// CutLink cuts the simulated WAN link between two members, in both
// directions: every relay between them (the latency probers' and, with
// Options.WANDataPath, the data path's: volume replication and the
// checkpoint push and pull through the registries at the members' sites)
// stops delivering bytes and holds new connections, as a partition would;
// nothing is lost, and RestoreLink lets it all through again. The API
// servers are not behind the link: the control plane reaches both members.
func (l *Lab) CutLink(a, b string) error {
	if l.Member(a) == nil || l.Member(b) == nil || a == b {
		return fmt.Errorf("no link between members %q and %q", a, b)
	}
	l.linkSwitch(a, b).Cut()
	l.logger.Info("WAN link cut", "from", a, "to", b)
	return nil
}

// RestoreLink restores a link cut by CutLink.
func (l *Lab) RestoreLink(a, b string) error {
	if l.Member(a) == nil || l.Member(b) == nil || a == b {
		return fmt.Errorf("no link between members %q and %q", a, b)
	}
	l.linkSwitch(a, b).Restore()
	l.logger.Info("WAN link restored", "from", a, "to", b)
	return nil
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
