package transport

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"testing"
	"time"

	"github.com/livemigrate/livemigrate/agent/replication/certs"
)

func tlsCfg(t *testing.T, b *certs.Bundle, role certs.Role, uid string, now func() time.Time) *tls.Config {
	t.Helper()
	cfg, err := certs.TLSConfig(b.Credentials(role), role, uid, now)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// attacker is a client that presents the given certificate and does not
// check the server, so that the verdict is the server's.
func attacker(t *testing.T, certPEM, keyPEM []byte) *tls.Config {
	t.Helper()
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{pair}, InsecureSkipVerify: true, MinVersion: tls.VersionTLS13} //nolint:gosec // test
}

// TestHandshake runs real mutual-TLS handshakes over loopback and checks who
// gets through.
func TestHandshake(t *testing.T) {
	now := time.Now()
	good, err := certs.Mint(certs.Options{MigrationUID: "m1", Validity: time.Hour, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	replay, err := certs.Mint(certs.Options{MigrationUID: "m0", Validity: time.Hour, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	expired, err := certs.Mint(certs.Options{MigrationUID: "m1", Validity: time.Hour, Now: now.Add(-3 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	// A bundle whose CA matches the server's but with the roles swapped:
	// the client presents the target certificate.
	swapped := *good
	swapped.SourceCert, swapped.SourceKey = good.TargetCert, good.TargetKey

	tests := []struct {
		name       string
		client     *tls.Config
		wantAccept bool
	}{
		{name: "matching migration", client: tlsCfg(t, good, certs.RoleSource, "m1", nil), wantAccept: true},
		{name: "replayed credential of another migration", client: attacker(t, replay.SourceCert, replay.SourceKey)},
		{name: "expired credential", client: attacker(t, expired.SourceCert, expired.SourceKey)},
		{name: "wrong role", client: attacker(t, swapped.SourceCert, swapped.SourceKey)},
		{name: "no client certificate", client: &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13}}, //nolint:gosec // test
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := Listen("127.0.0.1:0", tlsCfg(t, good, certs.RoleTarget, "m1", nil))
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			rejected := make(chan error, 1)
			l.OnReject = func(_ net.Addr, err error) { rejected <- err }
			accepted := make(chan *tls.Conn, 1)
			go func() {
				c, err := l.Accept()
				if err == nil {
					accepted <- c
				}
			}()
			c, dialErr := Dial(context.Background(), l.Addr().String(), tt.client)
			if dialErr == nil {
				// TLS 1.3 client handshakes finish before the server has
				// checked the client certificate; a read shows the verdict.
				_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
				_, _ = c.Write([]byte("x"))
			}
			select {
			case sc := <-accepted:
				if !tt.wantAccept {
					t.Fatal("server accepted a connection it must reject")
				}
				buf := make([]byte, 1)
				if _, err := io.ReadFull(sc, buf); err != nil {
					t.Fatalf("reading from accepted conn: %v", err)
				}
				sc.Close()
			case err := <-rejected:
				if tt.wantAccept {
					t.Fatalf("server rejected a valid client: %v", err)
				}
				if tt.client.Certificates != nil && !certs.IsIdentityError(err) {
					t.Errorf("rejection %v does not come from the identity check", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("no verdict from server")
			}
			if c != nil {
				c.Close()
			}
		})
	}
}

// TestClientRejectsWrongServer checks the source side: a server presenting a
// certificate for another migration is refused by the dialer.
func TestClientRejectsWrongServer(t *testing.T) {
	good, err := certs.Mint(certs.Options{MigrationUID: "m1"})
	if err != nil {
		t.Fatal(err)
	}
	other, err := certs.Mint(certs.Options{MigrationUID: "m2"})
	if err != nil {
		t.Fatal(err)
	}
	l, err := Listen("127.0.0.1:0", tlsCfg(t, other, certs.RoleTarget, "m2", nil))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() { _, _ = l.Accept() }()
	_, err = Dial(context.Background(), l.Addr().String(), tlsCfg(t, good, certs.RoleSource, "m1", nil))
	if err == nil {
		t.Fatal("dial to a server of another migration succeeded")
	}
	if !certs.IsIdentityError(err) {
		t.Errorf("error %v is not an identity error", err)
	}
}

func TestListenRequiresClientAuth(t *testing.T) {
	if _, err := Listen("127.0.0.1:0", &tls.Config{}); err == nil { //nolint:gosec // test
		t.Fatal("Listen accepted a config without client authentication")
	}
}

func TestPipeRateLimit(t *testing.T) {
	const size = 256 * 1024
	lim := NewLimiter(1024 * 1024) // 1 MiB/s, burst 102 KiB → about 150 ms
	var n Counter
	start := time.Now()
	r, w := io.Pipe()
	go func() {
		_, _ = w.Write(make([]byte, size))
		w.Close()
	}()
	if err := Pipe(context.Background(), io.Discard, r, lim, &n.Sent); err != nil {
		t.Fatal(err)
	}
	if got := n.Sent.Load(); got != size {
		t.Errorf("counted %d bytes, want %d", got, size)
	}
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Errorf("256 KiB at 1 MiB/s took %v, limiter not applied", d)
	}
}
