package protocol_test

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	mrand "math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/livemigrate/livemigrate/agent/replication/certs"
	"github.com/livemigrate/livemigrate/agent/replication/protocol"
	"github.com/livemigrate/livemigrate/agent/replication/rsync"
	"github.com/livemigrate/livemigrate/agent/replication/transport"
	"github.com/livemigrate/livemigrate/agent/replication/treediff"
)

// TestTarFirstPassEqualsRsync copies the same generated tree once as a tar
// stream and once with rsync: the targets are identical, and rsync itself
// (whole-file checksums, all metadata) finds nothing to change in the one
// the tar stream wrote.
func TestTarFirstPassEqualsRsync(t *testing.T) {
	requireRoot(t)
	src, dstTar, outside := setupTrees(t)
	dstRsync := filepath.Join(filepath.Dir(dstTar), "dst-rsync")
	must(t, os.MkdirAll(dstRsync, 0o755))
	genTree(t, src, outside, mrand.New(mrand.NewPCG(3, 4)))
	// Names that are not UTF-8, carry a newline, or need a PAX path record.
	for _, name := range []string{"bin\xffary", "new\nline", strings.Repeat("long-", 40) + "name"} {
		writeRandom(t, filepath.Join(src, "names", name), 100)
	}
	must(t, os.Symlink("target\xfe\nodd", filepath.Join(src, "names", "odd-link")))
	ht, hr := startReceiver(t, dstTar), startReceiver(t, dstRsync)
	ctx := context.Background()

	r, err := protocol.SendTar(ctx, protocol.SendOptions{SourceDir: src, Dial: ht.Dial})
	must(t, err)
	must(t, ht.LastError(t))
	_, err = rsync.Send(ctx, protocol.SendOptions{SourceDir: src, Dial: hr.Dial, DetectSparse: true})
	must(t, err)
	must(t, hr.LastError(t))

	mustCompare(t, src, dstTar)
	diffs, err := treediff.Compare(dstRsync, dstTar, treediff.Options{})
	must(t, err)
	if len(diffs) != 0 {
		t.Fatalf("tar and rsync first passes differ:\n%v", diffs)
	}
	v, err := rsync.Verify(ctx, protocol.SendOptions{SourceDir: src, Dial: ht.Dial})
	must(t, err)
	must(t, ht.LastError(t))
	if !v.Equal() {
		t.Errorf("rsync verification finds differences after a tar first pass: %v", v.Differences)
	}
	again, err := rsync.Send(ctx, protocol.SendOptions{SourceDir: src, Dial: ht.Dial})
	must(t, err)
	must(t, ht.LastError(t))
	if again.Stats.LiteralData != 0 || again.Stats.TransferredFiles != 0 {
		t.Errorf("rsync pass after the tar pass sent %d bytes in %d files, want none", again.Stats.LiteralData, again.Stats.TransferredFiles)
	}
	if r.Stats.LiteralData >= 64<<20 {
		t.Errorf("tar stream carried %d bytes of data: the sparse file's holes were sent", r.Stats.LiteralData)
	}
	alloc, err := treediff.Allocated(filepath.Join(dstTar, "sparse.img"))
	must(t, err)
	if alloc > 1<<20 {
		t.Errorf("sparse file allocates %d bytes on the target, want it sparse", alloc)
	}
}

func TestTarRefusesNonEmptyTarget(t *testing.T) {
	requireRoot(t)
	src, dst, _ := setupTrees(t)
	writeRandom(t, filepath.Join(src, "a"), 1000)
	must(t, os.WriteFile(filepath.Join(dst, "a"), []byte("older"), 0o644))
	h := startReceiver(t, dst)
	_, err := protocol.SendTar(context.Background(), protocol.SendOptions{SourceDir: src, Dial: h.Dial})
	if !errors.Is(err, protocol.ErrTarNotApplicable) {
		t.Fatalf("tar pass into a non-empty target: %v, want ErrTarNotApplicable", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dst, "a")); string(b) != "older" {
		t.Errorf("target file changed to %q", b)
	}
}

