package relay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"k8s.io/klog/v2"
)

// chunkSize is the largest piece of data scheduled as one unit. Small
// chunks keep pacing smooth at low bandwidths.
const chunkSize = 16 << 10

// minQueueBytes is the smallest amount of data a direction holds in flight,
// whatever its bandwidth-delay product.
const minQueueBytes = 256 << 10

// Link describes one direction of a simulated path.
type Link struct {
	// Delay is the one-way propagation delay added to every byte.
	Delay time.Duration
	// BytesPerSecond caps the throughput; zero means unlimited.
	BytesPerSecond int64
	// Wire, when set, is shared by every connection (of any relay) whose
	// link names it: their bytes are serialized one after another at
	// BytesPerSecond, as on one physical link. Without it each connection
	// gets the whole cap.
	Wire *Wire
	// Switch, when set, cuts and restores the link: while it is cut no
	// byte is delivered and no new connection reaches the target; what
	// entered the link waits and is delivered, in order, once it is
	// restored, as TCP retransmits over a partition shorter than its
	// own timeouts.
	Switch *Switch
}

// Switch cuts and restores every link that names it, in both directions
// when both directions of a relay name it.
type Switch struct {
	mu  sync.Mutex
	cut bool
	// up is closed while the link is up, replaced when it is cut.
	up chan struct{}
}

// NewSwitch returns a switch whose link is up.
func NewSwitch() *Switch {
	s := &Switch{up: make(chan struct{})}
	close(s.up)
	return s
}

// Cut stops the links of the switch from delivering anything.
func (s *Switch) Cut() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.cut {
		s.cut = true
		s.up = make(chan struct{})
	}
}

// Restore lets the links of the switch deliver again.
func (s *Switch) Restore() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cut {
		s.cut = false
		close(s.up)
	}
}

// IsCut reports whether the link is cut.
func (s *Switch) IsCut() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cut
}

// waitUp returns when the switch's link is up (at once for a nil switch)
// or with net.ErrClosed when stop is closed first.
func (s *Switch) waitUp(stop <-chan struct{}) error {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	up := s.up
	s.mu.Unlock()
	select {
	case <-up:
		return nil
	case <-stop:
		return net.ErrClosed
	}
}

// Wire is the sending side of a link shared by several connections.
type Wire struct {
	mu   sync.Mutex
	busy time.Time // when the wire finishes sending what it already has
}

// NewWire returns an idle wire.
func NewWire() *Wire { return &Wire{} }

// schedule reserves the wire for n bytes at bps from now (or from when it
// is free) and returns when they are sent.
func (w *Wire) schedule(now time.Time, n int, bps int64) time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	start := now
	if w.busy.After(start) {
		start = w.busy
	}
	w.busy = start.Add(time.Duration(float64(n) / float64(bps) * float64(time.Second)))
	return w.busy
}

// Config describes a relay.
type Config struct {
	// Listen is the local address to listen on; "127.0.0.1:0" when empty.
	Listen string
	// Target is the address every accepted connection is forwarded to.
	Target string
	// Forward applies to bytes from the client to the target.
	Forward Link
	// Reverse applies to bytes from the target back to the client.
	Reverse Link
}

// Symmetric returns a Config with the same link in both directions.
func Symmetric(target string, link Link) Config {
	return Config{Target: target, Forward: link, Reverse: link}
}

// Relay forwards TCP connections from its listener to a target.
type Relay struct {
	cfg      Config
	listener net.Listener

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	// done is closed by Close.
	done chan struct{}

	wg sync.WaitGroup
}

// Start listens and serves until Close is called or ctx ends.
func Start(ctx context.Context, cfg Config) (*Relay, error) {
	if cfg.Target == "" {
		return nil, errors.New("relay: target address is empty")
	}
	if cfg.Forward.Delay < 0 || cfg.Reverse.Delay < 0 || cfg.Forward.BytesPerSecond < 0 || cfg.Reverse.BytesPerSecond < 0 {
		return nil, errors.New("relay: delay and bandwidth must not be negative")
	}
	listen := cfg.Listen
	if listen == "" {
		listen = "127.0.0.1:0"
	}
	l, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("relay: listening on %s: %w", listen, err)
	}
	r := &Relay{cfg: cfg, listener: l, conns: map[net.Conn]struct{}{}, done: make(chan struct{})}
	r.wg.Add(1)
	go r.serve(ctx)
	go func() {
		<-ctx.Done()
		_ = r.Close()
	}()
	return r, nil
}

// Addr is the address clients connect to.
func (r *Relay) Addr() string { return r.listener.Addr().String() }

// Config returns the relay's configuration.
func (r *Relay) Config() Config { return r.cfg }

// Close stops accepting, closes every relayed connection and waits for the
// relay's goroutines to end.
func (r *Relay) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		r.wg.Wait()
		return nil
	}
	r.closed = true
	close(r.done)
	err := r.listener.Close()
	for c := range r.conns {
		_ = c.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
	return err
}

func (r *Relay) track(c net.Conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	r.conns[c] = struct{}{}
	return true
}

func (r *Relay) untrack(c net.Conn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.conns, c)
}

