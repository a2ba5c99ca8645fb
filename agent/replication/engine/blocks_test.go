package engine

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/livemigrate/livemigrate/agent/replication/internal/testharness"
	"github.com/livemigrate/livemigrate/agent/replication/treediff"
)

// tapConn lets a test see and change what the sender writes on a block
// delta connection.
type tapConn struct {
	net.Conn
	delta   bool
	onWrite func(p []byte) []byte
	onIndex func()
}

func (c *tapConn) Write(p []byte) (int, error) {
	if strings.HasPrefix(string(p), "LIVEMIGRATE-REPLICATION/1 blockdelta") {
		c.delta = true
	}
	if strings.HasPrefix(string(p), "LIVEMIGRATE-REPLICATION/1 blockindex") && c.onIndex != nil {
		c.onIndex()
	}
	if !c.delta || c.onWrite == nil {
		return c.Conn.Write(p)
	}
	q := c.onWrite(p)
	n, err := c.Conn.Write(q)
	if err == nil {
		n = len(p)
	}
	return n, err
}

type blockEnv struct {
	s        *Session
	src, dst string
	passes   []PassResult
	// tap, when set, sees the sender's writes on block delta connections.
	tap func(p []byte) []byte
	// indexRequests counts the block index requests.
	indexRequests int
	mu            sync.Mutex
}

const blk = 4096

// blockSetup replicates a tree of 8 files of 32 blocks (in two
// directories) plus whatever tree adds, runs the pre-freeze verification
// (which indexes the target) and returns the environment.
func blockSetup(t *testing.T, tree func(src string)) *blockEnv {
	t.Helper()
	testharness.RequireRoot(t)
	base := t.TempDir()
	e := &blockEnv{src: filepath.Join(base, "src"), dst: filepath.Join(base, "dst")}
	for _, d := range []string{e.dst, filepath.Join(e.src, "a"), filepath.Join(e.src, "b")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 8 {
		data := make([]byte, 32*blk)
		_, _ = rand.Read(data)
		if err := os.WriteFile(filepath.Join(e.src, string(rune('a'+i%2)), fmt.Sprintf("f%d", i)), data, 0o640); err != nil {
			t.Fatal(err)
		}
	}
	if tree != nil {
		tree(e.src)
	}
	recv := testharness.StartReceiver(t, "mig-blocks", e.dst)
	dial := func(ctx context.Context) (net.Conn, error) {
		c, err := recv.Dial(ctx)
		if err != nil {
			return nil, err
		}
		return &tapConn{Conn: c, onWrite: e.tap, onIndex: func() { e.mu.Lock(); e.indexRequests++; e.mu.Unlock() }}, nil
	}
	s, err := NewSession(Config{SourceDir: e.src, Dial: dial, MaxRounds: 1, Verified: NewVerifyState(),
		OnPass: func(p PassResult) { e.mu.Lock(); e.passes = append(e.passes, p); e.mu.Unlock() }})
	if err != nil {
		t.Fatal(err)
	}
	e.s = s
	ctx := context.Background()
	if _, err := s.PreCopy(ctx, 0); err != nil {
		t.Fatal(err)
	}
	c, err := s.PreVerify(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if c.Indexed == 0 || c.Indexed != s.cfg.Verified.indexed() {
		t.Fatalf("pre-freeze verification indexed %d files (state: %d), want every regular file", c.Indexed, s.cfg.Verified.indexed())
	}
	e.passes = nil
	return e
}

func (v *VerifyState) indexed() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return len(v.index)
}

func (e *blockEnv) final(t *testing.T) FinalResult {
	t.Helper()
	fin, err := e.s.Final(context.Background(), 2)
	if err != nil {
		t.Fatal(err)
	}
	if d, err := treediff.Compare(e.src, e.dst, treediff.Options{}); err != nil || len(d) != 0 {
		t.Fatalf("target differs from the frozen source after the final pass (%v): %v", err, d)
	}
	return fin
}

func overwriteAt(t *testing.T, p string, off int64, n int) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, n)
	_, _ = rand.Read(b)
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
	_ = f.Close()
}

