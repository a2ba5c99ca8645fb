package blockdelta

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"unsafe"

	"github.com/zeebo/xxh3"
	"golang.org/x/sys/unix"

	"github.com/livemigrate/livemigrate/agent/replication/manifest"
)

const (
	// BlockSize is the unit of the index and of the delta.
	BlockSize = 4096
	// HashSize is the size of one block's hash (XXH3-128).
	HashSize = 16
	// MaxPath bounds a path.
	MaxPath = 4096
	// MaxFileSize bounds the size a delta may give a file (1 PiB).
	MaxFileSize = 1 << 50
	// MaxIndexBytes bounds the block hashes one index request is answered
	// with (16 bytes per 4 KiB block: 64 MiB cover 16 GiB of files), and so
	// the memory and the reading an index request costs the receiver: a
	// file whose hashes do not fit in what is left is answered with an
	// error instead. The sender asks for no more (package engine).
	MaxIndexBytes = 64 << 20
	// chunkBlocks is the number of blocks per data message (1 MiB).
	chunkBlocks = 256
	// maxHeader bounds a message header on the receiver.
	maxHeader = 64 << 10
	// maxRequest bounds the index request (the list of paths).
	maxRequest = 64 << 20
	// maxReply bounds one reply frame read by the sender.
	maxReply = 1 << 30
	// maxIndexReply bounds one index frame read by the sender: MaxIndexBytes
	// of hashes in base64, the path and the identities.
	maxIndexReply = MaxIndexBytes/3*4 + 64<<10
)

// ErrNotApplicable wraps the reasons a file or a tree cannot go as a block
// delta (the caller runs rsync instead).
var ErrNotApplicable = errors.New("not applicable to the block delta")

// Blocks is the number of blocks of a file of size bytes.
func Blocks(size int64) int64 { return (size + BlockSize - 1) / BlockSize }

// blockLen is the length of block i of a file of size bytes.
func blockLen(size, i int64) int64 { return min(BlockSize, size-i*BlockSize) }

// hash appends the XXH3-128 hash of b to dst.
func hash(dst, b []byte) []byte {
	h := xxh3.Hash128(b).Bytes()
	return append(dst, h[:]...)
}

// FileIndex is the block index of one target file.
type FileIndex struct {
	Path string
	// Before and After are the file's identity when hashing began and
	// when it ended.
	Before, After manifest.Identity
	// Hashes holds one XXH3-128 hash (HashSize bytes) per block.
	Hashes []byte
	// Err tells why the receiver could not index the file.
	Err string `json:",omitempty"`
}

// Valid reports whether the index describes the file as it is with
// identity id: it was indexed without error, did not change while being
// hashed, has that identity, and holds one hash per block.
func (f *FileIndex) Valid(id manifest.Identity) bool {
	return f != nil && f.Err == "" && f.Before == f.After && f.After == id && id.Regular() &&
		int64(len(f.Hashes)) == Blocks(id.Size)*HashSize
}

// Size is the memory the index holds.
func (f *FileIndex) Size() int64 { return int64(len(f.Hashes) + len(f.Path)) }

// identity is the manifest identity of a stat.
func identity(st *unix.Stat_t) manifest.Identity {
	return manifest.Identity{Mode: st.Mode, Dev: st.Dev, Ino: st.Ino, Size: st.Size, MtimeNs: st.Mtim.Nano(), CtimeNs: st.Ctim.Nano()}
}

// checkName validates a path of the tree: relative, canonical, not the
// tree itself.
func checkName(n string) error {
	switch {
	case n == "" || n == ".":
		return errors.New("empty name or the tree itself")
	case len(n) > MaxPath:
		return fmt.Errorf("name longer than %d bytes", MaxPath)
	case strings.HasPrefix(n, "/"):
		return errors.New("absolute path refused")
	case strings.ContainsRune(n, 0):
		return errors.New("NUL in name")
	case path.Clean(n) != n || !filepath.IsLocal(n):
		return errors.New("path escapes the volume or is not canonical (\"..\", \".\", \"//\")")
	}
	return nil
}

// openRegular opens name beneath root: a canonical relative path, every
// directory on the way a directory (not a symlink), the entry a regular
// file (O_NOFOLLOW). It returns the open file and its fstat. os.Root keeps
// the open beneath the tree even if a directory were swapped for a symlink
// between the check and the open.
func openRegular(root *os.Root, name string, flag int) (*os.File, *unix.Stat_t, error) {
	if err := checkName(name); err != nil {
		return nil, nil, err
	}
	for i := range len(name) {
		if name[i] != '/' {
			continue
		}
		fi, err := root.Lstat(name[:i])
		if err != nil {
			return nil, nil, err
		}
		if !fi.IsDir() {
			return nil, nil, fmt.Errorf("%q is not a directory (a symlink in the path is refused)", name[:i])
		}
	}
	fi, err := root.Lstat(name)
	if err != nil {
		return nil, nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, nil, fmt.Errorf("not a regular file (%s)", fi.Mode().Type())
	}
	f, err := root.OpenFile(name, flag|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, nil, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		_ = f.Close()
		return nil, nil, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		_ = f.Close()
		return nil, nil, errors.New("not a regular file")
	}
	return f, &st, nil
}

// hasXattrs reports whether an open file has extended attributes (ACLs
// included).
func hasXattrs(f *os.File) (bool, error) {
	buf := make([]byte, 256)
	n, err := unix.Flistxattr(int(f.Fd()), buf)
	switch {
	case errors.Is(err, unix.ERANGE) || n > 0:
		return true, nil
	case errors.Is(err, unix.ENOTSUP) || err == nil:
		return false, nil
	}
	return false, err
}

// hashFile hashes every block of f (size bytes) into a fresh slice.
func hashFile(f *os.File, size int64, buf []byte) ([]byte, error) {
	out := make([]byte, 0, Blocks(size)*HashSize)
	for off := int64(0); off < size; {
		n := min(int64(len(buf)), size-off)
		if _, err := f.ReadAt(buf[:n], off); err != nil {
			if err == io.EOF {
				return nil, errors.New("file shrank while being read")
			}
			return nil, err
		}
		for b := int64(0); b < n; b += BlockSize {
			out = hash(out, buf[b:min(b+BlockSize, n)])
		}
		off += n
	}
	return out, nil
}

// writeFrame writes v as a length-prefixed JSON frame.
func writeFrame(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], uint32(len(b)))
	if _, err := w.Write(append(hdr[:], b...)); err != nil {
		return err
	}
	return nil
}

// readFrame reads a frame written by writeFrame, at most limit bytes.
func readFrame(r io.Reader, limit int, v any) error {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return err
	}
	n := int(binary.BigEndian.Uint32(hdr[:]))
	if n > limit {
		return fmt.Errorf("message of %d bytes exceeds the limit of %d", n, limit)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	return json.Unmarshal(b, v)
}

// futimens sets the modification time of an open file (nanoseconds),
// leaving its access time.
func futimens(f *os.File, mtimeNs int64) error {
	ts := [2]unix.Timespec{{Nsec: unix.UTIME_OMIT}, unix.NsecToTimespec(mtimeNs)}
	// utimensat(fd, NULL, ts, 0) is futimens(3).
	_, _, e := unix.Syscall6(unix.SYS_UTIMENSAT, f.Fd(), 0, uintptr(unsafe.Pointer(&ts[0])), 0, 0, 0)
	if e != 0 {
		return e
	}
	return nil
}