func TestTarNotApplicableToSpecialFiles(t *testing.T) {
	requireRoot(t)
	src, dst, _ := setupTrees(t)
	must(t, syscall.Mkfifo(filepath.Join(src, "pipe"), 0o600))
	h := startReceiver(t, dst)
	_, err := protocol.SendTar(context.Background(), protocol.SendOptions{SourceDir: src, Dial: h.Dial})
	if !errors.Is(err, protocol.ErrTarNotApplicable) || !strings.Contains(err.Error(), "pipe") {
		t.Fatalf("tar pass of a tree with a FIFO: %v, want ErrTarNotApplicable naming it", err)
	}
	ents, _ := os.ReadDir(dst)
	if len(ents) != 0 {
		t.Errorf("target not empty after a refused tar pass: %v", ents)
	}
}

// TestTarMaliciousStreamOverTLS sends a hand-made stream through the
// receiver's dispatcher: it is refused with a clear reply and nothing is
// written outside the target.
func TestTarMaliciousStreamOverTLS(t *testing.T) {
	requireRoot(t)
	_, dst, outside := setupTrees(t)
	h := startReceiver(t, dst)
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	must(t, tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: "l", Linkname: outside, Format: tar.FormatPAX}))
	must(t, tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "l/pwned", Size: 1, Mode: 0o644, Format: tar.FormatPAX}))
	_, _ = tw.Write([]byte("x"))
	must(t, tw.Close())
	c, err := h.Dial(context.Background())
	must(t, err)
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	_, err = c.Write([]byte(protocol.Tar.Line()))
	must(t, err)
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	must(t, err)
	if line != protocol.TarReady {
		t.Fatalf("receiver answered %q", line)
	}
	_, err = c.Write(b.Bytes())
	must(t, err)
	reply, err := r.ReadString('\n')
	must(t, err)
	if !strings.HasPrefix(reply, protocol.ReplyError) || !strings.Contains(reply, "not a directory created by this stream") {
		t.Errorf("reply = %q, want a refusal naming the symlink", reply)
	}
	if err := h.LastError(t); err == nil {
		t.Error("receiver reported success for a malicious stream")
	}
	if _, err := os.Lstat(filepath.Join(outside, "pwned")); !os.IsNotExist(err) {
		t.Fatalf("a file was written outside the volume: %v", err)
	}
}

// TestTarRequiresMigrationCredentials: a tar request with another
// migration's credentials, or the target's own (replayed as a client), never
// reaches the extractor.
func TestTarRequiresMigrationCredentials(t *testing.T) {
	requireRoot(t)
	src, dst, _ := setupTrees(t)
	writeRandom(t, filepath.Join(src, "a"), 1000)
	h := startReceiver(t, dst)
	other, err := certs.Mint(certs.Options{MigrationUID: "other-migration", Validity: time.Hour})
	must(t, err)
	foreign, err := certs.TLSConfig(other.Credentials(certs.RoleSource), certs.RoleSource, "mig-test", nil)
	must(t, err)
	// Same migration UID, but credentials minted by another CA.
	sameUID, err := certs.Mint(certs.Options{MigrationUID: "mig-test", Validity: time.Hour})
	must(t, err)
	replayed, err := certs.TLSConfig(sameUID.Credentials(certs.RoleSource), certs.RoleSource, "mig-test", nil)
	must(t, err)
	for name, cfg := range map[string]*tls.Config{"another migration": foreign, "another CA": replayed} {
		t.Run(name, func(t *testing.T) {
			_, err := protocol.SendTar(context.Background(), protocol.SendOptions{SourceDir: src, Dial: func(ctx context.Context) (net.Conn, error) {
				return transport.Dial(ctx, h.Addr, cfg)
			}})
			if err == nil {
				t.Fatal("tar pass with foreign credentials succeeded")
			}
			ents, _ := os.ReadDir(dst)
			if len(ents) != 0 {
				t.Errorf("target written with foreign credentials: %v", ents)
			}
		})
	}
}
