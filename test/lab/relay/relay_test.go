package relay

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
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

// medianRTT sends one byte at a time over a single connection and returns
// the median round trip, so it measures data in flight, not the connect.
func medianRTT(t *testing.T, addr string, rounds int) time.Duration {
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
	if rtts[0] < 0 {
		t.Fatalf("negative RTT")
	}
	return rtts[len(rtts)/2]
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
			got := medianRTT(t, r.Addr(), 15)
			// Never earlier than configured; at most 15ms of scheduling and
			// loopback overhead on a loaded two-core machine.
			if got < want || got > want+15*time.Millisecond {
				t.Errorf("median RTT = %v, want %v (+15ms tolerance)", got, want)
			}
		})
	}
}

// TestRelayOneWayDelay checks each direction separately: a server stamps
// the arrival of messages the client stamped when sending them, on a
// long-lived connection, so every byte in flight is delayed, not only the
// connection set-up.
func TestRelayOneWayDelay(t *testing.T) {
	const forward, messages = 25 * time.Millisecond, 10
	base := time.Now()
	arrivals := make(chan time.Duration, messages)
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
	c, err := net.Dial("tcp", r.Addr())
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.Close()
	ticker := time.NewTicker(3 * time.Millisecond)
	defer ticker.Stop()
	for range messages {
		<-ticker.C
		msg := binary.BigEndian.AppendUint64(nil, uint64(time.Since(base)))
		if _, err := c.Write(msg); err != nil {
			t.Fatalf("write: %v", err)
		}
	}
	for i := range messages {
		d := <-arrivals
		if d < forward || d > forward+15*time.Millisecond {
			t.Errorf("message %d took %v one way, want %v (+15ms tolerance)", i, d, forward)
		}
	}
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
			want := time.Duration(float64(tc.size) / float64(tc.link.BytesPerSecond) * float64(time.Second))
			rate := float64(tc.size) / elapsed.Seconds()
			capRate := float64(tc.link.BytesPerSecond)
			// The transfer also pays the delay once (twice for the request in
			// the reverse case); allow 15% below and 2% above the cap.
			if rate > capRate*1.02 || rate < capRate*0.85 {
				t.Errorf("throughput = %.0f B/s over %v, want %.0f B/s (transfer alone %v)", rate, elapsed, capRate, want)
			}
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
