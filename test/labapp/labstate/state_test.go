package labstate

import (
	"bytes"
	"encoding/binary"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func cfg(t *testing.T) Config {
	dir := t.TempDir()
	return Config{MemoryBytes: 64 * PageSize, PagesPerTick: 3, LogPath: filepath.Join(dir, "vol", "counter.log"), StateDir: filepath.Join(dir, "state")}
}

func steps(t *testing.T, a *App, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		if err := a.Step(); err != nil {
			t.Fatal(err)
		}
	}
}

func dump(t *testing.T, region []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "pages-1.img")
	if err := os.WriteFile(p, region, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRunVerifyRestore(t *testing.T) {
	c := cfg(t)
	a, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	steps(t, a, 100)
	if n, err := Agree(a.Region(), c.LogPath); err != nil || n != 100 {
		t.Fatalf("Agree = %d, %v; want 100", n, err)
	}
	// The node runtime's view: the region through /proc/<pid>/mem.
	l, err := ReadLayout(c.StateDir)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := OpenProcessRegion(l)
	if err != nil {
		t.Fatal(err)
	}
	live, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(live, a.Region()) {
		t.Fatalf("region read through /proc/self/mem differs (%v)", err)
	}
	if got, _ := PeekCounter(l); got != 100 {
		t.Errorf("PeekCounter = %d", got)
	}
	_ = a.Close()
	b, err := Restore(c, dump(t, live))
	if err != nil {
		t.Fatal(err)
	}
	steps(t, b, 50)
	if n, err := Agree(b.Region(), c.LogPath); err != nil || n != 150 {
		t.Fatalf("after restore: Agree = %d, %v; want 150", n, err)
	}
}

// freezeMidTick builds the region and log of an app frozen in the middle
// of tick 41: pages written, log appended or not.
func freezeMidTick(t *testing.T, c Config, logged bool) []byte {
	t.Helper()
	a, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	steps(t, a, 40)
	binary.LittleEndian.PutUint64(a.region[offPending:], 41)
	a.writePages(41)
	if logged {
		_, _ = a.log.WriteString("41\n")
	}
	_ = a.Close()
	return append([]byte(nil), a.region...)
}

func TestRestoreFinishesTickInFlight(t *testing.T) {
	for _, logged := range []bool{false, true} {
		name := "frozen before the log append"
		if logged {
			name = "frozen after the log append"
		}
		t.Run(name, func(t *testing.T) {
			c := cfg(t)
			region := freezeMidTick(t, c, logged)
			if _, err := Agree(region, c.LogPath); err != nil {
				t.Fatalf("a mid-tick dump must verify: %v", err)
			}
			b, err := Restore(c, dump(t, region))
			if err != nil {
				t.Fatal(err)
			}
			if b.Counter() != 41 {
				t.Errorf("counter after restore = %d, want 41", b.Counter())
			}
			steps(t, b, 9)
			if n, err := Agree(b.Region(), c.LogPath); err != nil || n != 50 {
				t.Fatalf("Agree = %d, %v; want 50", n, err)
			}
		})
	}
}

func TestDetectsDisagreement(t *testing.T) {
	c := cfg(t)
	a, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	steps(t, a, 30)
	good := append([]byte(nil), a.Region()...)

	bad := append([]byte(nil), good...)
	bad[PageSize+5*PageSize+16] ^= 1
	if _, _, err := VerifyRegion(bad); err == nil || !strings.Contains(err.Error(), "page 5") {
		t.Errorf("corrupt page: VerifyRegion = %v", err)
	}
	// Log with a repeated value (a restore that replayed a tick).
	_, _ = a.log.WriteString("30\n")
	if _, err := Agree(good, c.LogPath); err == nil || !strings.Contains(err.Error(), "repeats") {
		t.Errorf("repeated value: Agree = %v", err)
	}
	c2 := cfg(t)
	a2, _ := New(c2)
	steps(t, a2, 10)
	_, _ = a2.log.WriteString("12\n")
	if _, err := VerifyLog(c2.LogPath); err == nil || !strings.Contains(err.Error(), "skips") {
		t.Errorf("skipped value: VerifyLog = %v", err)
	}
	// Memory behind disk: a restore from an older dump must refuse.
	c3 := cfg(t)
	a3, _ := New(c3)
	steps(t, a3, 10)
	old := append([]byte(nil), a3.Region()...)
	steps(t, a3, 5)
	_ = a3.Close()
	if _, err := Restore(c3, dump(t, old)); err == nil || !strings.Contains(err.Error(), "disagree") {
		t.Errorf("stale dump: Restore = %v", err)
	}
}

// Without a log the app keeps its state in memory only (a cache): it runs,
// dumps and restores from memory alone.
func TestMemoryOnly(t *testing.T) {
	c := cfg(t)
	c.LogPath = ""
	a, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	steps(t, a, 30)
	if n, _, err := VerifyRegion(a.Region()); err != nil || n != 30 {
		t.Fatalf("VerifyRegion = %d, %v; want 30", n, err)
	}
	b, err := Restore(c, dump(t, a.Region()))
	if err != nil {
		t.Fatal(err)
	}
	if b.Counter() != 30 {
		t.Errorf("counter after restore = %d, want 30", b.Counter())
	}
	steps(t, b, 5)
	if n, _, err := VerifyRegion(b.Region()); err != nil || n != 35 {
		t.Fatalf("VerifyRegion after restore = %d, %v; want 35", n, err)
	}
	if err := a.Close(); err != nil {
		t.Error(err)
	}
}

func TestRestoreAtOffset(t *testing.T) {
	c := cfg(t)
	a, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	steps(t, a, 20)
	region := append([]byte(nil), a.Region()...)
	_ = a.Close()
	// The dump inside a larger file, as the pages member of an archive.
	const off = 3 * 512
	file := append(append(bytes.Repeat([]byte{0xaa}, off), region...), bytes.Repeat([]byte{0xbb}, 1024)...)
	p := dump(t, file)
	if _, err := RestoreAt(c, p, off, int64(len(region))+1); err == nil {
		t.Error("RestoreAt with the wrong size succeeded")
	}
	if _, err := RestoreAt(c, p, int64(len(file))-int64(len(region))+1, int64(len(region))); err == nil {
		t.Error("RestoreAt past the end of the file succeeded")
	}
	if _, err := RestoreAt(c, p, off, -1); err == nil {
		t.Error("RestoreAt of the rest of the file (trailing bytes) succeeded")
	}
	b, err := RestoreAt(c, p, off, int64(len(region)))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b.Region(), region) {
		t.Fatal("restored region differs from the dump")
	}
	steps(t, b, 5)
	if n, err := Agree(b.Region(), c.LogPath); err != nil || n != 25 {
		t.Fatalf("Agree = %d, %v; want 25", n, err)
	}
}
