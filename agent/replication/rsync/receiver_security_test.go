package rsync

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/livemigrate/livemigrate/agent/replication/protocol"
)

// TestReceiverRefusesDevicesAndSpecials replicates a tree holding a device
// node, a FIFO and a socket: none reaches the target (the sender does not ask
// for them), and a sender that asks for them (-D, --devices, --specials) or
// for a compressed stream is refused by the receiving daemon with nothing
// created.
func TestReceiverRefusesDevicesAndSpecials(t *testing.T) {
	requireRoot(t)
	src, dst, _ := setupTrees(t)
	writeRandom(t, filepath.Join(src, "data.bin"), 4096)
	// The kernel's null device, a harmless one to plant.
	must(t, unix.Mknod(filepath.Join(src, "null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
	must(t, syscall.Mkfifo(filepath.Join(src, "pipe"), 0o600))
	l, err := net.Listen("unix", filepath.Join(src, "sock"))
	must(t, err)
	defer l.Close()

	h := startReceiver(t, dst)
	_, err = Send(context.Background(), protocol.SendOptions{SourceDir: src, Dial: h.dial})
	must(t, err)
	must(t, h.lastReceiverError(t))
	if _, err := os.Stat(filepath.Join(dst, "data.bin")); err != nil {
		t.Fatalf("regular file not replicated: %v", err)
	}
	for _, n := range []string{"null", "pipe", "sock"} {
		if fi, err := os.Lstat(filepath.Join(dst, n)); err == nil {
			t.Errorf("%s was recreated on the target (%v)", n, fi.Mode())
		}
	}

	for _, args := range [][]string{{"-D"}, {"--devices"}, {"--specials"}, {"-z"}, {"--preallocate"}, {"--keep-dirlinks"}} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			vol := t.TempDir()
			h := startReceiver(t, vol)
			_, err := send(context.Background(), protocol.SendOptions{SourceDir: src, Dial: h.dial}, testHooks{extraArgs: args})
			rerr := h.lastReceiverError(t)
			if err == nil {
				t.Fatalf("the receiver accepted a sender with %v (receiver: %v)", args, rerr)
			}
			t.Logf("refused: %v", err)
			ents, _ := os.ReadDir(vol)
			if len(ents) != 0 {
				t.Errorf("a refused sender wrote %d entries into the target", len(ents))
			}
		})
	}
}

// TestReceiverStripsSetIDBits replicates files with set-user-ID and
// set-group-ID bits: the target's files lose them (directories keep their
// setgid bit, sticky bits stay), and the checksum verification, which
// compares all metadata, finds the target equal.
func TestReceiverStripsSetIDBits(t *testing.T) {
	requireRoot(t)
	src, dst, _ := setupTrees(t)
	files := map[string]uint32{"suid": 0o4755, "sgid": 0o2755, "both": 0o6711, "plain": 0o755}
	for n, m := range files {
		p := filepath.Join(src, "bin", n)
		writeRandom(t, p, 100)
		must(t, os.Chown(p, 0, 0))
		must(t, unix.Chmod(p, m))
	}
	must(t, os.Mkdir(filepath.Join(src, "shared"), 0o755))
	must(t, unix.Chmod(filepath.Join(src, "shared"), 0o3775))

	h := startReceiver(t, dst)
	_, err := Send(context.Background(), protocol.SendOptions{SourceDir: src, Dial: h.dial})
	must(t, err)
	must(t, h.lastReceiverError(t))
	for n, m := range files {
		var st unix.Stat_t
		must(t, unix.Lstat(filepath.Join(dst, "bin", n), &st))
		if got, want := st.Mode&0o7777, m&0o777; got != want {
			t.Errorf("%s: mode %o on the target, want %o (set-id bits stripped)", n, got, want)
		}
	}
	var st unix.Stat_t
	must(t, unix.Lstat(filepath.Join(dst, "shared"), &st))
	if st.Mode&0o7777 != 0o3775 {
		t.Errorf("directory mode %o on the target, want 3775 (setgid and sticky kept)", st.Mode&0o7777)
	}
	v, err := Verify(context.Background(), protocol.SendOptions{SourceDir: src, Dial: h.dial})
	must(t, err)
	_ = h.lastReceiverError(t)
	if !v.Equal() {
		t.Errorf("verification reports the stripped bits as differences: %v", v.Differences)
	}
}

// TestReceiverDropsFileCapabilities replicates an executable with file
// capabilities (the security.capability extended attribute, set-id bits by
// other means) beside an ordinary extended attribute: the target's file has
// the ordinary one and no capabilities, and the verification finds the
// target equal.
func TestReceiverDropsFileCapabilities(t *testing.T) {
	requireRoot(t)
	src, dst, _ := setupTrees(t)
	p := filepath.Join(src, "tool")
	writeRandom(t, p, 100)
	// struct vfs_cap_data, revision 2, effective: CAP_NET_BIND_SERVICE.
	capData := []byte{0x01, 0x00, 0x00, 0x02, 0x00, 0x04, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	if err := unix.Setxattr(p, "security.capability", capData, 0); err != nil {
		t.Fatalf("setting file capabilities on the source: %v", err)
	}
	if err := unix.Setxattr(p, "user.note", []byte("kept"), 0); err != nil {
		t.Fatalf("setting a user extended attribute on the source (the test's filesystem needs them): %v", err)
	}
	h := startReceiver(t, dst)
	_, err := Send(context.Background(), protocol.SendOptions{SourceDir: src, Dial: h.dial})
	must(t, err)
	must(t, h.lastReceiverError(t))
	q := filepath.Join(dst, "tool")
	buf := make([]byte, 64)
	if n, err := unix.Getxattr(q, "security.capability", buf); err == nil {
		t.Errorf("the target's file has capabilities (%x)", buf[:n])
	}
	if n, err := unix.Getxattr(q, "user.note", buf); err != nil || string(buf[:n]) != "kept" {
		t.Errorf("the target's user.note = %q, %v; want it kept", buf[:max(n, 0)], err)
	}
	v, err := Verify(context.Background(), protocol.SendOptions{SourceDir: src, Dial: h.dial})
	must(t, err)
	_ = h.lastReceiverError(t)
	if !v.Equal() {
		t.Errorf("verification reports the dropped capabilities as differences: %v", v.Differences)
	}
}
