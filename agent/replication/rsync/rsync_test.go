package rsync

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/livemigrate/livemigrate/agent/replication/protocol"
	"github.com/livemigrate/livemigrate/agent/replication/treediff"
)

func TestDeltaCorrectness(t *testing.T) {
	t.Run("rsync first pass", func(t *testing.T) { testDeltaCorrectness(t, Send) })
	t.Run("tar first pass", func(t *testing.T) {
		testDeltaCorrectness(t, func(ctx context.Context, o protocol.SendOptions) (protocol.Result, error) {
			r, err := protocol.SendTar(ctx, o)
			if errors.Is(err, protocol.ErrTarNotApplicable) {
				t.Fatalf("the generated tree was not sent as a tar stream: %v", err)
			}
			return r, err
		})
	})
}

// testDeltaCorrectness runs a first pass with full, then rsync delta passes
// after mutations of every kind, comparing the trees after each.
func testDeltaCorrectness(t *testing.T, full func(context.Context, protocol.SendOptions) (protocol.Result, error)) {
	requireRoot(t)
	src, dst, outside := setupTrees(t)
	rng := mrand.New(mrand.NewPCG(1, 2))
	genTree(t, src, outside, rng)
	h := startReceiver(t, dst)
	ctx := context.Background()
	opts := protocol.SendOptions{SourceDir: src, Dial: h.dial}

	first, err := full(ctx, opts)
	must(t, err)
	must(t, h.lastReceiverError(t))
	mustCompare(t, src, dst)
	if first.Stats.LiteralData < 4<<20 {
		t.Errorf("full pass literal data = %d, want at least the 4 MiB file", first.Stats.LiteralData)
	}
	// Sparse file stays sparse on the target.
	alloc, err := treediff.Allocated(filepath.Join(dst, "sparse.img"))
	must(t, err)
	if alloc > 1<<20 {
		t.Errorf("sparse file allocates %d bytes on the target, want it sparse", alloc)
	}

	// Mutations of every kind.
	bigPath := filepath.Join(src, "big.db")
	f, err := os.OpenFile(bigPath, os.O_WRONLY, 0)
	must(t, err)
	patch := make([]byte, 4096)
	_, _ = rand.Read(patch)
	_, err = f.WriteAt(patch, 2<<20) // one block in the middle
	must(t, err)
	must(t, f.Close())
	appendTo := filepath.Join(src, "d0", "sub0", "f00.bin")
	af, err := os.OpenFile(appendTo, os.O_APPEND|os.O_WRONLY, 0)
	must(t, err)
	_, err = af.Write([]byte("appended data"))
	must(t, err)
	must(t, af.Close())
	must(t, os.Truncate(filepath.Join(src, "d1", "sub1", "f01.bin"), 10))
	must(t, os.Rename(filepath.Join(src, "d2", "sub2", "f02.bin"), filepath.Join(src, "d3", "renamed.bin")))
	must(t, os.Remove(filepath.Join(src, "d3", "sub0", "f03.bin")))
	must(t, os.RemoveAll(filepath.Join(src, "empty")))
	must(t, os.Link(filepath.Join(src, "d4", "sub1", "f04.bin"), filepath.Join(src, "new-hardlink")))
	must(t, os.Symlink("d4", filepath.Join(src, "new-link")))
	must(t, os.Chmod(filepath.Join(src, "d0", "sub2", "f05.bin"), 0o640))
	must(t, os.Lchown(filepath.Join(src, "d1", "sub0", "f06.bin"), 4242, 4343))
	sf, err := os.OpenFile(filepath.Join(src, "sparse.img"), os.O_WRONLY, 0)
	must(t, err)
	_, err = sf.WriteAt([]byte("middle"), 32<<20)
	must(t, err)
	must(t, sf.Close())

	delta, err := Send(ctx, opts)
	must(t, err)
	must(t, h.lastReceiverError(t))
	mustCompare(t, src, dst)
	// Only changed blocks travel: far less than the 4 MiB file it touched.
	if delta.Stats.LiteralData > 1<<20 {
		t.Errorf("delta literal data = %d bytes, want < 1 MiB (only changed blocks)", delta.Stats.LiteralData)
	}
	if delta.WireSent > 2<<20 {
		t.Errorf("delta pass sent %d bytes over the tunnel, want < 2 MiB", delta.WireSent)
	}
	if delta.Stats.MatchedData == 0 {
		t.Error("delta pass matched no data: the delta algorithm was not used")
	}
	if delta.Stats.DeletedFiles < 2 {
		t.Errorf("deleted files = %d, want at least 2", delta.Stats.DeletedFiles)
	}
	// The symlink pointing outside was copied as a symlink, not followed.
	l, err := os.Readlink(filepath.Join(dst, "outside-link"))
	must(t, err)
	if l != outside {
		t.Errorf("outside-link -> %q, want %q", l, outside)
	}
	if _, err := os.Stat(filepath.Join(dst, "secret")); !os.IsNotExist(err) {
		t.Errorf("content behind the outside symlink was copied: %v", err)
	}

	v, err := Verify(ctx, opts)
	must(t, err)
	must(t, h.lastReceiverError(t))
	if !v.Equal() {
		t.Errorf("verify found differences after a delta pass: %v", v.Differences)
	}
	// A rerun is idempotent and sends no file data.
	again, err := Send(ctx, opts)
	must(t, err)
	must(t, h.lastReceiverError(t))
	if again.Stats.LiteralData != 0 {
		t.Errorf("rerun literal data = %d, want 0", again.Stats.LiteralData)
	}
	mustCompare(t, src, dst)
}

