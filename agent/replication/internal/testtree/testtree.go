// Package testtree builds and compares the volume trees of the replication
// packages' tests. It is never used by production code.
package testtree

import (
	"crypto/rand"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/livemigrate/livemigrate/agent/replication/treediff"
)

// Gen fills dir with a random tree: nested regular files of many sizes,
// a sparse file, hard links, symlinks (relative, absolute, dangling, and one
// pointing outside the tree), odd modes and owners.
func Gen(tb testing.TB, dir, outside string, rng *mrand.Rand) {
	tb.Helper()
	for i := range 40 {
		p := filepath.Join(dir, fmt.Sprintf("d%d", i%5), fmt.Sprintf("sub%d", i%3), fmt.Sprintf("f%02d.bin", i))
		WriteRandom(tb, p, rng.IntN(200*1024))
		must(tb, os.Chmod(p, os.FileMode(0o600+rng.IntN(0o177))))
		must(tb, os.Lchown(p, 1000+i, 2000+i))
	}
	WriteRandom(tb, filepath.Join(dir, "big.db"), 4<<20)
	// Sparse: 64 MiB apparent, two small extents.
	f, err := os.Create(filepath.Join(dir, "sparse.img"))
	must(tb, err)
	_, err = f.WriteAt([]byte("head"), 0)
	must(tb, err)
	_, err = f.WriteAt([]byte("tail"), 64<<20-4)
	must(tb, err)
	must(tb, f.Close())
	must(tb, os.Link(filepath.Join(dir, "big.db"), filepath.Join(dir, "d1", "big-hardlink.db")))
	must(tb, os.Symlink("../big.db", filepath.Join(dir, "d0", "rel-link")))
	must(tb, os.Symlink("/nonexistent/target", filepath.Join(dir, "dangling")))
	must(tb, os.Symlink(outside, filepath.Join(dir, "outside-link")))
	must(tb, os.MkdirAll(filepath.Join(dir, "empty", "dir"), 0o700))
	must(tb, os.Chmod(filepath.Join(dir, "d2"), 0o2775))
	past := time.Date(2020, 5, 6, 7, 8, 9, 123456789, time.UTC)
	must(tb, os.Chtimes(filepath.Join(dir, "big.db"), past, past))
}

// Setup makes a source, a target and a directory outside both holding a
// file "secret" (what a symlink out of the volume must not reach).
func Setup(tb testing.TB) (src, dst, outside string) {
	tb.Helper()
	base := tb.TempDir()
	src, dst, outside = filepath.Join(base, "src"), filepath.Join(base, "dst"), filepath.Join(base, "outside")
	for _, d := range []string{src, dst, outside} {
		must(tb, os.MkdirAll(d, 0o755))
	}
	must(tb, os.WriteFile(filepath.Join(outside, "secret"), []byte("outside the volume"), 0o600))
	return src, dst, outside
}

// MustEqual fails tb when the tree dst differs from src (treediff).
func MustEqual(tb testing.TB, src, dst string) {
	tb.Helper()
	diffs, err := treediff.Compare(src, dst, treediff.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	if len(diffs) != 0 {
		tb.Fatalf("target differs from source:\n%v", diffs)
	}
}

// WriteRandom writes size random bytes to path, creating its directory.
func WriteRandom(tb testing.TB, path string, size int) {
	tb.Helper()
	buf := make([]byte, size)
	if _, err := rand.Read(buf); err != nil {
		tb.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(path, buf, 0o644); err != nil {
		tb.Fatal(err)
	}
}

func must(tb testing.TB, err error) {
	tb.Helper()
	if err != nil {
		tb.Fatal(err)
	}
}
