package rsync

import (
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
