package fswalk

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

func TestWalkLstatsWithoutFollowingLinks(t *testing.T) {
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "a", "b"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "a", "b", "f"), []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	got := map[string]uint32{}
	var order []string
	err := Walk(dir, func(rel string, st *unix.Stat_t) error {
		got[rel] = st.Mode & unix.S_IFMT
		order = append(order, rel)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]uint32{".": unix.S_IFDIR, "a": unix.S_IFDIR, "a/b": unix.S_IFDIR, "a/b/f": unix.S_IFREG, "link": unix.S_IFLNK}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("entries (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{".", "a", "a/b", "a/b/f", "link"}, order); diff != "" {
		t.Errorf("order (-want +got):\n%s", diff)
	}
}

func TestWalkMissingRootFails(t *testing.T) {
	err := Walk(filepath.Join(t.TempDir(), "gone"), func(string, *unix.Stat_t) error { return nil })
	if err == nil {
		t.Fatal("walking a missing tree succeeded")
	}
}

// TestWalkNeverEntersADirectorySwappedForASymlink swaps a directory the
// walk has listed but not entered yet for a symlink out of the tree (what a
// workload can do to its volume while the agent walks it): nothing outside
// the tree is reported, deterministically, because the swap happens in the
// callback of an entry listed before it.
func TestWalkNeverEntersADirectorySwappedForASymlink(t *testing.T) {
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "kubelet.key"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, d := range []string{"a", "b"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "b", "f"), []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	var got []string
	err := Walk(dir, func(rel string, st *unix.Stat_t) error {
		got = append(got, rel)
		if rel == "b" {
			// b has just been looked at as a directory; now it becomes a
			// symlink to outside the tree before the walk enters it.
			if err := os.Rename(filepath.Join(dir, "b"), filepath.Join(dir, "a", "moved")); err != nil {
				return err
			}
			if err := os.Symlink(outside, filepath.Join(dir, "b")); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, rel := range got {
		if rel == "b/kubelet.key" {
			t.Fatalf("the walk listed a file outside the tree through a swapped directory: %v", got)
		}
	}
	if diff := cmp.Diff([]string{".", "a", "b"}, got); diff != "" {
		t.Errorf("entries (-want +got):\n%s", diff)
	}
}