func TestVerifyDetectsCorruption(t *testing.T) {
	requireRoot(t)
	src, dst, _ := setupTrees(t)
	writeRandom(t, filepath.Join(src, "data", "table.db"), 1<<20)
	writeRandom(t, filepath.Join(src, "data", "other.db"), 1000)
	h := startReceiver(t, dst)
	ctx := context.Background()
	opts := protocol.SendOptions{SourceDir: src, Dial: h.dial}
	_, err := Send(ctx, opts)
	must(t, err)
	must(t, h.lastReceiverError(t))

	// Flip one byte on the target, keeping size and modification time, so
	// only a content checksum can notice.
	target := filepath.Join(dst, "data", "table.db")
	st, err := os.Stat(target)
	must(t, err)
	f, err := os.OpenFile(target, os.O_RDWR, 0)
	must(t, err)
	b := make([]byte, 1)
	_, err = f.ReadAt(b, 12345)
	must(t, err)
	b[0] ^= 0xff
	_, err = f.WriteAt(b, 12345)
	must(t, err)
	must(t, f.Close())
	must(t, os.Chtimes(target, st.ModTime(), st.ModTime()))

	v, err := Verify(ctx, opts)
	must(t, err)
	must(t, h.lastReceiverError(t))
	if v.Equal() {
		t.Fatal("verify did not detect a corrupted target file")
	}
	if len(v.Differences) != 1 || !strings.HasSuffix(v.Differences[0], "data/table.db") {
		t.Errorf("differences = %q, want exactly data/table.db", v.Differences)
	}
	// The target was not modified by the dry-run verification.
	eq, err := treediff.FilesEqual(filepath.Join(src, "data", "table.db"), target)
	must(t, err)
	if eq {
		t.Error("verification repaired the file; it must be read-only")
	}
}

