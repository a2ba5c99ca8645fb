package relay

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// startServer runs handle for every connection accepted on a local listener.
func startServer(t *testing.T, handle func(net.Conn)) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		_ = l.Close()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				handle(c)
			}()
		}
	}()
	return l.Addr().String()
}

func echo(c net.Conn) { _, _ = io.Copy(c, c) }

func startRelay(t *testing.T, cfg Config) *Relay {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r, err := Start(ctx, cfg)
	if err != nil {
		cancel()
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		if err := r.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			t.Errorf("Close: %v", err)
		}
	})
	return r
}

// attempts is how many times a timing measurement is repeated before its
// upper bound counts as failed: a loaded two-core machine can stall any
// process for tens of milliseconds, while a relay that adds too much delay
// is slow every time. Lower bounds (never earlier than configured) fail at
// the first violation.
const attempts = 3

// eventually runs measure until it reports no upper-bound problem, at most
// attempts times, and fails with the last problem.
func eventually(t *testing.T, measure func() (problem string)) {
	t.Helper()
	var problem string
	for i := range attempts {
		if problem = measure(); problem == "" {
			return
		}
		t.Logf("attempt %d: %s", i+1, problem)
	}
	t.Error(problem)
}

func TestRelayRoundTrip(t *testing.T) {
	tests := []struct {
		name             string
		forward, reverse time.Duration
	}{
		{name: "symmetric 20ms", forward: 20 * time.Millisecond, reverse: 20 * time.Millisecond},
		{name: "asymmetric 30ms/5ms", forward: 30 * time.Millisecond, reverse: 5 * time.Millisecond},
		{name: "no delay", forward: 0, reverse: 0},
	}
	target := startServer(t, echo)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := startRelay(t, Config{
				Target:  target,
				Forward: Link{Delay: tc.forward},
				Reverse: Link{Delay: tc.reverse},
			})
			want := tc.forward + tc.reverse
			eventually(t, func() string {
				rtts := roundTrips(t, r.Addr(), 15)
				if rtts[0] < want {
					t.Fatalf("fastest RTT = %v, below the configured %v", rtts[0], want)
				}
				// At most 15ms of scheduling and loopback overhead.
				if median := rtts[len(rtts)/2]; median > want+15*time.Millisecond {
					return fmt.Sprintf("median RTT = %v, want %v (+15ms tolerance)", median, want)
				}
				return ""
			})
		})
	}
}

// roundTrips sends one byte at a time over a single connection and returns
// the sorted round trips, so it measures data in flight, not the connect.
func roundTrips(t *testing.T, addr string, rounds int) []time.Duration {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.Close()
	buf := make([]byte, 1)
	// The first round trip includes the relay's dial to the target.
	if _, err := c.Write([]byte{0}); err != nil {
		t.Fatalf("write: %v", err)
	}
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatalf("read: %v", err)
	}
	rtts := make([]time.Duration, 0, rounds)
	for i := range rounds {
		start := time.Now()
		if _, err := c.Write([]byte{byte(i)}); err != nil {
			t.Fatalf("write: %v", err)
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			t.Fatalf("read: %v", err)
		}
		rtts = append(rtts, time.Since(start))
		if buf[0] != byte(i) {
			t.Fatalf("round %d echoed %d", i, buf[0])
		}
	}
	sort.Slice(rtts, func(i, j int) bool { return rtts[i] < rtts[j] })
	return rtts
}

// TestRelayOneWayDelay checks each direction separately: a server stamps
// the arrival of messages the client stamped when sending them, on a
// long-lived connection, so every byte in flight is delayed, not only the
// connection set-up.
func TestRelayOneWayDelay(t *testing.T) {
	const forward, messages = 25 * time.Millisecond, 10
	base := time.Now()
	arrivals := make(chan time.Duration, messages+1)
	target := startServer(t, func(c net.Conn) {
		buf := make([]byte, 8)
		for {
			if _, err := io.ReadFull(c, buf); err != nil {
				return
			}
			sent := time.Duration(binary.BigEndian.Uint64(buf))
			arrivals <- time.Since(base) - sent
		}
	})
	r := startRelay(t, Config{Target: target, Forward: Link{Delay: forward}, Reverse: Link{Delay: time.Second}})
	send := func(c net.Conn) {
		msg := binary.BigEndian.AppendUint64(nil, uint64(time.Since(base)))
		if _, err := c.Write(msg); err != nil {
			t.Fatalf("write: %v", err)
		}
	}
	eventually(t, func() string {
		c, err := net.Dial("tcp", r.Addr())
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		defer c.Close()
		// The first message also waits for the relay's dial to the target.
		send(c)
		<-arrivals
		ticker := time.NewTicker(3 * time.Millisecond)
		defer ticker.Stop()
		for range messages {
			<-ticker.C
			send(c)
		}
		var got []time.Duration
		for i := range messages {
			d := <-arrivals
			if d < forward {
				t.Fatalf("message %d took %v one way, below the configured %v", i, d, forward)
			}
			got = append(got, d)
		}
		sort.Slice(got, func(i, j int) bool { return got[i] < got[j] })
		if median := got[len(got)/2]; median > forward+15*time.Millisecond {
			return fmt.Sprintf("median one-way delay = %v, want %v (+15ms tolerance); all: %v", median, forward, got)
		}
		return ""
	})
}

