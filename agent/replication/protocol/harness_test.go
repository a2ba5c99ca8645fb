package protocol_test

import (
	"crypto/rand"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/livemigrate/livemigrate/agent/replication/internal/testharness"
	"github.com/livemigrate/livemigrate/agent/replication/treediff"
)

func requireRoot(t *testing.T) {
	t.Helper()
	testharness.RequireRoot(t)
}

// startReceiver serves dest for migration "mig-test" through a real
// receiver behind a real mutual-TLS listener on loopback
// (testharness.StartReceiver).
func startReceiver(t *testing.T, dest string) *testharness.Receiver {
	t.Helper()
	return testharness.StartReceiver(t, "mig-test", dest)
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