func (r *Relay) serve(ctx context.Context) {
	defer r.wg.Done()
	logger := klog.FromContext(ctx).WithValues("relay", r.Addr(), "target", r.cfg.Target)
	for {
		client, err := r.listener.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				logger.Error(err, "Accepting a connection failed")
			}
			return
		}
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			r.handle(ctx, client)
		}()
	}
}

func (r *Relay) handle(ctx context.Context, client net.Conn) {
	logger := klog.FromContext(ctx)
	if !r.track(client) {
		_ = client.Close()
		return
	}
	defer r.untrack(client)
	defer client.Close()

	// A cut link reaches nothing: the connection waits until it is restored.
	if r.cfg.Forward.Switch.waitUp(r.done) != nil || r.cfg.Reverse.Switch.waitUp(r.done) != nil {
		return
	}
	var d net.Dialer
	server, err := d.DialContext(ctx, "tcp", r.cfg.Target)
	if err != nil {
		logger.V(2).Info("Dialing the relay target failed", "target", r.cfg.Target, "err", err)
		return
	}
	if !r.track(server) {
		_ = server.Close()
		return
	}
	defer r.untrack(server)
	defer server.Close()

	var wg sync.WaitGroup
	wg.Add(2)
	errs := make(chan error, 2)
	go func() { defer wg.Done(); errs <- pipe(server, client, r.cfg.Forward, r.done) }()
	go func() { defer wg.Done(); errs <- pipe(client, server, r.cfg.Reverse, r.done) }()
	for range 2 {
		if err := <-errs; err != nil {
			// One direction failed: tear down both so the other one ends too.
			_ = client.Close()
			_ = server.Close()
		}
	}
	wg.Wait()
}

// chunk is data that entered the link at one instant, to be delivered at due.
type chunk struct {
	data []byte
	due  time.Time
	eof  bool
}

// pipe copies src to dst through a link and half-closes dst when src ends;
// stop ends a wait for a cut link.
func pipe(dst, src net.Conn, link Link, stop <-chan struct{}) error {
	queue := make(chan chunk, queueLen(link))
	readErr := make(chan error, 1)
	go func() {
		readErr <- readInto(queue, src, link)
	}()
	werr := writeFrom(dst, queue, link.Switch, stop)
	if werr != nil {
		// Unblock the reader, which may be waiting on a full queue or on src.
		_ = src.Close()
		for range queue {
		}
	}
	rerr := <-readErr
	if werr != nil {
		return werr
	}
	if rerr != nil {
		return rerr
	}
	if tc, ok := dst.(interface{ CloseWrite() error }); ok {
		_ = tc.CloseWrite()
	}
	return nil
}

// queueLen is how many chunks one direction may hold in flight: at least
// twice the bandwidth-delay product, so a capped link can stay full.
func queueLen(link Link) int {
	bytes := int64(minQueueBytes)
	if link.BytesPerSecond > 0 {
		bdp := 2 * int64(float64(link.BytesPerSecond)*link.Delay.Seconds())
		bytes = max(bytes, bdp)
	} else if link.Delay > 0 {
		// Unlimited bandwidth: allow 64 MiB in flight.
		bytes = 64 << 20
	}
	return int(bytes/chunkSize) + 2
}

// readInto reads src and schedules each read for delivery. The delivery time
// models a link that first serializes the bytes at the bandwidth cap and then
// propagates them for the delay.
func readInto(queue chan<- chunk, src net.Conn, link Link) error {
	defer close(queue)
	var serialized time.Time // when the link finishes sending what it already has
	for {
		buf := make([]byte, chunkSize)
		n, err := src.Read(buf)
		if n > 0 {
			now := time.Now()
			start := now
			if serialized.After(start) {
				start = serialized
			}
			sent := start
			switch {
			case link.BytesPerSecond > 0 && link.Wire != nil:
				// After this connection's previous bytes, and after
				// whatever the other connections on the wire queued.
				sent = link.Wire.schedule(start, n, link.BytesPerSecond)
			case link.BytesPerSecond > 0:
				sent = start.Add(time.Duration(float64(n) / float64(link.BytesPerSecond) * float64(time.Second)))
			}
			serialized = sent
			queue <- chunk{data: buf[:n], due: sent.Add(link.Delay)}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				due := time.Now().Add(link.Delay)
				if serialized.Add(link.Delay).After(due) {
					due = serialized.Add(link.Delay)
				}
				queue <- chunk{due: due, eof: true}
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
	}
}

// writeFrom delivers scheduled chunks at their due time, and not while sw
// is cut.
func writeFrom(dst net.Conn, queue <-chan chunk, sw *Switch, stop <-chan struct{}) error {
	timer := time.NewTimer(0)
	<-timer.C
	defer timer.Stop()
	for c := range queue {
		if wait := time.Until(c.due); wait > 0 {
			timer.Reset(wait)
			<-timer.C
		}
		if err := sw.waitUp(stop); err != nil {
			return err
		}
		if c.eof {
			return nil
		}
		if _, err := dst.Write(c.data); err != nil {
			return err
		}
	}
	return nil
}
