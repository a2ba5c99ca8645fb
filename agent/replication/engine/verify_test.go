package engine

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/livemigrate/livemigrate/agent/replication/internal/testharness"
	"github.com/livemigrate/livemigrate/agent/replication/treediff"
)

// verifySetup replicates a tree of 12 files in 3 directories, runs the
// pre-freeze verification and returns the session, the directories and the
// passes reported so far.
func verifySetup(t *testing.T, onPass func(PassResult)) (s *Session, src, dst string, entries int) {
	t.Helper()
	testharness.RequireRoot(t)
	base := t.TempDir()
	src, dst = filepath.Join(base, "src"), filepath.Join(base, "dst")
	for _, d := range []string{dst, filepath.Join(src, "a"), filepath.Join(src, "b"), filepath.Join(src, "c")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 12 {
		data := make([]byte, 64<<10+i)
		_, _ = rand.Read(data)
		if err := os.WriteFile(filepath.Join(src, string(rune('a'+i%3)), fmt.Sprintf("f%d", i)), data, 0o640); err != nil {
			t.Fatal(err)
		}
	}
	recv := testharness.StartReceiver(t, "mig-verify", dst)
	s, err := NewSession(Config{SourceDir: src, Dial: recv.Dial, MaxRounds: 1, Verified: NewVerifyState(), OnPass: onPass})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := s.PreCopy(ctx, 0); err != nil {
		t.Fatal(err)
	}
	c, err := s.PreVerify(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	entries = 1 + 3 + 12
	if c.Entries != entries || c.Checksummed != entries || c.Unchanged != 0 {
		t.Fatalf("first pre-freeze verification: %+v, want all %d entries checksummed", c, entries)
	}
	if n := s.cfg.Verified.Len(); n != entries {
		t.Fatalf("%d entries recorded as verified, want %d", n, entries)
	}
	// A second pre-freeze verification reads nothing.
	c, err = s.PreVerify(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if c.Checksummed != 0 || c.Unchanged != entries {
		t.Fatalf("second pre-freeze verification: %+v, want every entry unchanged and none read", c)
	}
	return s, src, dst, entries
}

// rewrite writes a marker into path; keepTimes restores its modification
// time (the corruption rsync's quick check cannot see).
func rewrite(t *testing.T, path string, keepTimes bool) {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	marker := "SOURCE CHANGED"
	if keepTimes {
		marker = "TARGET CORRUPT"
	}
	if _, err := f.WriteAt([]byte(marker), 100); err != nil {
		t.Fatal(err)
	}
	_ = f.Close()
	if keepTimes {
		if err := os.Chtimes(path, st.ModTime(), st.ModTime()); err != nil {
			t.Fatal(err)
		}
	}
}

// TestFinalChecksumsOnlyChangedEntries: under freeze only the entries that
// changed on the source since the pre-freeze verification are read.
func TestFinalChecksumsOnlyChangedEntries(t *testing.T) {
	s, src, dst, entries := verifySetup(t, nil)
	s.cfg.DisableBlockDelta = true // the rsync final pass (blocks_test.go: the block delta)
	rewrite(t, filepath.Join(src, "a", "f3"), false)
	if err := os.Chmod(filepath.Join(src, "b", "f4"), 0o600); err != nil {
		t.Fatal(err)
	}
	fin, err := s.Final(context.Background(), 2)
	if err != nil {
		t.Fatal(err)
	}
	if fin.Counts.Whole || fin.Counts.Checksummed != 2 || fin.Counts.Unchanged != entries-2 || fin.Repairs != 0 {
		t.Errorf("final verification %+v (repairs %d), want exactly the 2 changed entries checksummed and %d unchanged", fin.Counts, fin.Repairs, entries-2)
	}
	if d, _ := treediff.Compare(src, dst, treediff.Options{}); len(d) != 0 {
		t.Fatalf("target differs: %v", d)
	}
}

// TestFinalCatchesTargetCorruptionAfterPreVerify corrupts a target file the
// source never changed, keeping its size and modification time, after the
// pre-freeze verification: its target identity changed (ctime), so it is
// checksummed under freeze, found and repaired.
func TestFinalCatchesTargetCorruptionAfterPreVerify(t *testing.T) {
	var diffs []string
	s, src, dst, _ := verifySetup(t, func(p PassResult) {
		if p.Pass == PassVerify {
			diffs = append(diffs, p.Differences...)
		}
	})
	rewrite(t, filepath.Join(dst, "c", "f5"), true)
	fin, err := s.Final(context.Background(), 2)
	if err != nil {
		t.Fatal(err)
	}
	if fin.Method != FinalRsync || fin.Fallback != FallbackNotApplicable {
		t.Errorf("final pass method %q (fallback %q), want rsync because the target changed since its index", fin.Method, fin.Fallback)
	}
	if fin.Repairs != 1 || len(diffs) != 1 || !strings.HasSuffix(diffs[0], "c/f5") {
		t.Errorf("repairs %d, differences %q: want c/f5 found and repaired", fin.Repairs, diffs)
	}
	if d, _ := treediff.Compare(src, dst, treediff.Options{}); len(d) != 0 {
		t.Fatalf("target differs after the final pass: %v", d)
	}
}

// TestFinalCatchesCorruptionOfATransferredFile corrupts, as the final pass
// ends, a target file that pass has just written (same size and mtime): the
// verification under freeze reads what the final pass wrote and catches it.
func TestFinalCatchesCorruptionOfATransferredFile(t *testing.T) {
	var dst string
	var diffs []string
	s, src, dstDir, _ := verifySetup(t, func(p PassResult) {
		switch p.Pass {
		case PassFinal:
			rewrite(t, filepath.Join(dst, "a", "f6"), true)
		case PassVerify:
			diffs = append(diffs, p.Differences...)
		}
	})
	dst = dstDir
	s.cfg.DisableBlockDelta = true // corrupted between the rsync pass and its verification
	rewrite(t, filepath.Join(src, "a", "f6"), false)
	fin, err := s.Final(context.Background(), 2)
	if err != nil {
		t.Fatal(err)
	}
	if fin.Repairs != 1 || len(diffs) != 1 || !strings.HasSuffix(diffs[0], "a/f6") {
		t.Errorf("repairs %d, differences %q: want a/f6 found and repaired", fin.Repairs, diffs)
	}
	if d, _ := treediff.Compare(src, dst, treediff.Options{}); len(d) != 0 {
		t.Fatalf("target differs after the final pass: %v", d)
	}
}

// TestFinalFindsExtraTargetEntry: an entry that appears only on the target
// after the final pass (which deletes extras itself) is a difference of the
// verification under freeze, and the repair removes it.
func TestFinalFindsExtraTargetEntry(t *testing.T) {
	var dst string
	var diffs []string
	s, src, dstDir, _ := verifySetup(t, func(p PassResult) {
		switch p.Pass {
		case PassFinal:
			if err := os.WriteFile(filepath.Join(dst, "b", "planted"), []byte("x"), 0o644); err != nil {
				t.Error(err)
			}
		case PassRepair:
			diffs = append(diffs, "repair")
		}
	})
	dst = dstDir
	s.cfg.DisableBlockDelta = true // planted between the rsync pass and its verification
	fin, err := s.Final(context.Background(), 2)
	if err != nil {
		t.Fatal(err)
	}
	if fin.Repairs != 1 || len(diffs) != 1 {
		t.Errorf("repairs %d, want the planted entry found and repaired", fin.Repairs)
	}
	if _, err := os.Stat(filepath.Join(dst, "b", "planted")); !os.IsNotExist(err) {
		t.Errorf("planted file still on the target: %v", err)
	}
	if d, _ := treediff.Compare(src, dst, treediff.Options{}); len(d) != 0 {
		t.Fatalf("target differs: %v", d)
	}
}