func TestSymlinkTricksStayInsideVolume(t *testing.T) {
	requireRoot(t)
	src, dst, outside := setupTrees(t)
	// A symlink planted on the target (by an earlier pass or by the workload)
	// pointing outside the volume, then a pass that writes through that name.
	must(t, os.Symlink(outside, filepath.Join(dst, "escape")))
	must(t, os.Symlink(outside+"/secret", filepath.Join(dst, "escape-file")))
	writeRandom(t, filepath.Join(src, "escape", "pwned"), 100)
	writeRandom(t, filepath.Join(src, "escape-file"), 100)
	h := startReceiver(t, dst)
	_, err := Send(context.Background(), protocol.SendOptions{SourceDir: src, Dial: h.dial})
	must(t, err)
	must(t, h.lastReceiverError(t))
	if _, err := os.Stat(filepath.Join(outside, "pwned")); !os.IsNotExist(err) {
		t.Fatalf("a file was written outside the volume through a symlink: %v", err)
	}
	got, err := os.ReadFile(filepath.Join(outside, "secret"))
	must(t, err)
	if string(got) != "outside the volume" {
		t.Fatalf("file outside the volume was overwritten: %q", got)
	}
	mustCompare(t, src, dst)
}

func TestMaliciousSenderConfined(t *testing.T) {
	requireRoot(t)
	base := t.TempDir()
	vol := filepath.Join(base, "vol")
	src := filepath.Join(base, "src")
	must(t, os.MkdirAll(vol, 0o755))
	writeRandom(t, filepath.Join(src, "payload"), 100)
	must(t, os.WriteFile(filepath.Join(base, "host-file"), []byte("host"), 0o600))
	writeRandom(t, filepath.Join(vol, "private"), 100)

	tests := []struct {
		name    string
		remote  string
		pull    bool
		wantErr bool
	}{
		{name: "dot-dot out of the module", remote: "livemigrate::volume/../../escape/"},
		{name: "absolute path in the module", remote: "livemigrate::volume/" + base + "/abs/"},
		{name: "unknown module", remote: "livemigrate::root/", wantErr: true},
		{name: "module named by path", remote: "livemigrate::/" + base + "/", wantErr: true},
		{name: "reading the target back", remote: "livemigrate::volume/", pull: true, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := startReceiver(t, vol)
			pullDir := filepath.Join(base, "pulled-"+strings.ReplaceAll(tt.name, " ", "-"))
			dir := src
			if tt.pull {
				must(t, os.MkdirAll(pullDir, 0o755))
				dir = pullDir
			}
			_, err := send(context.Background(), protocol.SendOptions{SourceDir: dir, Dial: h.dial}, testHooks{remote: tt.remote, pull: tt.pull})
			rerr := h.lastReceiverError(t)
			if tt.wantErr && err == nil {
				t.Errorf("malicious request succeeded (receiver: %v)", rerr)
			}
			// Whatever happened, nothing outside the volume changed and
			// nothing was read out of it.
			entries, err := os.ReadDir(base)
			must(t, err)
			for _, e := range entries {
				switch e.Name() {
				case "vol", "src", "host-file":
				default:
					if !strings.HasPrefix(e.Name(), "pulled-") {
						t.Errorf("unexpected entry %q outside the volume", e.Name())
					}
				}
			}
			if tt.pull {
				if _, err := os.Stat(filepath.Join(pullDir, "private")); !os.IsNotExist(err) {
					t.Errorf("data was read out of the target volume: %v", err)
				}
			}
			got, err := os.ReadFile(filepath.Join(base, "host-file"))
			must(t, err)
			if string(got) != "host" {
				t.Errorf("host file changed: %q", got)
			}
		})
	}
}