func TestRelayThroughput(t *testing.T) {
	tests := []struct {
		name      string
		direction string
		link      Link
		size      int
	}{
		{name: "upload 4MiB/s", direction: "forward", link: Link{Delay: 10 * time.Millisecond, BytesPerSecond: 4 << 20}, size: 6 << 20},
		{name: "download 2MiB/s", direction: "reverse", link: Link{Delay: 20 * time.Millisecond, BytesPerSecond: 2 << 20}, size: 3 << 20},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			payload := make([]byte, tc.size)
			if _, err := rand.Read(payload); err != nil {
				t.Fatal(err)
			}
			received := make(chan []byte, 1)
			var target string
			cfg := Config{}
			if tc.direction == "forward" {
				target = startServer(t, func(c net.Conn) {
					b, _ := io.ReadAll(c)
					received <- b
				})
				cfg = Config{Forward: tc.link}
			} else {
				target = startServer(t, func(c net.Conn) {
					// Wait for the client's go before sending.
					one := make([]byte, 1)
					if _, err := io.ReadFull(c, one); err != nil {
						return
					}
					_, _ = c.Write(payload)
				})
				cfg = Config{Reverse: tc.link}
			}
			cfg.Target = target
			r := startRelay(t, cfg)
			capRate := float64(tc.link.BytesPerSecond)
			eventually(t, func() string {
				c, err := net.Dial("tcp", r.Addr())
				if err != nil {
					t.Fatalf("dial: %v", err)
				}
				defer c.Close()
				start := time.Now()
				var got []byte
				if tc.direction == "forward" {
					if _, err := c.Write(payload); err != nil {
						t.Fatalf("write: %v", err)
					}
					_ = c.(*net.TCPConn).CloseWrite()
					got = <-received
				} else {
					if _, err := c.Write([]byte{1}); err != nil {
						t.Fatalf("write: %v", err)
					}
					got, err = io.ReadAll(c)
					if err != nil {
						t.Fatalf("read: %v", err)
					}
				}
				elapsed := time.Since(start)
				if !bytes.Equal(got, payload) {
					t.Fatalf("payload corrupted: got %d bytes, want %d", len(got), len(payload))
				}
				rate := float64(tc.size) / elapsed.Seconds()
				// Never above the cap (2% for timer granularity).
				if rate > capRate*1.02 {
					t.Fatalf("throughput = %.0f B/s over %v, above the cap %.0f B/s", rate, elapsed, capRate)
				}
				// The transfer also pays the delay once (twice for the
				// request in the reverse case): allow 15% below the cap.
				if rate < capRate*0.85 {
					return fmt.Sprintf("throughput = %.0f B/s over %v, want %.0f B/s (-15%% tolerance)", rate, elapsed, capRate)
				}
				return ""
			})
		})
	}
}

// TestWireSharedByConnections sends two payloads at once, each through its
// own relay, over links sharing one wire: together they take the time of
// both payloads at the cap, not of one (and without the wire, one).
func TestWireSharedByConnections(t *testing.T) {
	const size, rate = 2 << 20, 4 << 20
	for _, shared := range []bool{true, false} {
		t.Run(fmt.Sprintf("shared=%v", shared), func(t *testing.T) {
			payload := make([]byte, size)
			if _, err := rand.Read(payload); err != nil {
				t.Fatal(err)
			}
			received := make(chan int, 2)
			target := startServer(t, func(c net.Conn) {
				n, _ := io.Copy(io.Discard, c)
				received <- int(n)
			})
			link := Link{Delay: 5 * time.Millisecond, BytesPerSecond: rate}
			if shared {
				link.Wire = NewWire()
			}
			relays := []*Relay{startRelay(t, Config{Target: target, Forward: link}), startRelay(t, Config{Target: target, Forward: link})}
			want := time.Duration(float64(size) / rate * float64(time.Second))
			if shared {
				want *= 2
			}
			eventually(t, func() string {
				start := time.Now()
				var wg sync.WaitGroup
				for _, r := range relays {
					wg.Go(func() {
						c, err := net.Dial("tcp", r.Addr())
						if err != nil {
							return
						}
						defer c.Close()
						_, _ = c.Write(payload)
						_ = c.(*net.TCPConn).CloseWrite()
					})
				}
				wg.Wait()
				for range relays {
					if n := <-received; n != size {
						t.Fatalf("received %d bytes, want %d", n, size)
					}
				}
				elapsed := time.Since(start)
				if elapsed < want*98/100 {
					t.Fatalf("both payloads took %s, want at least %s", elapsed, want)
				}
				if elapsed > want*125/100 {
					return fmt.Sprintf("both payloads took %s, want about %s", elapsed, want)
				}
				return ""
			})
		})
	}
}

