package rsync

import (
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/livemigrate/livemigrate/agent/replication/protocol"
)

// holdConn is the sender's end of the replication connection with the
// receiver's answers held back once the sender has written more than
// holdAfter bytes (its file list), until release is closed.
type holdConn struct {
	net.Conn
	holdAfter int64
	written   atomic.Int64
	// held is closed when the first answer is held back; release lets it
	// and every later one through.
	held     chan struct{}
	heldOnce sync.Once
	release  chan struct{}
}

func (c *holdConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.written.Add(int64(n))
	return n, err
}

func (c *holdConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if c.written.Load() > c.holdAfter {
		c.heldOnce.Do(func() { close(c.held) })
		<-c.release
	}
	return n, err
}

func (c *holdConn) CloseWrite() error {
	if w, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return w.CloseWrite()
	}
	return c.Close()
}

// TestRsyncSenderDirectorySwappedDuringPass replays, deterministically, a
// workload swapping a directory of its volume for a symlink to a host
// directory while a real rsync sender runs a pass on the live volume (a
// delta, keep-warm or repair pass): the sender has listed swap/kubelet.key
// as a regular file of the volume, the receiver's requests are held back,
// the directory becomes a symlink, then the pass goes on. The sender must
// not send the host file: rsync (3.4 and later, and Debian's 3.2.7 with the
// fixes of January 2025) opens a listed file without following a symlink in
// any component of its path and fails the file (ELOOP, exit 23) instead.
// The test fails, as inconclusive, if the sender did not try the file after
// the swap.
func TestRsyncSenderDirectorySwappedDuringPass(t *testing.T) {
	requireRoot(t)
	src, dst, outside := setupTrees(t)
	secret := "host secret " + fmt.Sprint(time.Now().UnixNano())
	must(t, os.WriteFile(filepath.Join(outside, "kubelet.key"), []byte(secret), 0o600))
	// A file list large enough to tell it from the handshake (names
	// without a common prefix: rsync sends only what differs from the
	// previous name).
	for i := range 400 {
		b := make([]byte, 50)
		_, _ = rand.Read(b)
		writeRandom(t, filepath.Join(src, "a", fmt.Sprintf("%x-%03d", b, i)), 10)
	}
	writeRandom(t, filepath.Join(src, "swap", "kubelet.key"), 4096)
	h := startReceiver(t, dst)
	var once sync.Once
	hc := &holdConn{holdAfter: 16 << 10, held: make(chan struct{}), release: make(chan struct{})}
	dial := func(ctx context.Context) (net.Conn, error) {
		c, err := h.dial(ctx)
		if err != nil {
			return nil, err
		}
		first := false
		once.Do(func() { first = true })
		if !first {
			return c, nil
		}
		hc.Conn = c
		return hc, nil
	}
	go func() {
		// The receiving side answers only once it has the whole file list
		// (--no-inc-recursive): its first answer after the list is held,
		// and the sender opens no file before it gets it.
		<-hc.held
		if err := os.Rename(filepath.Join(src, "swap"), filepath.Join(src, "swapped-away")); err != nil {
			t.Error(err)
		}
		if err := os.Symlink(outside, filepath.Join(src, "swap")); err != nil {
			t.Error(err)
		}
		t.Logf("directory swapped after the sender wrote %d bytes", hc.written.Load())
		close(hc.release)
	}()
	_, err := send(context.Background(), protocol.SendOptions{SourceDir: src, Dial: dial, AllowVanished: true}, testHooks{extraArgs: []string{"--no-inc-recursive"}})
	t.Logf("pass: %v", err)
	got, rerr := os.ReadFile(filepath.Join(dst, "swap", "kubelet.key"))
	t.Logf("target's swap/kubelet.key: %d bytes, %v", len(got), rerr)
	if string(got) == secret {
		t.Fatal("the rsync sender followed the swapped directory: the host file's content is in the target")
	}
	if err == nil || !strings.Contains(err.Error(), "swap/kubelet.key") {
		t.Fatalf("inconclusive: the sender did not open swap/kubelet.key after the swap (pass: %v)", err)
	}
	if rerr == nil {
		t.Errorf("the target holds swap/kubelet.key (%d bytes) although the sender could not open it", len(got))
	}
}
