package protocol

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/livemigrate/livemigrate/agent/replication/blockdelta"
	"github.com/livemigrate/livemigrate/agent/replication/manifest"
	"github.com/livemigrate/livemigrate/agent/replication/transport"
)

// RsyncServer serves the Rsync request: one rsync transfer into the
// receiver's target on conn (package rsync: Daemon).
type RsyncServer interface {
	// ServeRsync runs one transfer on conn, counting its bytes in counter,
	// and returns why it failed.
	ServeRsync(ctx context.Context, conn net.Conn, counter *transport.Counter) error
	// Close releases what the server holds (its generated configuration).
	Close() error
}

// Receiver serves the requests of the protocol into one target directory.
type Receiver struct {
	// DestDir is the absolute path of the target volume. Every write of the
	// sender is confined to it.
	DestDir string
	// Rsync serves the Rsync request into DestDir; the request is refused
	// when it is nil.
	Rsync RsyncServer
	// Counter, when set, counts the bytes the receiver exchanges.
	Counter *transport.Counter

	mu      sync.Mutex
	xfer    sync.Mutex
	lastErr error
	// running counts the transfers in progress; idle is closed (and
	// replaced) whenever it drops to zero.
	running int
	idle    chan struct{}

	once   sync.Once
	cfgErr error
}

func (r *Receiver) prepare() error {
	r.once.Do(func() {
		if !filepath.IsAbs(r.DestDir) {
			r.cfgErr = fmt.Errorf("destination %q is not an absolute path", r.DestDir)
			return
		}
		st, err := os.Stat(r.DestDir)
		if err != nil {
			r.cfgErr = fmt.Errorf("destination: %w", err)
			return
		}
		if !st.IsDir() {
			r.cfgErr = fmt.Errorf("destination %q is not a directory", r.DestDir)
			return
		}
		if os.Geteuid() != 0 {
			r.cfgErr = errors.New("the rsync receiver must run as root (it chroots into the target volume)")
			return
		}
		if strings.ContainsAny(r.DestDir, "\n\r") {
			r.cfgErr = fmt.Errorf("destination %q contains a line break", r.DestDir)
			return
		}
	})
	return r.cfgErr
}

// Close releases what the rsync server holds.
func (r *Receiver) Close() error {
	if r.Rsync == nil {
		return nil
	}
	return r.Rsync.Close()
}

// ServeConn serves one authenticated connection (transport.Listener only
// hands out verified ones): one request of the protocol, e.g. a single-use
// rsync daemon, or the result of the previous transfer (so that the sender
// can report why the receiving side failed, e.g. a full volume). conn is
// closed on return.
func (r *Receiver) ServeConn(ctx context.Context, conn net.Conn) error {
	defer conn.Close()
	if err := r.prepare(); err != nil {
		return err
	}
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	req, err := ReadRequest(conn)
	if err != nil {
		return err
	}
	_ = conn.SetReadDeadline(time.Time{})
	var serve func(context.Context, net.Conn) error
	switch req {
	case Rsync:
		if r.Rsync == nil {
			return errors.New("the receiver serves no rsync transfers")
		}
		serve = func(ctx context.Context, conn net.Conn) error {
			return r.Rsync.ServeRsync(ctx, conn, r.counter())
		}
	case Tar:
		serve = r.serveTar
	case BlockDelta:
		serve = r.serveBlocks
	case BlockIndex:
		// Hashes of target files, no content: never during a transfer.
		r.waitIdle(ctx, 10*time.Second)
		return blockdelta.ServeIndex(ctx, r.DestDir, bufio.NewReaderSize(conn, 64<<10), conn)
	case Manifest:
		// Identities only (package manifest), no content: what the
		// source sent anyway. Never during a transfer.
		r.waitIdle(ctx, 10*time.Second)
		m, err := manifest.Walk(r.DestDir)
		if err != nil {
			_, _ = io.WriteString(conn, ReplyError+strings.ReplaceAll(err.Error(), "\n", " ")+"\n")
			return err
		}
		if _, err := io.WriteString(conn, ReplyOK); err != nil {
			return err
		}
		return m.Encode(conn)
	case Space:
		// Room for the source's data, before the first pass; reads
		// nothing but the target's identities.
		return r.serveSpace(conn)
	case Status:
		// The sender asks right after its rsync exited, which can be before
		// the receiving rsync has: wait (bounded) for running transfers to
		// end so that their result is the one reported.
		r.waitIdle(ctx, 10*time.Second)
		r.mu.Lock()
		msg := "ok"
		if r.lastErr != nil {
			msg = r.lastErr.Error()
		}
		r.mu.Unlock()
		_, err := io.WriteString(conn, msg)
		return err
	default:
		return ErrUnknownRequest
	}
	r.mu.Lock()
	r.running++
	r.mu.Unlock()
	// One transfer at a time: a retried pass must not race the remains of
	// the failed one (which ends as soon as it notices the lost connection).
	r.xfer.Lock()
	err = serve(ctx, conn)
	r.xfer.Unlock()
	r.mu.Lock()
	r.lastErr = err
	r.running--
	if r.running == 0 && r.idle != nil {
		close(r.idle)
		r.idle = nil
	}
	r.mu.Unlock()
	return err
}

// waitIdle waits until no transfer runs, at most d.
func (r *Receiver) waitIdle(ctx context.Context, d time.Duration) {
	r.mu.Lock()
	if r.running == 0 {
		r.mu.Unlock()
		return
	}
	if r.idle == nil {
		r.idle = make(chan struct{})
	}
	idle := r.idle
	r.mu.Unlock()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-idle:
	case <-t.C:
	case <-ctx.Done():
	}
}

// counter is where the receiver counts the bytes of a connection: its
// Counter, or a throwaway one.
func (r *Receiver) counter() *transport.Counter {
	if r.Counter != nil {
		return r.Counter
	}
	return &transport.Counter{}
}

// drain reads what the sender still sends after a failure, for at most 5
// seconds, so that it reads the receiver's answer rather than a reset
// connection.
func drain(conn net.Conn) {
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, _ = io.Copy(io.Discard, conn)
}
