package rsync

import (
	"context"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/livemigrate/livemigrate/agent/replication/certs"
	"github.com/livemigrate/livemigrate/agent/replication/internal/testtree"
	"github.com/livemigrate/livemigrate/agent/replication/protocol"
	"github.com/livemigrate/livemigrate/agent/replication/transport"
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("SKIP (visible): the rsync receiver chroots into the target volume and needs root; run the tests as root (CI does)")
	}
	if _, err := os.Stat("/usr/bin/rsync"); err != nil {
		t.Fatal("rsync is not installed: apt-get install -y rsync")
	}
}

type receiverHarness struct {
	recv *protocol.Receiver
	addr string
	errs chan error
	dial func(ctx context.Context) (net.Conn, error)
}

// startReceiver serves dest through a real rsync receiver behind a real
// mutual-TLS listener on loopback and returns a dialer for the source side.
func startReceiver(t *testing.T, dest string) *receiverHarness {
	t.Helper()
	b, err := certs.Mint(certs.Options{MigrationUID: "mig-test", Validity: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	scfg, err := certs.TLSConfig(b.Credentials(certs.RoleTarget), certs.RoleTarget, "mig-test", nil)
	if err != nil {
		t.Fatal(err)
	}
	ccfg, err := certs.TLSConfig(b.Credentials(certs.RoleSource), certs.RoleSource, "mig-test", nil)
	if err != nil {
		t.Fatal(err)
	}
	l, err := transport.Listen("127.0.0.1:0", scfg)
	if err != nil {
		t.Fatal(err)
	}
	h := &receiverHarness{recv: &protocol.Receiver{DestDir: dest, Rsync: &Daemon{DestDir: dest}}, addr: l.Addr().String(), errs: make(chan error, 16)}
	// The listener and the receivers outlive the test by a moment: log
	// only until its cleanup (testing panics on a Log after the test).
	var logMu sync.Mutex
	ended := false
	logf := func(format string, args ...any) {
		logMu.Lock()
		defer logMu.Unlock()
		if !ended {
			t.Logf(format, args...)
		}
	}
	l.OnReject = func(a net.Addr, err error) { logf("rejected %v: %v", a, err) }
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() {
		logMu.Lock()
		ended = true
		logMu.Unlock()
		cancel()
		l.Close()
		h.recv.Close()
	})
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				err := h.recv.ServeConn(ctx, c)
				if err != nil {
					logf("receiver: %v", err)
				}
				h.errs <- err
			}()
		}
	}()
	h.dial = func(ctx context.Context) (net.Conn, error) { return transport.Dial(ctx, h.addr, ccfg) }
	return h
}

// lastReceiverError returns the receiver's result for the last connection.
func (h *receiverHarness) lastReceiverError(t *testing.T) error {
	t.Helper()
	select {
	case err := <-h.errs:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("receiver did not finish")
		return nil
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// The volume trees of these tests (internal/testtree).
var (
	genTree     = testtree.Gen
	setupTrees  = testtree.Setup
	mustCompare = testtree.MustEqual
	writeRandom = testtree.WriteRandom
)