// TestHandCraftedClient speaks the rsync daemon protocol by hand through
// the TLS tunnel and asks for a module that is a path.
func TestHandCraftedClient(t *testing.T) {
	requireRoot(t)
	vol := t.TempDir()
	h := startReceiver(t, vol)
	for _, module := range []string{"/etc", "../", "volume/../..", "#list"} {
		t.Run(module, func(t *testing.T) {
			c, err := h.dial(context.Background())
			must(t, err)
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			_, err = c.Write([]byte(protocol.Rsync.Line()))
			must(t, err)
			r := bufio.NewReader(c)
			greeting, err := r.ReadString('\n')
			must(t, err)
			if !strings.HasPrefix(greeting, "@RSYNCD:") {
				t.Fatalf("greeting = %q", greeting)
			}
			_, err = fmt.Fprintf(c, "@RSYNCD: 31.0\n%s\n", module)
			must(t, err)
			var resp strings.Builder
			for {
				line, err := r.ReadString('\n')
				resp.WriteString(line)
				if err != nil || strings.HasPrefix(line, "@ERROR") || strings.HasPrefix(line, "@RSYNCD: OK") || strings.HasPrefix(line, "@RSYNCD: EXIT") {
					break
				}
			}
			if strings.Contains(resp.String(), "@RSYNCD: OK") {
				t.Fatalf("receiver accepted module %q: %q", module, resp.String())
			}
			_ = h.lastReceiverError(t)
		})
	}
}

// TestDiskFullLeavesSourceUntouched fills a 1 MiB target volume with each
// way a pass can write into it (rsync, and the tar stream of a first pass
// into an empty target): the error says the target is full, the receiver's
// status request reports the same cause, and the source is unchanged.
func TestDiskFullLeavesSourceUntouched(t *testing.T) {
	requireRoot(t)
	senders := []struct {
		name string
		send func(context.Context, protocol.SendOptions) (protocol.Result, error)
	}{
		{"rsync", Send},
		{"tar", protocol.SendTar},
	}
	for _, s := range senders {
		t.Run(s.name, func(t *testing.T) {
			base := t.TempDir()
			src, dst := filepath.Join(base, "src"), filepath.Join(base, "dst")
			must(t, os.MkdirAll(dst, 0o755))
			if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", dst).CombinedOutput(); err != nil {
				t.Skipf("SKIP (visible): cannot mount a 1 MiB tmpfs as the full target volume (%v: %s); this test needs CAP_SYS_ADMIN", err, out)
			}
			t.Cleanup(func() { _ = syscall.Unmount(dst, syscall.MNT_DETACH) })
			writeRandom(t, filepath.Join(src, "a.bin"), 3<<20)
			writeRandom(t, filepath.Join(src, "b.bin"), 100)
			before, err := treediff.Scan(src)
			must(t, err)

			h := startReceiver(t, dst)
			_, err = s.send(context.Background(), protocol.SendOptions{SourceDir: src, Dial: h.dial})
			_ = h.lastReceiverError(t)
			if err == nil {
				t.Fatal("replicating 3 MiB into a 1 MiB volume succeeded")
			}
			if !protocol.IsDiskFull(err) {
				t.Fatalf("error is not reported as disk full: %#v", err)
			}
			if !strings.Contains(err.Error(), "No space left on device") {
				t.Errorf("error message %q does not say the target is full", err)
			}
			after, err := treediff.Scan(src)
			must(t, err)
			if fmt.Sprint(before) != fmt.Sprint(after) {
				t.Error("the source tree changed during a failed replication")
			}
			if msg := protocol.FetchStatus(context.Background(), h.dial); !strings.Contains(msg, "No space left on device") {
				t.Errorf("receiver status = %q, want the disk-full cause", msg)
			}
		})
	}
}

func TestParseProgress(t *testing.T) {
	tests := []struct {
		line string
		want protocol.Progress
		ok   bool
	}{
		{line: "     10485763  99%  909.09MB/s    0:00:00 (xfr#2, to-chk=0/4)", want: protocol.Progress{Bytes: 10485763, Percent: 99, Rate: "909.09MB/s", Transferred: 2, ToCheck: 0, TotalFiles: 4}, ok: true},
		{line: "          3   0%    0.00kB/s    0:00:00", want: protocol.Progress{Bytes: 3, Rate: "0.00kB/s"}, ok: true},
		{line: "  1234 12%  1.00MB/s  0:01:02 (xfr#7, ir-chk=100/200)", want: protocol.Progress{Bytes: 1234, Percent: 12, Rate: "1.00MB/s", Transferred: 7, ToCheck: 100, TotalFiles: 200}, ok: true},
		{line: "Number of files: 4 (reg: 2, dir: 1, link: 1)"},
		{line: ""},
	}
	for _, tt := range tests {
		got, ok := ParseProgress(tt.line)
		if ok != tt.ok || got != tt.want {
			t.Errorf("ParseProgress(%q) = %+v, %v; want %+v, %v", tt.line, got, ok, tt.want, tt.ok)
		}
	}
}

