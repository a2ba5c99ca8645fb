package manifest

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestWalkEncodeDecode(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "a", "b"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "a", "f"), []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/outside", filepath.Join(dir, "a", "l")); err != nil {
		t.Fatal(err)
	}
	m, err := Walk(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{".", "a", "a/b", "a/f", "a/l"} {
		if _, ok := m.Entries[p]; !ok {
			t.Errorf("entry %q missing from %v", p, m.Entries)
		}
	}
	if len(m.Entries) != 5 {
		t.Errorf("%d entries, want 5 (the symlink is not followed)", len(m.Entries))
	}
	if f := m.Entries["a/f"]; !f.Regular() || f.Size != 5 || m.Entries["a/l"].Regular() {
		t.Errorf("identities: %+v", m.Entries)
	}
	var b bytes.Buffer
	if err := m.Encode(&b); err != nil {
		t.Fatal(err)
	}
	n := b.Len()
	got, err := Decode(bytes.NewReader(b.Bytes()), int64(n))
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Entries) != 5 || got.Entries["a/f"] != m.Entries["a/f"] || !got.Taken.Equal(m.Taken) {
		t.Errorf("decoded %+v, want %+v", got, m)
	}
	if _, err := Decode(bytes.NewReader(b.Bytes()), int64(n/2)); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("decoding past the limit: %v", err)
	}
}

// TestIdentityChangesOnEveryModification: a rewrite keeping size and
// mtime, and a chmod, both change the identity (ctime).
func TestIdentityChangesOnEveryModification(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	if err := os.WriteFile(p, []byte("0123456789"), 0o644); err != nil {
		t.Fatal(err)
	}
	m0, err := Walk(dir)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond) // past the timestamp tick
	st, _ := os.Stat(p)
	if err := os.WriteFile(p, []byte("9876543210"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(p, st.ModTime(), st.ModTime()); err != nil {
		t.Fatal(err)
	}
	m1, err := Walk(dir)
	if err != nil {
		t.Fatal(err)
	}
	a, b := m0.Entries["f"], m1.Entries["f"]
	if a.Size != b.Size || a.MtimeNs != b.MtimeNs {
		t.Fatalf("test setup: size or mtime differ: %+v %+v", a, b)
	}
	if a == b {
		t.Error("a rewrite with size and mtime kept left the identity unchanged")
	}
	time.Sleep(20 * time.Millisecond)
	if err := os.Chmod(p, 0o600); err != nil {
		t.Fatal(err)
	}
	m2, err := Walk(dir)
	if err != nil {
		t.Fatal(err)
	}
	if m2.Entries["f"] == b {
		t.Error("chmod left the identity unchanged")
	}
}
