package protocol_test

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/livemigrate/livemigrate/agent/replication/protocol"
)

// TestCheckSpace asks a real receiver, over the replication transport,
// whether its target has room: more bytes or inodes than its filesystem has
// available get the receiver's explanation (what is needed, held, available,
// short), what fits gets nil, and what the target already holds counts as
// room.
func TestCheckSpace(t *testing.T) {
	requireRoot(t)
	dst := t.TempDir()
	// A filesystem of its own, so that nothing else changes its free space.
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=16m,nr_inodes=1000", "tmpfs", dst).CombinedOutput(); err != nil {
		t.Skipf("SKIP (visible): cannot mount a 16 MiB tmpfs as the target volume (%v: %s); this test needs CAP_SYS_ADMIN", err, out)
	}
	t.Cleanup(func() { _ = syscall.Unmount(dst, syscall.MNT_DETACH) })
	writeRandom(t, filepath.Join(dst, "held"), 4<<20)
	h := startReceiver(t, dst)
	ctx := context.Background()
	held, err := protocol.TreeUsage(dst)
	must(t, err)
	var fs unix.Statfs_t
	must(t, unix.Statfs(dst, &fs))
	free := int64(fs.Bavail) * fs.Bsize

	err = protocol.CheckSpace(ctx, h.Dial, protocol.Usage{Bytes: 1 << 60, Inodes: 1})
	_ = h.LastError(t)
	if !protocol.IsSpaceError(err) || !strings.Contains(err.Error(), "short") || !strings.Contains(err.Error(), "make the target claim larger") {
		t.Errorf("CheckSpace for 1 EiB: %v, want a space error saying what is short and what to do", err)
	}
	if fs.Files > 0 {
		err = protocol.CheckSpace(ctx, h.Dial, protocol.Usage{Bytes: 1, Inodes: int64(fs.Ffree) + held.Inodes + 1})
		_ = h.LastError(t)
		if !protocol.IsSpaceError(err) || !strings.Contains(err.Error(), "free inodes") {
			t.Errorf("CheckSpace for more inodes than free: %v, want a space error about inodes", err)
		}
	}
	must(t, protocol.CheckSpace(ctx, h.Dial, protocol.Usage{Bytes: 1 << 20, Inodes: 10}))
	_ = h.LastError(t)
	// What the target holds is rewritten in place: it counts as room.
	must(t, protocol.CheckSpace(ctx, h.Dial, protocol.Usage{Bytes: free + held.Bytes/2, Inodes: 1}))
	_ = h.LastError(t)
}