func TestScanOutputStats(t *testing.T) {
	out := "  3   0%    0.00kB/s    0:00:00\r  10485763  99%  909.09MB/s    0:00:00 (xfr#2, to-chk=0/4)\n\n" +
		"Number of files: 4 (reg: 2, dir: 1, link: 1)\nNumber of created files: 3 (reg: 2, link: 1)\nNumber of deleted files: 1\n" +
		"Number of regular files transferred: 2\nTotal file size: 10485774 bytes\nTotal transferred file size: 10485763 bytes\n" +
		"Literal data: 10485763 bytes\nMatched data: 7 bytes\nTotal bytes sent: 10488530\nTotal bytes received: 64\n" +
		itemPrefix + ">fc.T...... a/b\n"
	var progress []protocol.Progress
	var items []string
	got, _ := scanOutput(strings.NewReader(out), func(p protocol.Progress) { progress = append(progress, p) }, func(s string) { items = append(items, s) })
	want := protocol.Stats{Files: 4, CreatedFiles: 3, DeletedFiles: 1, TransferredFiles: 2, TotalFileSize: 10485774, TransferredSize: 10485763,
		LiteralData: 10485763, MatchedData: 7, BytesSent: 10488530, BytesReceived: 64}
	if got != want {
		t.Errorf("stats = %+v, want %+v", got, want)
	}
	if len(progress) != 2 || progress[1].Bytes != 10485763 {
		t.Errorf("progress = %+v", progress)
	}
	if len(items) != 1 || items[0] != ">fc.T...... a/b" {
		t.Errorf("items = %q", items)
	}
}

func TestClassify(t *testing.T) {
	exit := func(code int) error {
		return exec.Command("sh", "-c", fmt.Sprintf("exit %d", code)).Run()
	}
	if err := classify(exit(24), "", true); err != nil {
		t.Errorf("vanished files during pre-copy: %v, want nil", err)
	}
	if err := classify(exit(24), "", false); err == nil {
		t.Error("vanished files in the final pass accepted")
	}
	err := classify(exit(11), `rsync: [receiver] write failed on "/a.bin": No space left on device (28)`, false)
	if !protocol.IsDiskFull(err) {
		t.Errorf("classify(ENOSPC) = %v, want disk full", err)
	}
	if protocol.IsDiskFull(classify(exit(12), "protocol error", false)) {
		t.Error("protocol error classified as disk full")
	}
}

// TestBandwidthLimit checks that the Go-side limiter caps the tunnel.
func TestBandwidthLimit(t *testing.T) {
	requireRoot(t)
	src, dst, _ := setupTrees(t)
	writeRandom(t, filepath.Join(src, "f"), 1<<20)
	h := startReceiver(t, dst)
	start := time.Now()
	r, err := Send(context.Background(), protocol.SendOptions{SourceDir: src, Dial: h.dial, BandwidthLimit: 512 << 10})
	must(t, err)
	must(t, h.lastReceiverError(t))
	// 1 MiB at 512 KiB/s with a 64 KiB burst: at least ~1.8 s.
	if d := time.Since(start); d < 1500*time.Millisecond {
		t.Errorf("1 MiB at 512 KiB/s took %v: the limit was not applied", d)
	}
	if r.WireSent < 1<<20 {
		t.Errorf("wire sent %d, want at least 1 MiB", r.WireSent)
	}
	mustCompare(t, src, dst)
}
