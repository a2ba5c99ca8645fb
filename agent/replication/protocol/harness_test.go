package protocol_test

import (
	"context"
	"crypto/rand"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/livemigrate/livemigrate/agent/replication/certs"
	"github.com/livemigrate/livemigrate/agent/replication/protocol"
	"github.com/livemigrate/livemigrate/agent/replication/rsync"
	"github.com/livemigrate/livemigrate/agent/replication/transport"
	"github.com/livemigrate/livemigrate/agent/replication/treediff"
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

// startReceiver serves dest through a real receiver (with package rsync's
// daemon for the rsync request) behind a real mutual-TLS listener on loopback and returns a dialer for the source side.
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
	h := &receiverHarness{recv: &protocol.Receiver{DestDir: dest, Rsync: &rsync.Daemon{DestDir: dest}}, addr: l.Addr().String(), errs: make(chan error, 16)}
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

func mustCompare(t *testing.T, src, dst string) {
	t.Helper()
	diffs, err := treediff.Compare(src, dst, treediff.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(diffs) != 0 {
		t.Fatalf("target differs from source:\n%v", diffs)
	}
}

func writeRandom(t *testing.T, path string, size int) {
	t.Helper()
	buf := make([]byte, size)
	if _, err := rand.Read(buf); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf, 0o644); err != nil {
		t.Fatal(err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// genTree fills dir with a random tree: nested regular files of many sizes,
// a sparse file, hard links, symlinks (relative, absolute, dangling, and one
// pointing outside the tree), odd modes and owners.
func genTree(t *testing.T, dir, outside string, rng *mrand.Rand) {
	t.Helper()
	for i := range 40 {
		p := filepath.Join(dir, fmt.Sprintf("d%d", i%5), fmt.Sprintf("sub%d", i%3), fmt.Sprintf("f%02d.bin", i))
		writeRandom(t, p, rng.IntN(200*1024))
		must(t, os.Chmod(p, os.FileMode(0o600+rng.IntN(0o177))))
		must(t, os.Lchown(p, 1000+i, 2000+i))
	}
	writeRandom(t, filepath.Join(dir, "big.db"), 4<<20)
	// Sparse: 64 MiB apparent, two small extents.
	f, err := os.Create(filepath.Join(dir, "sparse.img"))
	must(t, err)
	_, err = f.WriteAt([]byte("head"), 0)
	must(t, err)
	_, err = f.WriteAt([]byte("tail"), 64<<20-4)
	must(t, err)
	must(t, f.Close())
	must(t, os.Link(filepath.Join(dir, "big.db"), filepath.Join(dir, "d1", "big-hardlink.db")))
	must(t, os.Symlink("../big.db", filepath.Join(dir, "d0", "rel-link")))
	must(t, os.Symlink("/nonexistent/target", filepath.Join(dir, "dangling")))
	must(t, os.Symlink(outside, filepath.Join(dir, "outside-link")))
	must(t, os.MkdirAll(filepath.Join(dir, "empty", "dir"), 0o700))
	must(t, os.Chmod(filepath.Join(dir, "d2"), 0o2775))
	past := time.Date(2020, 5, 6, 7, 8, 9, 123456789, time.UTC)
	must(t, os.Chtimes(filepath.Join(dir, "big.db"), past, past))
}

func setupTrees(t *testing.T) (src, dst, outside string) {
	t.Helper()
	base := t.TempDir()
	src, dst, outside = filepath.Join(base, "src"), filepath.Join(base, "dst"), filepath.Join(base, "outside")
	for _, d := range []string{src, dst, outside} {
		must(t, os.MkdirAll(d, 0o755))
	}
	must(t, os.WriteFile(filepath.Join(outside, "secret"), []byte("outside the volume"), 0o600))
	return src, dst, outside
}
