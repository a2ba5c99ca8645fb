package blockdelta

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/livemigrate/livemigrate/agent/replication/manifest"
	"github.com/livemigrate/livemigrate/agent/replication/treediff"
)

func randomFile(t *testing.T, p string, size int) []byte {
	t.Helper()
	data := make([]byte, size)
	_, _ = rand.Read(data)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o640); err != nil {
		t.Fatal(err)
	}
	return data
}

// copyTree copies the regular files and directories of src into dst with
// their modes and times (the state after a verified pre-copy).
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.Walk(src, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		q := filepath.Join(dst, rel)
		if info.IsDir() {
			if err := os.MkdirAll(q, info.Mode().Perm()); err != nil {
				return err
			}
		} else {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			if err := os.WriteFile(q, b, info.Mode().Perm()); err != nil {
				return err
			}
			if err := os.Chmod(q, info.Mode().Perm()); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Times after content (directories last, deepest first).
	var paths []string
	_ = filepath.Walk(src, func(p string, _ os.FileInfo, _ error) error { paths = append(paths, p); return nil })
	for i := len(paths) - 1; i >= 0; i-- {
		info, _ := os.Lstat(paths[i])
		rel, _ := filepath.Rel(src, paths[i])
		if err := os.Chtimes(filepath.Join(dst, rel), info.ModTime(), info.ModTime()); err != nil {
			t.Fatal(err)
		}
	}
}

// indexOf runs an index request against dst over an in-memory connection.
func indexOf(t *testing.T, dst string, paths []string) map[string]*FileIndex {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	go func() {
		defer b.Close()
		if err := ServeIndex(context.Background(), dst, b, b); err != nil {
			t.Error(err)
		}
	}()
	out := map[string]*FileIndex{}
	err := RequestIndex(a, a, paths, func(fi *FileIndex) error { out[fi.Path] = fi; return nil })
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func ident(t *testing.T, p string) manifest.Identity {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	return identity(&st)
}

type deltaOut struct {
	res      Result
	err      error
	applyErr error
	stats    Stats
}

// delta runs Send against Apply over an in-memory connection; through, when
// set, wraps what the sender writes.
func delta(t *testing.T, src, dst string, files []File, through func(io.Writer) io.Writer) deltaOut {
	t.Helper()
	a, b := net.Pipe()
	var out deltaOut
	done := make(chan struct{})
	go func() {
		defer close(done)
		out.stats, out.applyErr = Apply(context.Background(), dst, b, b)
		_ = b.Close()
	}()
	var w io.Writer = a
	if through != nil {
		w = through(a)
	}
	out.res, out.err = Send(context.Background(), src, files, a, w, SendOptions{})
	_ = a.Close()
	<-done
	return out
}

func filesFor(t *testing.T, src, dst string, idx map[string]*FileIndex, paths ...string) []File {
	t.Helper()
	var files []File
	for _, p := range paths {
		if !idx[p].Valid(ident(t, filepath.Join(dst, p))) {
			t.Fatalf("index of %s not valid: %+v", p, idx[p].Err)
		}
		files = append(files, File{Path: p, Source: ident(t, filepath.Join(src, p)), Index: idx[p]})
	}
	return files
}

func overwrite(t *testing.T, p string, off int64, n int) {
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

// TestDeltaMakesTargetEqual: grown, shrunk, same size with changed blocks,
// mtime only, mode and owner changed; the target ends byte-identical with
// the source's metadata, and only changed blocks (plus the new tail) are
// sent.
func TestDeltaMakesTargetEqual(t *testing.T) {
	base := t.TempDir()
	src, dst := filepath.Join(base, "src"), filepath.Join(base, "dst")
	randomFile(t, filepath.Join(src, "same"), 64*BlockSize)
	randomFile(t, filepath.Join(src, "d", "grow"), 10*BlockSize+100)
	randomFile(t, filepath.Join(src, "d", "shrink"), 20*BlockSize)
	randomFile(t, filepath.Join(src, "touch"), 3*BlockSize)
	randomFile(t, filepath.Join(src, "meta"), 5000)
	randomFile(t, filepath.Join(src, "empty"), 0)
	copyTree(t, src, dst)
	paths := []string{"d/grow", "d/shrink", "empty", "meta", "same", "touch"}
	idx := indexOf(t, dst, paths)

	// same: blocks 3, 4 and 40 change (one write across 3/4 is two blocks).
	overwrite(t, filepath.Join(src, "same"), 4*BlockSize-10, 20)
	overwrite(t, filepath.Join(src, "same"), 40*BlockSize, BlockSize)
	// grow: appends 2.5 blocks; the old partial block 10 changes length.
	f, _ := os.OpenFile(filepath.Join(src, "d", "grow"), os.O_WRONLY|os.O_APPEND, 0)
	_, _ = f.Write(make([]byte, 2*BlockSize+2000))
	_ = f.Close()
	// shrink: to 7.5 blocks; block 7 becomes partial.
	if err := os.Truncate(filepath.Join(src, "d", "shrink"), 7*BlockSize+2048); err != nil {
		t.Fatal(err)
	}
	// touch: the time only.
	later := time.Now().Add(time.Hour)
	if err := os.Chtimes(filepath.Join(src, "touch"), later, later); err != nil {
		t.Fatal(err)
	}
	// meta: mode and owner.
	if err := os.Chmod(filepath.Join(src, "meta"), 0o604); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		if err := os.Chown(filepath.Join(src, "meta"), 1234, 5678); err != nil {
			t.Fatal(err)
		}
	}
	// empty: grows from nothing.
	if err := os.WriteFile(filepath.Join(src, "empty"), []byte("now there is data"), 0o640); err != nil {
		t.Fatal(err)
	}

	files := filesFor(t, src, dst, idx, paths...)
	out := delta(t, src, dst, files, nil)
	if out.err != nil || out.applyErr != nil {
		t.Fatalf("delta: send %v, apply %v", out.err, out.applyErr)
	}
	if d, err := treediff.Compare(src, dst, treediff.Options{}); err != nil || len(d) != 0 {
		t.Fatalf("target differs from the source (%v): %v", err, d)
	}
	// Blocks sent: same 3 (3, 4, 40), grow 3 (10 whose length changed,
	// 11, 12), shrink 1 (7, now partial), empty 1, touch and meta none.
	wantBlocks := map[string]int64{"same": 3, "d/grow": 3, "d/shrink": 1, "empty": 1, "touch": 0, "meta": 0}
	for _, f := range out.res.Files {
		if f.SentBlocks != wantBlocks[f.Path] {
			t.Errorf("%s: %d blocks sent, want %d", f.Path, f.SentBlocks, wantBlocks[f.Path])
		}
		if got := ident(t, filepath.Join(dst, f.Path)); got != f.Target {
			t.Errorf("%s: reported target identity %+v, is %+v", f.Path, f.Target, got)
		}
	}
	// grow: the new size is 12 blocks + 2100 bytes: blocks 10 and 11
	// full, 12 holds 2100 bytes.
	literal := int64(3*BlockSize) + (2*BlockSize + 2100) + 2048 + int64(len("now there is data"))
	if out.res.Literal != literal || out.stats.Bytes != literal {
		t.Errorf("literal data %d (receiver wrote %d), want %d", out.res.Literal, out.stats.Bytes, literal)
	}
	if len(out.res.Manifest.Entries) == 0 {
		t.Error("no target manifest after the delta")
	}
}

// flipper flips one byte in the first write of at least a block (block
// data, not a message header) on its way to the receiver.
type flipper struct {
	w    io.Writer
	done bool
}

func (f *flipper) Write(p []byte) (int, error) {
	if !f.done && len(p) >= BlockSize {
		q := append([]byte(nil), p...)
		q[len(q)/2] ^= 0x40
		f.done = true
		return f.w.Write(q)
	}
	return f.w.Write(p)
}

// TestDeltaDetectsCorruptedWrite: a block that reaches the target changed
// is read back with a hash that differs from the source's: the delta fails
// with a MismatchError, never reports equal.
func TestDeltaDetectsCorruptedWrite(t *testing.T) {
	base := t.TempDir()
	src, dst := filepath.Join(base, "src"), filepath.Join(base, "dst")
	randomFile(t, filepath.Join(src, "f"), 32*BlockSize)
	copyTree(t, src, dst)
	idx := indexOf(t, dst, []string{"f"})
	overwrite(t, filepath.Join(src, "f"), 5*BlockSize, 2*BlockSize)
	var fl *flipper
	out := delta(t, src, dst, filesFor(t, src, dst, idx, "f"), func(w io.Writer) io.Writer { fl = &flipper{w: w}; return fl })
	if !fl.done {
		t.Fatal("no block data went through the connection")
	}
	var m *MismatchError
	if !errors.As(out.err, &m) || m.Path != "f" {
		t.Fatalf("send returned %v, want a MismatchError for f", out.err)
	}
}

// TestDeltaRefusesChangedSource: a source file whose identity is not the
// one planned (it changed after the manifest) is not sent.
func TestDeltaRefusesChangedSource(t *testing.T) {
	base := t.TempDir()
	src, dst := filepath.Join(base, "src"), filepath.Join(base, "dst")
	randomFile(t, filepath.Join(src, "f"), 8*BlockSize)
	copyTree(t, src, dst)
	idx := indexOf(t, dst, []string{"f"})
	files := filesFor(t, src, dst, idx, "f")
	overwrite(t, filepath.Join(src, "f"), 0, 10)
	if err := os.Chtimes(filepath.Join(src, "f"), time.Now().Add(time.Minute), time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	out := delta(t, src, dst, files, nil)
	if !errors.Is(out.err, ErrNotApplicable) {
		t.Fatalf("send returned %v, want ErrNotApplicable", out.err)
	}
}

// TestDeltaRefusesSparseAndLinkedSources: holes and hard links go to rsync.
func TestDeltaRefusesSparseAndLinkedSources(t *testing.T) {
	base := t.TempDir()
	src, dst := filepath.Join(base, "src"), filepath.Join(base, "dst")
	randomFile(t, filepath.Join(src, "sparse"), 4*BlockSize)
	randomFile(t, filepath.Join(src, "linked"), 4*BlockSize)
	copyTree(t, src, dst)
	idx := indexOf(t, dst, []string{"linked", "sparse"})
	if err := os.Truncate(filepath.Join(src, "sparse"), 1<<20); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(src, "linked"), filepath.Join(src, "other")); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"sparse", "linked"} {
		out := delta(t, src, dst, filesFor(t, src, dst, idx, p), nil)
		if !errors.Is(out.err, ErrNotApplicable) {
			t.Errorf("%s: send returned %v, want ErrNotApplicable", p, out.err)
		}
	}
}

// rawStream sends hand-written messages to Apply and returns its error.
func rawStream(t *testing.T, dst string, msgs []chunk, data [][]byte) error {
	t.Helper()
	a, b := net.Pipe()
	errc := make(chan error, 1)
	go func() {
		_, err := Apply(context.Background(), dst, b, b)
		_ = b.Close()
		errc <- err
	}()
	go func() {
		for i, m := range msgs {
			if writeFrame(a, &m) != nil {
				return
			}
			if i < len(data) && len(data[i]) > 0 {
				if _, err := a.Write(data[i]); err != nil {
					return
				}
			}
		}
	}()
	go func() { _, _ = io.Copy(io.Discard, a) }()
	err := <-errc
	_ = a.Close()
	return err
}

// TestApplyRefusesInvalidPaths: absolute names, "..", a symlink anywhere in
// the path, a target that is not a regular file, a hard-linked target, a
// target that changed since it was indexed, out-of-range blocks: refused,
// and nothing outside the files named changes.
func TestApplyRefusesInvalidPaths(t *testing.T) {
	base := t.TempDir()
	dst, outside := filepath.Join(base, "dst"), filepath.Join(base, "outside")
	randomFile(t, filepath.Join(dst, "dir", "f"), 2*BlockSize)
	secret := randomFile(t, filepath.Join(outside, "secret"), 2*BlockSize)
	randomFile(t, filepath.Join(dst, "linked"), BlockSize)
	if err := os.Link(filepath.Join(dst, "linked"), filepath.Join(dst, "linked2")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(dst, "out")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("dir", filepath.Join(dst, "in")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("dir/f", filepath.Join(dst, "flink")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(dst, "fifo"), 0o600); err != nil {
		t.Fatal(err)
	}
	fIdent := ident(t, filepath.Join(dst, "dir", "f"))
	before, _ := os.ReadFile(filepath.Join(dst, "dir", "f"))
	block := bytes.Repeat([]byte("X"), BlockSize)
	good := func(p string) chunk {
		return chunk{Path: p, Expect: fIdent, Size: 2 * BlockSize, Mode: 0o644, Blocks: []int64{0}, DataLen: BlockSize, Last: true}
	}
	cases := []struct {
		name string
		c    chunk
		want string
	}{
		{"absolute", good(filepath.Join(outside, "secret")), "absolute"},
		{"dotdot", good("../outside/secret"), "escapes"},
		{"dotdot inside", good("dir/../dir/f"), "not canonical"},
		{"empty", good(""), ""},
		{"symlink out", good("out/secret"), "symlink"},
		{"symlink in path", good("in/f"), "symlink"},
		{"symlink file", good("flink"), "not a regular file"},
		{"directory", good("dir"), "not a regular file"},
		{"fifo", good("fifo"), "not a regular file"},
		{"hard link", func() chunk { c := good("linked"); c.Expect = ident(t, filepath.Join(dst, "linked")); return c }(), "links"},
		{"changed since indexed", func() chunk { c := good("dir/f"); c.Expect.CtimeNs--; return c }(), "changed since it was indexed"},
		{"block beyond size", func() chunk { c := good("dir/f"); c.Blocks = []int64{2}; return c }(), "beyond"},
		{"short data", func() chunk { c := good("dir/f"); c.DataLen = 100; return c }(), "carries"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := rawStream(t, dst, []chunk{tc.c}, [][]byte{block})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Apply returned %v, want an error containing %q", err, tc.want)
			}
		})
	}
	if got, _ := os.ReadFile(filepath.Join(outside, "secret")); !bytes.Equal(got, secret) {
		t.Error("a file outside the target changed")
	}
	if got, _ := os.ReadFile(filepath.Join(dst, "dir", "f")); !bytes.Equal(got, before) {
		t.Error("a refused stream wrote into dir/f")
	}
	// The same message, valid, is applied (the refusals above are not
	// refusals of everything).
	if err := rawStream(t, dst, []chunk{good("dir/f"), {End: true}}, [][]byte{block}); err != nil {
		t.Fatalf("valid stream refused: %v", err)
	}
	if got, _ := os.ReadFile(filepath.Join(dst, "dir", "f")); !bytes.Equal(got[:BlockSize], block) {
		t.Error("valid stream not written")
	}
}

// TestIndexMarksUnindexableFiles: paths the receiver refuses come back with
// an error and are never valid.
func TestIndexMarksUnindexableFiles(t *testing.T) {
	dst := t.TempDir()
	randomFile(t, filepath.Join(dst, "f"), 3*BlockSize+1)
	if err := os.Symlink("f", filepath.Join(dst, "l")); err != nil {
		t.Fatal(err)
	}
	idx := indexOf(t, dst, []string{"../f", "f", "l", "missing"})
	if fi := idx["f"]; !fi.Valid(ident(t, filepath.Join(dst, "f"))) || len(fi.Hashes) != 4*HashSize {
		t.Errorf("index of f: %+v", fi)
	}
	for _, p := range []string{"../f", "l", "missing"} {
		if fi := idx[p]; fi == nil || fi.Err == "" {
			t.Errorf("index of %s: %+v, want an error", p, fi)
		}
	}
}

// TestDeltaClearsSetIDBits sends a changed set-user-ID and set-group-ID
// source file: the target file is written without those bits (the sticky
// bit stays), and the sender accepts that as equal.
func TestDeltaClearsSetIDBits(t *testing.T) {
	base := t.TempDir()
	src, dst := filepath.Join(base, "src"), filepath.Join(base, "dst")
	randomFile(t, filepath.Join(src, "tool"), 4*BlockSize)
	copyTree(t, src, dst)
	idx := indexOf(t, dst, []string{"tool"})
	overwrite(t, filepath.Join(src, "tool"), BlockSize, 100)
	if err := unix.Chmod(filepath.Join(src, "tool"), 0o7755); err != nil {
		t.Fatal(err)
	}
	out := delta(t, src, dst, filesFor(t, src, dst, idx, "tool"), nil)
	if out.err != nil || out.applyErr != nil {
		t.Fatalf("delta: %v (receiver: %v)", out.err, out.applyErr)
	}
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(dst, "tool"), &st); err != nil {
		t.Fatal(err)
	}
	if st.Mode&0o7777 != 0o1755 {
		t.Errorf("target mode %o, want 1755 (set-id bits cleared, sticky kept)", st.Mode&0o7777)
	}
	// A hand-made stream asking for the bits gets none either.
	if err := unix.Chmod(filepath.Join(dst, "tool"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := chunk{Path: "tool", Expect: ident(t, filepath.Join(dst, "tool")), Size: 4 * BlockSize, Mode: 0o6755, Last: true}
	if err := rawStream(t, dst, []chunk{c, {End: true}}, nil); err != nil {
		t.Fatal(err)
	}
	if err := unix.Lstat(filepath.Join(dst, "tool"), &st); err != nil {
		t.Fatal(err)
	}
	if st.Mode&0o7777 != 0o755 {
		t.Errorf("target mode %o after a stream asking for 6755, want 755", st.Mode&0o7777)
	}
}

// TestIndexBoundsDeclaredSizes: a target file whose block hashes would
// exceed the request's limit (a sparse file of any apparent size costs
// nothing to create) is answered with an error, without reading it or
// allocating its hashes; files indexed earlier in the same request count
// against the limit.
func TestIndexBoundsDeclaredSizes(t *testing.T) {
	dst := t.TempDir()
	f, err := os.Create(filepath.Join(dst, "huge"))
	if err != nil {
		t.Fatal(err)
	}
	// One block more than MaxIndexBytes of hashes cover.
	if err := f.Truncate(MaxIndexBytes/HashSize*BlockSize + 1); err != nil {
		t.Fatal(err)
	}
	_ = f.Close()
	randomFile(t, filepath.Join(dst, "a"), 3*BlockSize)
	randomFile(t, filepath.Join(dst, "b"), 3*BlockSize)
	start := time.Now()
	idx := indexOf(t, dst, []string{"huge"})
	if fi := idx["huge"]; fi == nil || !strings.Contains(fi.Err, "not indexed") || len(fi.Hashes) != 0 {
		if fi != nil {
			t.Fatalf("index of a file beyond the limit: %d bytes of hashes, error %q; want none and an error", len(fi.Hashes), fi.Err)
		}
		t.Fatal("no index answer for the file beyond the limit")
	}
	t.Logf("refused in %v", time.Since(start))

	old := indexBudget
	indexBudget = 5 * HashSize
	t.Cleanup(func() { indexBudget = old })
	idx = indexOf(t, dst, []string{"a", "b"})
	if fi := idx["a"]; !fi.Valid(ident(t, filepath.Join(dst, "a"))) {
		t.Errorf("index of a within the limit not valid (error %q)", fi.Err)
	}
	if fi := idx["b"]; fi == nil || !strings.Contains(fi.Err, "not indexed") {
		t.Errorf("index of b beyond what a left of the limit: error %q, want \"not indexed\"", fi.Err)
	}
}
