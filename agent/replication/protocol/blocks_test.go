package protocol_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/livemigrate/livemigrate/agent/replication/blockdelta"
	"github.com/livemigrate/livemigrate/agent/replication/manifest"
	"github.com/livemigrate/livemigrate/agent/replication/protocol"
	"github.com/livemigrate/livemigrate/agent/replication/rsync"
)

func identityOf(t *testing.T, p string) manifest.Identity {
	t.Helper()
	var st syscall.Stat_t
	must(t, syscall.Lstat(p, &st))
	return manifest.Identity{Mode: st.Mode, Dev: st.Dev, Ino: st.Ino, Size: st.Size, MtimeNs: st.Mtim.Nano(), CtimeNs: st.Ctim.Nano()}
}

// TestBlockDeltaOverTLS: index request and block delta through the
// receiver's dispatcher and the mutual-TLS transport leave the target equal
// to the source, sending only the changed blocks.
func TestBlockDeltaOverTLS(t *testing.T) {
	requireRoot(t)
	src, dst, _ := setupTrees(t)
	writeRandom(t, filepath.Join(src, "d", "f"), 64*blockdelta.BlockSize)
	h := startReceiver(t, dst)
	opts := protocol.SendOptions{SourceDir: src, Dial: h.Dial}
	_, err := rsync.Send(context.Background(), opts)
	must(t, err)
	_ = h.LastError(t)

	idx := map[string]*blockdelta.FileIndex{}
	must(t, protocol.FetchBlockIndex(context.Background(), h.Dial, []string{"d/f"}, func(fi *blockdelta.FileIndex) error {
		idx[fi.Path] = fi
		return nil
	}))
	if !idx["d/f"].Valid(identityOf(t, filepath.Join(dst, "d", "f"))) {
		t.Fatalf("index not valid: %+v", idx["d/f"].Err)
	}
	f, err := os.OpenFile(filepath.Join(src, "d", "f"), os.O_WRONLY, 0)
	must(t, err)
	_, err = f.WriteAt([]byte("changed"), 10*blockdelta.BlockSize+5)
	must(t, err)
	must(t, f.Close())

	r, br, err := protocol.SendBlockDelta(context.Background(), opts, []blockdelta.File{{Path: "d/f", Source: identityOf(t, filepath.Join(src, "d", "f")), Index: idx["d/f"]}})
	must(t, err)
	must(t, h.LastError(t))
	mustCompare(t, src, dst)
	if r.Stats.LiteralData != blockdelta.BlockSize || len(br.Files) != 1 || br.Files[0].SentBlocks != 1 {
		t.Errorf("literal data %d, files %+v; want the one changed block", r.Stats.LiteralData, br.Files)
	}
	if r.WireSent < blockdelta.BlockSize || r.WireSent > 16<<10 {
		t.Errorf("wire sent %d bytes for one 4 KiB block", r.WireSent)
	}
}

// TestBlockDeltaRefusesSymlinkOverTLS sends a hand-written delta naming a
// file through a symlink planted in the target: the receiver refuses it
// with a reply saying why, and nothing outside the target changes.
func TestBlockDeltaRefusesSymlinkOverTLS(t *testing.T) {
	requireRoot(t)
	_, dst, outside := setupTrees(t)
	must(t, os.Symlink(outside, filepath.Join(dst, "l")))
	h := startReceiver(t, dst)
	c, err := h.Dial(context.Background())
	must(t, err)
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	_, err = io.WriteString(c, protocol.BlockDelta.Line())
	must(t, err)
	hdr, err := json.Marshal(map[string]any{"Path": "l/secret", "Size": 8, "Mode": 0o644, "Blocks": []int{0}, "DataLen": 8, "Last": true,
		"Expect": identityOf(t, filepath.Join(outside, "secret"))})
	must(t, err)
	frame := binary.BigEndian.AppendUint32(nil, uint32(len(hdr)))
	_, err = c.Write(append(append(frame, hdr...), "pwned!!!"...))
	must(t, err)
	r := bufio.NewReader(c)
	var n [4]byte
	_, err = io.ReadFull(r, n[:])
	must(t, err)
	body := make([]byte, binary.BigEndian.Uint32(n[:]))
	_, err = io.ReadFull(r, body)
	must(t, err)
	if !strings.Contains(string(body), "symlink in the path is refused") {
		t.Errorf("reply = %s, want a refusal naming the symlink", body)
	}
	_ = c.Close()
	if err := h.LastError(t); err == nil {
		t.Error("receiver reported success for a delta through a symlink")
	}
	if b, _ := os.ReadFile(filepath.Join(outside, "secret")); string(b) != "outside the volume" {
		t.Fatalf("a file outside the volume was written: %q", b)
	}
}
