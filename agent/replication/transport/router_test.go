package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/livemigrate/livemigrate/agent/replication/certs"
)

// routedServer serves one Router with a route per migration; every route
// echoes the name of the route that got the connection.
type routedServer struct {
	router   *Router
	rejected chan rejection
}

type rejection struct {
	name string
	err  error
}

func startRouter(t *testing.T) *routedServer {
	t.Helper()
	rt, err := ListenRouter("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &routedServer{router: rt, rejected: make(chan rejection, 16)}
	rt.OnReject = func(_ net.Addr, name string, err error) {
		select {
		case s.rejected <- rejection{name: name, err: err}:
		default: // a test that does not look at them
		}
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = rt.Serve() }()
	t.Cleanup(func() { _ = rt.Close(); <-done })
	return s
}

func (s *routedServer) add(t *testing.T, name string, b *certs.Bundle, uid string) {
	t.Helper()
	err := s.router.Add(name, tlsCfg(t, b, certs.RoleTarget, uid, nil), func(c *tls.Conn) {
		defer c.Close()
		_, _ = io.WriteString(c, c.ConnectionState().ServerName+"\n")
	})
	if err != nil {
		t.Fatal(err)
	}
}

func withName(cfg *tls.Config, name string) *tls.Config {
	c := cfg.Clone()
	c.ServerName = name
	return c
}

// read returns what the server wrote, or the error that ended the
// connection.
func read(c net.Conn) (string, error) {
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(c)
	if len(b) == 0 && err == nil {
		err = io.EOF
	}
	return string(b), err
}

// TestRouterRoutesByServerName: many migrations on one port, each
// connection reaches the route it names, concurrently.
func TestRouterRoutesByServerName(t *testing.T) {
	s := startRouter(t)
	const n = 40
	bundles := make([]*certs.Bundle, n)
	for i := range bundles {
		uid := fmt.Sprintf("m%d", i)
		b, err := certs.Mint(certs.Options{MigrationUID: uid, Validity: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		bundles[i] = b
		s.add(t, "r"+uid+".replication.livemigrate.io", b, uid)
	}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range bundles {
		wg.Add(1)
		go func() {
			defer wg.Done()
			uid := fmt.Sprintf("m%d", i)
			name := "r" + uid + ".replication.livemigrate.io"
			c, err := Dial(context.Background(), s.router.Addr().String(), withName(tlsCfg(t, bundles[i], certs.RoleSource, uid, nil), name))
			if err != nil {
				errs <- fmt.Errorf("%s: %w", uid, err)
				return
			}
			defer c.Close()
			got, err := read(c)
			if err != nil || got != name+"\n" {
				errs <- fmt.Errorf("%s: got %q, %v; want the route %s", uid, got, err, name)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestRouterRefuses: a connection naming no route, an unknown route, or a
// route of another migration than its certificate is refused by the server
// and reported.
func TestRouterRefuses(t *testing.T) {
	s := startRouter(t)
	a, err := certs.Mint(certs.Options{MigrationUID: "a", Validity: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	b, err := certs.Mint(certs.Options{MigrationUID: "b", Validity: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	s.add(t, "a.replication.livemigrate.io", a, "a")
	s.add(t, "b.replication.livemigrate.io", b, "b")

	tests := []struct {
		name    string
		client  *tls.Config
		wantErr func(error) bool
	}{
		{name: "certificate of another migration", client: withName(attacker(t, a.SourceCert, a.SourceKey), "b.replication.livemigrate.io"), wantErr: certs.IsIdentityError},
		{name: "target certificate of the same migration", client: withName(attacker(t, b.TargetCert, b.TargetKey), "b.replication.livemigrate.io"), wantErr: certs.IsIdentityError},
		{name: "unknown server name", client: withName(tlsCfg(t, a, certs.RoleSource, "a", nil), "c.replication.livemigrate.io"), wantErr: func(err error) bool { return errors.Is(err, ErrUnknownRoute) }},
		{name: "no server name", client: tlsCfg(t, a, certs.RoleSource, "a", nil), wantErr: func(err error) bool { return errors.Is(err, ErrNoServerName) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, dialErr := Dial(context.Background(), s.router.Addr().String(), tt.client)
			if dialErr == nil {
				got, err := read(c)
				c.Close()
				if err == nil || got != "" {
					t.Fatalf("connection was served (%q, %v), want it refused", got, err)
				}
			}
			select {
			case r := <-s.rejected:
				if !tt.wantErr(r.err) {
					t.Errorf("rejected with %v, want the other reason", r.err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the router reported no rejection")
			}
		})
	}

	// A removed route is refused like an unknown one.
	s.router.Remove("a.replication.livemigrate.io")
	if c, err := Dial(context.Background(), s.router.Addr().String(), withName(tlsCfg(t, a, certs.RoleSource, "a", nil), "a.replication.livemigrate.io")); err == nil {
		if got, err := read(c); err == nil || got != "" {
			t.Errorf("removed route still served: %q", got)
		}
		c.Close()
	}
	if r := <-s.rejected; !errors.Is(r.err, ErrUnknownRoute) {
		t.Errorf("removed route rejected with %v, want ErrUnknownRoute", r.err)
	}
}

func TestRouterAddRequiresClientAuth(t *testing.T) {
	rt, err := ListenRouter("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	if err := rt.Add("x", &tls.Config{}, func(*tls.Conn) {}); err == nil { //nolint:gosec // test
		t.Fatal("Add accepted a config without client authentication")
	}
}

// TestRouterBoundsPendingHandshakes: clients that connect and never
// handshake hold at most MaxPendingHandshakes slots; the next connection
// is refused at once, and a slot is free again once one of them leaves.
func TestRouterBoundsPendingHandshakes(t *testing.T) {
	s := startRouter(t)
	var idle []net.Conn
	defer func() {
		for _, c := range idle {
			c.Close()
		}
	}()
	for range MaxPendingHandshakes {
		c, err := net.Dial("tcp", s.router.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		idle = append(idle, c)
	}
	extra, err := net.Dial("tcp", s.router.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	select {
	case r := <-s.rejected:
		if !errors.Is(r.err, ErrTooManyHandshakes) {
			t.Errorf("rejected with %v, want ErrTooManyHandshakes", r.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a connection past the bound was not refused")
	}
}

// TestRouterCloseEndsHandshakes: Close does not wait for silent clients.
func TestRouterCloseEndsHandshakes(t *testing.T) {
	rt, err := ListenRouter("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = rt.Serve() }()
	c, err := net.Dial("tcp", rt.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for len(rt.pending) == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	start := time.Now()
	if err := rt.Close(); err != nil {
		t.Fatal(err)
	}
	<-done
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Close took %v with a silent client, want it to end the handshake at once", d)
	}
}