// TestFinalBlockDelta: content changed in place, a file grown, one shrunk,
// one only touched: the final pass goes as a block delta, sends only the
// changed blocks, leaves the target identical (content, mode, owner, times),
// and a second final pass sends nothing.
func TestFinalBlockDelta(t *testing.T) {
	e := blockSetup(t, nil)
	// a/f0: two blocks rewritten; b/f1: grows by 1.5 blocks; a/f2: shrinks
	// to 10.5 blocks; b/f3: time only; a/f4: mode and owner.
	overwriteAt(t, filepath.Join(e.src, "a", "f0"), 2*blk, blk)
	overwriteAt(t, filepath.Join(e.src, "a", "f0"), 20*blk, 10)
	overwriteAt(t, filepath.Join(e.src, "b", "f1"), 32*blk, blk+blk/2)
	if err := os.Truncate(filepath.Join(e.src, "a", "f2"), 10*blk+blk/2); err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(time.Hour)
	if err := os.Chtimes(filepath.Join(e.src, "b", "f3"), later, later); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(e.src, "a", "f4"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(filepath.Join(e.src, "a", "f4"), 4321, 8765); err != nil {
		t.Fatal(err)
	}
	fin := e.final(t)
	if fin.Method != FinalBlockDelta || fin.Fallback != "" {
		t.Fatalf("final method %q (fallback %q: %s), want the block delta", fin.Method, fin.Fallback, fin.FallbackDetail)
	}
	// f0: 2 blocks; f1: 2 blocks (32 full, 33 half); f2: block 10 (half).
	literal := int64(2*blk + blk + blk/2 + blk/2)
	if fin.Delta.Stats.LiteralData != literal {
		t.Errorf("literal data %d, want %d (only the changed blocks)", fin.Delta.Stats.LiteralData, literal)
	}
	if fin.Delta.WireSent < literal || fin.Delta.WireSent > literal+32<<10 {
		t.Errorf("wire sent %d for %d bytes of changed blocks", fin.Delta.WireSent, literal)
	}
	if fin.Counts.BlockCompared != 5 || fin.Counts.Unchanged != fin.Counts.Entries-5 || fin.Counts.Checksummed != 0 || fin.Repairs != 0 {
		t.Errorf("counts %+v (repairs %d), want 5 files compared block by block, the rest unchanged", fin.Counts, fin.Repairs)
	}
	if len(e.passes) != 1 || e.passes[0].Pass != PassFinal || !e.passes[0].BlockDelta || e.passes[0].Err != nil {
		t.Errorf("passes %+v, want one block-delta final pass", e.passes)
	}
	// A repeated final pass (a retry) finds nothing to send.
	e.passes = nil
	fin = e.final(t)
	if fin.Method != FinalBlockDelta || fin.Counts.BlockCompared != 0 || fin.Counts.Unchanged != fin.Counts.Entries || fin.Delta.WireSent != 0 {
		t.Errorf("second final pass: method %q, counts %+v, wire %d; want the block delta with everything unchanged", fin.Method, fin.Counts, fin.Delta.WireSent)
	}
}

// TestFinalBlockDeltaSpreadChanges: changes in every file (the migration
// benchmark's pattern) go as a block delta and leave the target identical.
func TestFinalBlockDeltaSpreadChanges(t *testing.T) {
	e := blockSetup(t, nil)
	for i := range 8 {
		p := filepath.Join(e.src, string(rune('a'+i%2)), fmt.Sprintf("f%d", i))
		overwriteAt(t, p, int64(i)*blk, 100)
	}
	fin := e.final(t)
	if fin.Method != FinalBlockDelta || fin.Delta.Stats.LiteralData != 8*blk || fin.Counts.BlockCompared != 8 {
		t.Errorf("method %q (%s), literal %d, counts %+v; want 8 blocks by block delta", fin.Method, fin.FallbackDetail, fin.Delta.Stats.LiteralData, fin.Counts)
	}
}

// TestFinalBlockDeltaFallsBack: whatever the block delta cannot carry or
// prove goes to the rsync final pass and its verification, and the target
// ends identical.
func TestFinalBlockDeltaFallsBack(t *testing.T) {
	cases := []struct {
		name   string
		tree   func(src string)
		change func(t *testing.T, e *blockEnv)
		want   Fallback
		detail string
	}{
		{name: "file added", want: FallbackNotApplicable, detail: "missing on the target",
			change: func(t *testing.T, e *blockEnv) {
				_ = os.WriteFile(filepath.Join(e.src, "a", "new"), []byte("x"), 0o644)
			}},
		{name: "file removed", want: FallbackNotApplicable, detail: "only on the target",
			change: func(t *testing.T, e *blockEnv) {
				_ = os.Remove(filepath.Join(e.src, "b", "f1"))
			}},
		{name: "hard link", want: FallbackNotApplicable, detail: "links",
			tree: func(src string) { _ = os.Link(filepath.Join(src, "a", "f0"), filepath.Join(src, "b", "f0-link")) },
			change: func(t *testing.T, e *blockEnv) {
				overwriteAt(t, filepath.Join(e.src, "a", "f0"), 0, 10)
			}},
		{name: "target modified after indexing", want: FallbackNotApplicable, detail: "changed on the target",
			change: func(t *testing.T, e *blockEnv) {
				overwriteAt(t, filepath.Join(e.src, "a", "f2"), 0, 10)
				overwriteAt(t, filepath.Join(e.dst, "a", "f2"), 5*blk, 10)
			}},
		{name: "index missing", want: FallbackNotApplicable, detail: "no block index",
			change: func(t *testing.T, e *blockEnv) {
				e.s.cfg.Verified.mu.Lock()
				delete(e.s.cfg.Verified.index, "b/f3")
				e.s.cfg.Verified.mu.Unlock()
				overwriteAt(t, filepath.Join(e.src, "b", "f3"), 0, 10)
			}},
		{name: "sparse source", want: FallbackNotApplicable, detail: "holes",
			change: func(t *testing.T, e *blockEnv) {
				if err := os.Truncate(filepath.Join(e.src, "a", "f4"), 1<<20); err != nil {
					t.Fatal(err)
				}
			}},
		{name: "corrupted on the way", want: FallbackMismatch, detail: "reads back different",
			change: func(t *testing.T, e *blockEnv) {
				overwriteAt(t, filepath.Join(e.src, "a", "f6"), 3*blk, blk)
				flipped := false
				e.tap = func(p []byte) []byte {
					if flipped || len(p) < blk {
						return p
					}
					flipped = true
					q := append([]byte(nil), p...)
					q[len(q)/2] ^= 1
					return q
				}
			}},
		{name: "target changed during the delta", want: FallbackMismatch, detail: "entries",
			change: func(t *testing.T, e *blockEnv) {
				overwriteAt(t, filepath.Join(e.src, "b", "f7"), 0, 10)
				e.tap = func(p []byte) []byte {
					if bytes.Contains(p, []byte(`"End":true`)) {
						_ = os.WriteFile(filepath.Join(e.dst, "b", "planted"), []byte("x"), 0o644)
					}
					return p
				}
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := blockSetup(t, tc.tree)
			tc.change(t, e)
			fin := e.final(t)
			if fin.Method != FinalRsync || fin.Fallback != tc.want || !strings.Contains(fin.FallbackDetail, tc.detail) {
				t.Errorf("method %q, fallback %q (%s); want rsync after %q containing %q", fin.Method, fin.Fallback, fin.FallbackDetail, tc.want, tc.detail)
			}
		})
	}
}

// TestFinalWholeVerifyDisablesBlockDelta: --replication-whole-final-verify
// means the whole tree checksummed under freeze, no shortcut.
func TestFinalWholeVerifyDisablesBlockDelta(t *testing.T) {
	e := blockSetup(t, nil)
	e.s.cfg.WholeFinalVerify = true
	overwriteAt(t, filepath.Join(e.src, "a", "f0"), 0, 10)
	fin := e.final(t)
	if fin.Method != FinalRsync || fin.Fallback != FallbackDisabled || !fin.Counts.Whole {
		t.Errorf("method %q, fallback %q, counts %+v; want rsync with the whole tree verified", fin.Method, fin.Fallback, fin.Counts)
	}
}

// TestPreVerifyReindexesOnlyChangedTargets: a later pre-freeze verification
// keeps the index of every file whose target did not change and asks the
// receiver only for the file a keep-warm pass rewrote.
func TestPreVerifyReindexesOnlyChangedTargets(t *testing.T) {
	e := blockSetup(t, nil)
	ctx := context.Background()
	before := map[string]any{}
	e.s.cfg.Verified.mu.Lock()
	for p, fi := range e.s.cfg.Verified.index {
		before[p] = fi
	}
	e.s.cfg.Verified.mu.Unlock()
	e.indexRequests = 0
	if _, err := e.s.PreVerify(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if e.indexRequests != 0 {
		t.Errorf("%d index requests with nothing changed, want none", e.indexRequests)
	}
	overwriteAt(t, filepath.Join(e.src, "b", "f5"), 7*blk, 10)
	if _, err := e.s.KeepWarm(ctx, 1); err != nil {
		t.Fatal(err)
	}
	c, err := e.s.PreVerify(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	if e.indexRequests != 1 || c.Indexed != len(before) {
		t.Errorf("%d index requests, %d files indexed; want 1 request and all %d files indexed", e.indexRequests, c.Indexed, len(before))
	}
	e.s.cfg.Verified.mu.Lock()
	defer e.s.cfg.Verified.mu.Unlock()
	for p, fi := range e.s.cfg.Verified.index {
		if reused := before[p] == any(fi); reused != (p != "b/f5") {
			t.Errorf("%s: index reused = %v", p, reused)
		}
	}
}

// TestFinalBlockDeltaSendsUnrecordedFiles: a file the application was
// writing during the pre-freeze verification is not recorded as equal, but
// its target is indexed: under freeze it goes as a block delta, proved
// block by block without a record.
func TestFinalBlockDeltaSendsUnrecordedFiles(t *testing.T) {
	e := blockSetup(t, nil)
	overwriteAt(t, filepath.Join(e.src, "a", "f0"), 9*blk, 100)
	c, err := e.s.PreVerify(context.Background(), 1)
	if err != nil {
		t.Fatal(err)
	}
	e.s.cfg.Verified.mu.Lock()
	_, recorded := e.s.cfg.Verified.records["a/f0"]
	e.s.cfg.Verified.mu.Unlock()
	if recorded || c.Indexed != 8 {
		t.Fatalf("a/f0 recorded = %v, %d files indexed; want a/f0 not recorded (it differs) and all 8 indexed", recorded, c.Indexed)
	}
	overwriteAt(t, filepath.Join(e.src, "a", "f0"), 20*blk, 100)
	fin := e.final(t)
	if fin.Method != FinalBlockDelta || fin.Counts.BlockCompared != 1 || fin.Delta.Stats.LiteralData != 2*blk {
		t.Errorf("method %q (%s), counts %+v, literal %d; want a/f0's 2 changed blocks by block delta", fin.Method, fin.FallbackDetail, fin.Counts, fin.Delta.Stats.LiteralData)
	}
}
