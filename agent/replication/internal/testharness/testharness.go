// Package testharness starts a real receiver (package protocol, with package
// rsync's daemon) behind a real mutual-TLS listener on loopback for tests and
// benchmarks of the replication packages.
// It is never used by production code.
package testharness

import (
	"context"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/livemigrate/livemigrate/agent/replication/certs"
	"github.com/livemigrate/livemigrate/agent/replication/protocol"
	"github.com/livemigrate/livemigrate/agent/replication/rsync"
	"github.com/livemigrate/livemigrate/agent/replication/transport"
)

// Receiver is a running receiver.
type Receiver struct {
	Addr    string
	Counter *transport.Counter
	// Dial connects as the source of the migration.
	Dial func(ctx context.Context) (net.Conn, error)
	// Bundle holds the credentials of the migration.
	Bundle *certs.Bundle
	Errs   chan error
}

// RequireRoot skips (visibly) when not root and fails when rsync is missing.
func RequireRoot(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("SKIP (visible): the rsync receiver chroots into the target volume and needs root; run the tests as root (CI does)")
	}
	if _, err := os.Stat("/usr/bin/rsync"); err != nil {
		tb.Fatal("rsync is not installed: apt-get install -y rsync")
	}
}

// StartReceiver serves dest for migration uid on 127.0.0.1.
func StartReceiver(tb testing.TB, uid, dest string) *Receiver {
	tb.Helper()
	b, err := certs.Mint(certs.Options{MigrationUID: uid, Validity: time.Hour})
	if err != nil {
		tb.Fatal(err)
	}
	scfg, err := certs.TLSConfig(b.Credentials(certs.RoleTarget), certs.RoleTarget, uid, nil)
	if err != nil {
		tb.Fatal(err)
	}
	ccfg, err := certs.TLSConfig(b.Credentials(certs.RoleSource), certs.RoleSource, uid, nil)
	if err != nil {
		tb.Fatal(err)
	}
	l, err := transport.Listen("127.0.0.1:0", scfg)
	if err != nil {
		tb.Fatal(err)
	}
	counter := &transport.Counter{}
	recv := &protocol.Receiver{DestDir: dest, Rsync: &rsync.Daemon{DestDir: dest}, Counter: counter}
	r := &Receiver{Addr: l.Addr().String(), Counter: counter, Bundle: b, Errs: make(chan error, 64)}
	// The listener and the receivers outlive the test by a moment: log
	// only until its cleanup (testing panics on a Log after the test).
	var logMu sync.Mutex
	ended := false
	logf := func(format string, args ...any) {
		logMu.Lock()
		defer logMu.Unlock()
		if !ended {
			tb.Logf(format, args...)
		}
	}
	l.OnReject = func(a net.Addr, err error) { logf("rejected %v: %v", a, err) }
	ctx, cancel := context.WithCancel(context.Background())
	tb.Cleanup(func() {
		logMu.Lock()
		ended = true
		logMu.Unlock()
		cancel()
		_ = l.Close()
		_ = recv.Close()
	})
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				err := recv.ServeConn(ctx, c)
				if err != nil {
					logf("receiver: %v", err)
				}
				select {
				case r.Errs <- err:
				default:
				}
			}()
		}
	}()
	r.Dial = func(ctx context.Context) (net.Conn, error) { return transport.Dial(ctx, r.Addr, ccfg) }
	return r
}

// LastError returns the receiver's result for the next connection it
// finished serving; it fails tb when none finishes within 10 s.
func (r *Receiver) LastError(tb testing.TB) error {
	tb.Helper()
	select {
	case err := <-r.Errs:
		return err
	case <-time.After(10 * time.Second):
		tb.Fatal("receiver did not finish")
		return nil
	}
}
