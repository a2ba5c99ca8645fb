package rsync

import (
	"bytes"
	"context"
	"io"
	mrand "math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/livemigrate/livemigrate/agent/replication/protocol"
	"github.com/livemigrate/livemigrate/agent/replication/treediff"
)

func TestHasSparseFiles(t *testing.T) {
	dir := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(dir, "a", "b"), 0o755))
	must(t, os.WriteFile(filepath.Join(dir, "small"), []byte("x"), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "empty"), nil, 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "a", "dense"), make([]byte, 256<<10), 0o644))
	must(t, os.Symlink("/nonexistent", filepath.Join(dir, "a", "link")))
	if HasSparseFiles(dir) {
		t.Fatal("a tree of dense files is reported sparse")
	}
	f, err := os.Create(filepath.Join(dir, "a", "b", "holes.img"))
	must(t, err)
	_, err = f.WriteAt([]byte("tail"), 8<<20)
	must(t, err)
	must(t, f.Close())
	if !HasSparseFiles(dir) {
		t.Fatal("a file with holes is not detected")
	}
	if !HasSparseFiles(filepath.Join(dir, "missing")) {
		t.Fatal("an unreadable tree must count as sparse (the safe answer)")
	}
}

// TestRelayFallback runs passes through the remote shell's relay, the path
// taken where pidfd_getfd(2) is not allowed, with sparse-file detection on.
func TestRelayFallback(t *testing.T) {
	requireRoot(t)
	src, dst, outside := setupTrees(t)
	genTree(t, src, outside, mrand.New(mrand.NewPCG(3, 4)))
	h := startReceiver(t, dst)
	opts := protocol.SendOptions{SourceDir: src, Dial: h.dial, DetectSparse: true}
	relay := testHooks{relayOnly: true}
	_, err := send(context.Background(), opts, relay)
	must(t, err)
	must(t, h.lastReceiverError(t))
	mustCompare(t, src, dst)
	// The tree holds a sparse file: the full pass detected it and used -S.
	alloc, err := treediff.Allocated(filepath.Join(dst, "sparse.img"))
	must(t, err)
	if alloc > 1<<20 {
		t.Errorf("sparse file allocates %d bytes on the target, want it sparse", alloc)
	}
	v, err := verify(context.Background(), opts, relay)
	must(t, err)
	must(t, h.lastReceiverError(t))
	if !v.Equal() {
		t.Fatalf("verification after a relayed pass found differences: %v", v.Differences)
	}
}

// TestPumpRecords checks that the record-aligned pump forwards every byte in
// order, and that a tail held back after a large read is sent when nothing
// follows it (a peer waiting for an answer must not wait forever).
func TestPumpRecords(t *testing.T) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	must(t, err)
	mk := func(fd int) net.Conn {
		f := os.NewFile(uintptr(fd), "sp")
		defer f.Close()
		c, err := net.FileConn(f)
		must(t, err)
		return c
	}
	w, r := mk(fds[0]), mk(fds[1])
	defer w.Close()
	defer r.Close()
	var got bytes.Buffer
	var n atomic.Int64
	done := make(chan error, 1)
	go func() {
		done <- pumpRecords(&syncWriter{w: &got, mu: &sync.Mutex{}}, r, &n)
	}()
	rng := mrand.New(mrand.NewPCG(5, 6))
	var want bytes.Buffer
	for i := 0; i < 200; i++ {
		chunk := make([]byte, 1+rng.IntN(40000))
		for j := range chunk {
			chunk[j] = byte(rng.Uint32())
		}
		want.Write(chunk)
		_, err := w.Write(chunk)
		must(t, err)
	}
	// A lone large write with a partial record at the end, then silence.
	tail := make([]byte, 16*1024+29)
	tail[len(tail)-1] = 42
	want.Write(tail)
	_, err = w.Write(tail)
	must(t, err)
	deadline := time.Now().Add(5 * time.Second)
	for n.Load() != int64(want.Len()) {
		if time.Now().After(deadline) {
			t.Fatalf("pump forwarded %d of %d bytes and holds the rest", n.Load(), want.Len())
		}
		time.Sleep(time.Millisecond)
	}
	must(t, w.(*net.UnixConn).CloseWrite())
	must(t, <-done)
	if !bytes.Equal(got.Bytes(), want.Bytes()) {
		t.Fatal("pumped bytes differ from the input")
	}
}

type syncWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// TestSendFromADeletedWorkingDirectory: rsync calls getcwd() when it
// starts; an agent whose working directory was removed (a re-created
// directory, a deleted mount) still replicates, because the sender and the
// receiver run rsync from /.
func TestSendFromADeletedWorkingDirectory(t *testing.T) {
	requireRoot(t)
	src, dst, _ := setupTrees(t)
	must(t, os.WriteFile(filepath.Join(src, "data"), []byte("kept"), 0o644))
	h := startReceiver(t, dst)

	wd, err := os.Getwd()
	must(t, err)
	gone := t.TempDir()
	must(t, os.Chdir(gone))
	defer func() { must(t, os.Chdir(wd)) }()
	must(t, os.Remove(gone))

	if _, err := Send(context.Background(), protocol.SendOptions{SourceDir: src, Dial: h.dial}); err != nil {
		t.Fatalf("a pass from a deleted working directory: %v", err)
	}
	must(t, h.lastReceiverError(t))
	mustCompare(t, src, dst)
}