func TestRelayHalfCloseAndIntegrity(t *testing.T) {
	target := startServer(t, echo)
	r := startRelay(t, Symmetric(target, Link{Delay: 2 * time.Millisecond, BytesPerSecond: 64 << 20}))
	c, err := net.Dial("tcp", r.Addr())
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.Close()
	payload := make([]byte, 1<<20)
	if _, err := rand.Read(payload); err != nil {
		t.Fatal(err)
	}
	go func() {
		_, _ = c.Write(payload)
		_ = c.(*net.TCPConn).CloseWrite()
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if diff := cmp.Diff(len(payload), len(got)); diff != "" {
		t.Fatalf("echoed length (-want +got):\n%s", diff)
	}
	if !bytes.Equal(payload, got) {
		t.Fatal("echoed bytes differ from the bytes sent")
	}
}

func TestRelayCloseEndsConnections(t *testing.T) {
	target := startServer(t, echo)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r, err := Start(ctx, Symmetric(target, Link{Delay: time.Millisecond}))
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", r.Addr())
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1)
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := io.ReadFull(c, buf); err == nil {
		t.Error("connection still open after Close")
	}
	if _, err := net.Dial("tcp", r.Addr()); err == nil {
		t.Error("relay still accepting after Close")
	}
}

func TestStartRejectsInvalidConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
	}{
		{name: "no target", cfg: Config{}},
		{name: "negative delay", cfg: Config{Target: "127.0.0.1:1", Forward: Link{Delay: -time.Second}}},
		{name: "negative bandwidth", cfg: Config{Target: "127.0.0.1:1", Reverse: Link{BytesPerSecond: -1}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := Start(context.Background(), tc.cfg)
			if err == nil {
				_ = r.Close()
				t.Fatal("Start succeeded, want an error")
			}
		})
	}
}

// TestSwitchCutsAndRestores cuts a link under an open connection and a new
// one: nothing is delivered while it is cut, everything (in order) once it
// is restored, and a relay closed while its link is cut ends its
// connections.
func TestSwitchCutsAndRestores(t *testing.T) {
	target := startServer(t, echo)
	sw := NewSwitch()
	r := startRelay(t, Symmetric(target, Link{Delay: time.Millisecond, Switch: sw}))
	open, err := net.Dial("tcp", r.Addr())
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer open.Close()
	buf := make([]byte, 2)
	if _, err := open.Write([]byte("a1")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(open, buf); err != nil || string(buf) != "a1" {
		t.Fatalf("before the cut: read %q, %v", buf, err)
	}

	sw.Cut()
	if !sw.IsCut() {
		t.Fatal("IsCut = false after Cut")
	}
	if _, err := open.Write([]byte("a2")); err != nil {
		t.Fatal(err)
	}
	fresh, err := net.Dial("tcp", r.Addr())
	if err != nil {
		t.Fatalf("dial while cut: %v", err)
	}
	defer fresh.Close()
	if _, err := fresh.Write([]byte("b1")); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]net.Conn{"open": open, "fresh": fresh} {
		_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		if n, err := c.Read(buf); err == nil || n > 0 {
			t.Errorf("%s connection: read %q through a cut link", name, buf[:n])
		}
		_ = c.SetReadDeadline(time.Time{})
	}

	sw.Restore()
	if sw.IsCut() {
		t.Fatal("IsCut = true after Restore")
	}
	for name, want := range map[string]string{"a2": "open", "b1": "fresh"} {
		c := open
		if want == "fresh" {
			c = fresh
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != name {
			t.Errorf("%s connection after the restore: read %q, %v; want %q", want, buf, err, name)
		}
	}

	sw.Cut()
	if _, err := open.Write([]byte("a3")); err != nil {
		t.Fatal(err)
	}
	closed := make(chan error, 1)
	go func() { closed <- r.Close() }()
	select {
	case err := <-closed:
		if err != nil && !errors.Is(err, net.ErrClosed) {
			t.Errorf("Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close hangs on a connection waiting for a cut link")
	}
	_ = open.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(open, buf); err == nil {
		t.Error("connection still open after Close")
	}
}
