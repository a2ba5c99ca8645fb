package engine

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/livemigrate/livemigrate/agent/replication/internal/testharness"
	"github.com/livemigrate/livemigrate/agent/replication/treediff"
)

// writer appends records to a log and rewrites a page of a data file in a
// loop until stopped — an application that keeps its volume busy.
type writer struct {
	dir  string
	stop chan struct{}
	done sync.WaitGroup
	n    atomic.Int64
}

func startWriter(t *testing.T, dir string) *writer {
	t.Helper()
	w := &writer{dir: dir, stop: make(chan struct{})}
	data := make([]byte, 8<<20)
	_, _ = rand.Read(data)
	if err := os.WriteFile(filepath.Join(dir, "data.db"), data, 0o640); err != nil {
		t.Fatal(err)
	}
	w.done.Add(1)
	go func() {
		defer w.done.Done()
		log, err := os.OpenFile(filepath.Join(dir, "app.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			panic(err)
		}
		defer log.Close()
		db, err := os.OpenFile(filepath.Join(dir, "data.db"), os.O_WRONLY, 0)
		if err != nil {
			panic(err)
		}
		defer db.Close()
		page := make([]byte, 4096)
		for i := int64(1); ; i++ {
			select {
			case <-w.stop:
				return
			default:
			}
			fmt.Fprintf(log, "record %d\n", i)
			binary.LittleEndian.PutUint64(page, uint64(i))
			_, _ = db.WriteAt(page, (i%2048)*4096)
			if i%50 == 0 {
				_ = os.WriteFile(filepath.Join(dir, fmt.Sprintf("seg-%d", i/50%8)), page, 0o600)
			}
			w.n.Store(i)
			time.Sleep(200 * time.Microsecond)
		}
	}()
	return w
}

// freeze stops the writer, standing in for the cgroup freezer.
func (w *writer) freeze() { close(w.stop); w.done.Wait() }

func TestPreCopyThenFinalWhileWriting(t *testing.T) {
	testharness.RequireRoot(t)
	base := t.TempDir()
	src, dst := filepath.Join(base, "src"), filepath.Join(base, "dst")
	for _, d := range []string{src, dst} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	w := startWriter(t, src)
	recv := testharness.StartReceiver(t, "mig-engine", dst)
	var passes []PassResult
	s, err := NewSession(Config{
		SourceDir: src, Dial: recv.Dial,
		ConvergenceThreshold: 64 << 10, MaxRounds: 4,
		OnPass: func(r PassResult) { passes = append(passes, r) },
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	pre, err := s.PreCopy(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if pre.Round < 2 || pre.Round > 4 {
		t.Errorf("pre-copy ran %d rounds, want 2..4", pre.Round)
	}
	if passes[0].Pass != PassFull || passes[1].Pass != PassDelta {
		t.Errorf("passes = %v, %v; want full then delta", passes[0].Pass, passes[1].Pass)
	}
	if passes[1].Stats.LiteralData >= passes[0].Stats.LiteralData {
		t.Errorf("delta round sent %d bytes of data, full round %d: no delta transfer", passes[1].Stats.LiteralData, passes[0].Stats.LiteralData)
	}
	if pre.EstimatedFinal <= 0 {
		t.Errorf("estimated final duration = %v, want > 0", pre.EstimatedFinal)
	}

	w.freeze()
	written := w.n.Load()
	fin, err := s.Final(ctx, pre.Round+1)
	if err != nil {
		t.Fatal(err)
	}
	if !fin.Verify.Equal() {
		t.Fatalf("verification differences: %v", fin.Verify.Differences)
	}
	diffs, err := treediff.Compare(src, dst, treediff.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(diffs) != 0 {
		t.Fatalf("target differs from the frozen source: %v", diffs)
	}
	logData, err := os.ReadFile(filepath.Join(dst, "app.log"))
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("record %d\n", written); len(logData) < len(want) || string(logData[len(logData)-len(want):]) != want {
		t.Errorf("target log does not end with the last record written before the freeze (%d)", written)
	}
}

// TestFinalRepairsWhatTheQuickCheckMisses corrupts a target file keeping its
// size and modification time: the final delta pass cannot see it, the
// verification pass must, and the repair must fix it.
func TestFinalRepairsWhatTheQuickCheckMisses(t *testing.T) {
	testharness.RequireRoot(t)
	base := t.TempDir()
	src, dst := filepath.Join(base, "src"), filepath.Join(base, "dst")
	_ = os.MkdirAll(dst, 0o755)
	_ = os.MkdirAll(src, 0o755)
	data := make([]byte, 1<<20)
	_, _ = rand.Read(data)
	if err := os.WriteFile(filepath.Join(src, "f"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	recv := testharness.StartReceiver(t, "mig-repair", dst)
	var kinds []Pass
	s, err := NewSession(Config{SourceDir: src, Dial: recv.Dial, MaxRounds: 1, OnPass: func(r PassResult) { kinds = append(kinds, r.Pass) }})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.PreCopy(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(dst, "f")
	st, _ := os.Stat(target)
	f, _ := os.OpenFile(target, os.O_WRONLY, 0)
	_, _ = f.WriteAt([]byte("CORRUPT"), 1000)
	f.Close()
	_ = os.Chtimes(target, st.ModTime(), st.ModTime())

	fin, err := s.Final(context.Background(), 2)
	if err != nil {
		t.Fatal(err)
	}
	if fin.Repairs != 1 {
		t.Errorf("repairs = %d, want 1", fin.Repairs)
	}
	want := []Pass{PassFull, PassFinal, PassVerify, PassRepair, PassVerify}
	if fmt.Sprint(kinds) != fmt.Sprint(want) {
		t.Errorf("passes = %v, want %v", kinds, want)
	}
	eq, err := treediff.FilesEqual(filepath.Join(src, "f"), target)
	if err != nil || !eq {
		t.Errorf("target not repaired (equal=%v, err=%v)", eq, err)
	}
}

func TestNewSessionValidates(t *testing.T) {
	for _, cfg := range []Config{
		{},
		{SourceDir: "/x"},
		{SourceDir: "/x", Dial: testharnessDialNever, MaxRounds: 0},
		{SourceDir: "/x", Dial: testharnessDialNever, MaxRounds: 1, ConvergenceThreshold: -1},
	} {
		if _, err := NewSession(cfg); err == nil {
			t.Errorf("NewSession(%+v) succeeded, want error", cfg)
		}
	}
}

var testharnessDialNever = func(context.Context) (net.Conn, error) { return nil, fmt.Errorf("never") }

// TestPreCopyFromSnapshotBase checks that the full pass reads the base (a
// snapshot's content) and the following passes the live volume.
func TestPreCopyFromSnapshotBase(t *testing.T) {
	testharness.RequireRoot(t)
	base := t.TempDir()
	live, snap, dst := filepath.Join(base, "live"), filepath.Join(base, "snap"), filepath.Join(base, "dst")
	for _, d := range []string{live, snap, dst} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	data := make([]byte, 2<<20)
	_, _ = rand.Read(data)
	_ = os.WriteFile(filepath.Join(snap, "db"), data, 0o600)
	// The snapshot was taken a while before the live volume changed.
	old := time.Now().Add(-time.Minute)
	_ = os.Chtimes(filepath.Join(snap, "db"), old, old)
	data[100] ^= 1
	_ = os.WriteFile(filepath.Join(live, "db"), data, 0o600)
	_ = os.WriteFile(filepath.Join(live, "new"), []byte("written after the snapshot"), 0o600)

	recv := testharness.StartReceiver(t, "mig-base", dst)
	var rounds []PassResult
	s, err := NewSession(Config{SourceDir: live, BaseDir: snap, Dial: recv.Dial, MaxRounds: 1, OnPass: func(r PassResult) { rounds = append(rounds, r) }})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.PreCopy(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	if d, _ := treediff.Compare(snap, dst, treediff.Options{}); len(d) != 0 {
		t.Fatalf("after the full pass the target is not the snapshot: %v", d)
	}
	s.cfg.MaxRounds = 2
	if _, err := s.PreCopy(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	if d, _ := treediff.Compare(live, dst, treediff.Options{}); len(d) != 0 {
		t.Fatalf("after a delta pass the target is not the live volume: %v", d)
	}
	if rounds[1].Stats.MatchedData == 0 {
		t.Error("the delta pass after the base matched nothing: the base was not used as the basis")
	}
}

// failingConn breaks the connection after `after` bytes were written: a
// network failure in the middle of a pass.
type failingConn struct {
	net.Conn
	left int
}

func (c *failingConn) Write(p []byte) (int, error) {
	if len(p) >= c.left {
		_ = c.Close()
		return 0, fmt.Errorf("injected: connection reset")
	}
	c.left -= len(p)
	return c.Conn.Write(p)
}

// TestPreCopyRetriesTransientFailure breaks the first pass in the middle of
// the stream: the pass is retried after the backoff (here rsync, as the
// target is no longer empty), the retry is reported, and the replication
// goes on and ends equal.
func TestPreCopyRetriesTransientFailure(t *testing.T) {
	testharness.RequireRoot(t)
	base := t.TempDir()
	src, dst := filepath.Join(base, "src"), filepath.Join(base, "dst")
	for _, d := range []string{src, dst} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 4 {
		data := make([]byte, 1<<20)
		_, _ = rand.Read(data)
		if err := os.WriteFile(filepath.Join(src, fmt.Sprintf("f%d", i)), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	recv := testharness.StartReceiver(t, "mig-retry", dst)
	var dials atomic.Int32
	dial := func(ctx context.Context) (net.Conn, error) {
		c, err := recv.Dial(ctx)
		// The first connection asks for room (checkSpace), the second
		// carries the first pass.
		if err == nil && dials.Add(1) == 2 {
			return &failingConn{Conn: c, left: 2 << 20}, nil
		}
		return c, err
	}
	var passes []PassResult
	var retries []Retry
	var slept []time.Duration
	s, err := NewSession(Config{SourceDir: src, Dial: dial, MaxRounds: 2, ConvergenceThreshold: 1 << 20,
		RetryBackoff: 3 * time.Second,
		Sleep:        func(_ context.Context, d time.Duration) error { slept = append(slept, d); return nil },
		OnRetry:      func(r Retry) { retries = append(retries, r) },
		OnPass:       func(r PassResult) { passes = append(passes, r) }})
	if err != nil {
		t.Fatal(err)
	}
	pre, err := s.PreCopy(context.Background(), 0)
	if err != nil {
		t.Fatalf("pre-copy failed on a transient error: %v", err)
	}
	if pre.Round != 2 {
		t.Errorf("pre-copy reached round %d, want 2", pre.Round)
	}
	if len(retries) != 1 || retries[0].Round != 1 || retries[0].Attempt != 1 || retries[0].Wait != 3*time.Second || retries[0].Err == nil {
		t.Fatalf("retries = %+v, want one of round 1 after attempt 1 with a 3s wait", retries)
	}
	if fmt.Sprint(slept) != "[3s]" {
		t.Errorf("slept %v, want [3s]", slept)
	}
	if len(passes) < 2 || passes[0].Err == nil || !passes[0].TarStream || passes[1].Err != nil || passes[1].Attempt != 2 || passes[1].TarStream {
		t.Errorf("passes: want a failed tar stream, then attempt 2 by rsync (target no longer empty); got %+v", passes)
	}
	if d, _ := treediff.Compare(src, dst, treediff.Options{}); len(d) != 0 {
		t.Fatalf("target differs after the retried pass: %v", d)
	}
}

// TestPreCopyRetriesAreBounded: a pass that keeps failing fails the
// pre-copy after PassAttempts attempts, with the backoff doubling.
func TestPreCopyRetriesAreBounded(t *testing.T) {
	var slept []time.Duration
	attempts := 0
	s, err := NewSession(Config{SourceDir: t.TempDir(), MaxRounds: 1, PassAttempts: 3, RetryBackoff: time.Second,
		Dial: func(context.Context) (net.Conn, error) {
			attempts++
			return nil, fmt.Errorf("injected: no route to host")
		},
		Sleep:  func(_ context.Context, d time.Duration) error { slept = append(slept, d); return nil },
		OnPass: func(PassResult) {}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.PreCopy(context.Background(), 0)
	if err == nil {
		t.Fatal("pre-copy succeeded without a receiver")
	}
	if attempts != 3 || fmt.Sprint(slept) != "[1s 2s]" {
		t.Errorf("attempts %d, waits %v; want 3 attempts and waits [1s 2s]", attempts, slept)
	}
}
