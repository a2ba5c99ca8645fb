package rsync

import (
	"context"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"testing"
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
// taken where pidfd_getfd(2) is not allowed.
func TestRelayFallback(t *testing.T) {
	requireRoot(t)
	src, dst, outside := setupTrees(t)
	genTree(t, src, outside, mrand.New(mrand.NewPCG(3, 4)))
	h := startReceiver(t, dst)
	opts := SendOptions{SourceDir: src, Dial: h.dial, relayOnly: true}
	_, err := Send(context.Background(), opts)
	must(t, err)
	must(t, h.lastReceiverError(t))
	mustCompare(t, src, dst)
	v, err := Verify(context.Background(), opts)
	must(t, err)
	must(t, h.lastReceiverError(t))
	if !v.Equal() {
		t.Fatalf("verification after a relayed pass found differences: %v", v.Differences)
	}
}
