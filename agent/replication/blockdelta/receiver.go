package blockdelta

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/livemigrate/livemigrate/agent/replication/manifest"
)

// indexRequest lists the files to index.
type indexRequest struct {
	Paths []string
}

// chunk is the header of one message of the delta stream; DataLen bytes of
// block data follow it.
type chunk struct {
	Path string `json:",omitempty"`
	// End marks the end of the stream.
	End bool `json:",omitempty"`
	// Expect is the target identity the sender's index describes; the
	// receiver refuses to write a file whose identity differs.
	Expect manifest.Identity
	// Size, Mode (permission, set-id and sticky bits; the receiver clears
	// the set-id bits), Uid, Gid and MtimeNs are the file's after the
	// delta.
	Size     int64
	Mode     uint32
	Uid, Gid uint32
	MtimeNs  int64
	// Blocks are the indexes of the blocks carried, ascending.
	Blocks  []int64 `json:",omitempty"`
	DataLen int64   `json:",omitempty"`
	// Last is set on a file's last message: apply the metadata, sync, and
	// reply.
	Last bool `json:",omitempty"`
}

// reply is the receiver's answer to a file (or to the end of the stream).
type reply struct {
	Path string `json:",omitempty"`
	// Hashes are those of the blocks written, read back after fsync, in
	// the order they were sent.
	Hashes []byte `json:",omitempty"`
	// Target is the file's identity after the delta.
	Target   manifest.Identity
	Uid, Gid uint32
	Nlink    uint64
	Err      string `json:",omitempty"`
	End      bool   `json:",omitempty"`
	// Manifest is the target's, taken after the last file (End).
	Manifest *manifest.Manifest `json:",omitempty"`
}

// Stats counts what a delta wrote.
type Stats struct {
	Files  int64
	Blocks int64
	Bytes  int64
}

// indexBudget is MaxIndexBytes (tests lower it).
var indexBudget int64 = MaxIndexBytes

// ServeIndex answers an index request read from r (the files to index,
// relative to dest) with one FileIndex per file on w. A file that cannot be
// indexed (refused path, not a regular file, vanished, or its hashes beyond
// what is left of MaxIndexBytes for the request) gets Err set; the sender
// then has no index for it.
func ServeIndex(ctx context.Context, dest string, r io.Reader, w io.Writer) error {
	var req indexRequest
	if err := readFrame(r, maxRequest, &req); err != nil {
		return fmt.Errorf("reading the index request: %w", err)
	}
	root, err := os.OpenRoot(dest)
	if err != nil {
		return err
	}
	defer root.Close()
	buf := make([]byte, chunkBlocks*BlockSize)
	budget := indexBudget
	for _, p := range req.Paths {
		if err := ctx.Err(); err != nil {
			return err
		}
		fi := indexFile(root, p, buf, &budget)
		if err := writeFrame(w, fi); err != nil {
			return err
		}
	}
	return writeFrame(w, &FileIndex{})
}

// indexFile hashes p when its hashes fit in budget, which it lowers by
// their size.
func indexFile(root *os.Root, p string, buf []byte, budget *int64) *FileIndex {
	fi := &FileIndex{Path: p}
	f, st, err := openRegular(root, p, os.O_RDONLY)
	if err != nil {
		fi.Err = err.Error()
		return fi
	}
	defer f.Close()
	need := Blocks(st.Size) * HashSize
	if need > *budget {
		fi.Err = fmt.Sprintf("file of %d bytes not indexed: its %d bytes of block hashes exceed the %d left of the request's limit (%d)",
			st.Size, need, *budget, int64(MaxIndexBytes))
		return fi
	}
	*budget -= need
	fi.Before = identity(st)
	if fi.Hashes, err = hashFile(f, st.Size, buf); err != nil {
		fi.Err = err.Error()
		return fi
	}
	var after unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &after); err != nil {
		fi.Err = err.Error()
		return fi
	}
	fi.After = identity(&after)
	return fi
}

// setIDBits are the set-user-ID and set-group-ID bits, which the receiver
// never sets on a file it writes (as the rsync and tar receivers): a set-id
// executable written by a root receiver would hand its owner's rights to
// anyone who can run it in a pod mounting the volume.
const setIDBits = unix.S_ISUID | unix.S_ISGID

// ErrDiskFull wraps a write that failed because the target is full.
var ErrDiskFull = errors.New("target volume is full (No space left on device)")

// ApplyError is a refused or failed delta; Path names the file.
type ApplyError struct {
	Path string
	Err  error
}

func (e *ApplyError) Error() string {
	if e.Path == "" {
		return "block delta: " + e.Err.Error()
	}
	p := e.Path
	if len(p) > 256 {
		p = p[:256] + "…"
	}
	return fmt.Sprintf("block delta of %q: %v", p, e.Err)
}

func (e *ApplyError) Unwrap() error { return e.Err }

// Apply reads a delta stream (Send) from r, writes it into the existing
// files beneath dest and answers on w: per file the read-back hashes of the
// blocks written and the file's new identity, and after the last file the
// target's manifest. See the package documentation for what it accepts. On
// a refusal or a failure it answers with the error and returns it.
func Apply(ctx context.Context, dest string, r io.Reader, w io.Writer) (Stats, error) {
	a := &applier{buf: make([]byte, chunkBlocks*BlockSize)}
	err := a.run(ctx, dest, r, w)
	if err != nil {
		if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
			err = fmt.Errorf("%w: %w", ErrDiskFull, err)
		}
		err = &ApplyError{Path: a.path, Err: err}
		_ = writeFrame(w, &reply{Err: err.Error(), End: true})
	}
	return a.stats, err
}

type applier struct {
	stats Stats
	buf   []byte
	// the file being written
	path    string
	f       *os.File
	hdr     chunk
	written []int64
	next    int64 // lowest block index the next message may carry
	seen    map[string]bool
}

func (a *applier) run(ctx context.Context, dest string, r io.Reader, w io.Writer) error {
	root, err := os.OpenRoot(dest)
	if err != nil {
		return err
	}
	defer root.Close()
	a.seen = map[string]bool{}
	defer func() {
		if a.f != nil {
			_ = a.f.Close()
		}
	}()
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		var c chunk
		if err := readFrame(r, maxHeader, &c); err != nil {
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				return errors.New("stream ended before its end mark (truncated)")
			}
			return fmt.Errorf("reading the stream: %w", err)
		}
		if c.End {
			if a.f != nil {
				return errors.New("stream ended in the middle of a file")
			}
			a.path = ""
			m, err := manifest.Walk(dest)
			if err != nil {
				return err
			}
			return writeFrame(w, &reply{End: true, Manifest: &m})
		}
		if a.f == nil {
			if err := a.open(root, c); err != nil {
				return err
			}
		} else if c.Path != a.path || c.Size != a.hdr.Size {
			return errors.New("a file's messages must be contiguous and carry the same size")
		}
		if err := a.write(r, c); err != nil {
			return err
		}
		if c.Last {
			rep, err := a.finish(c)
			if err != nil {
				return err
			}
			if err := writeFrame(w, rep); err != nil {
				return err
			}
		}
	}
}

// open opens the next file for writing, checking that it is what the sender
// indexed.
func (a *applier) open(root *os.Root, c chunk) error {
	a.path = c.Path
	if a.seen[c.Path] {
		return errors.New("file named twice")
	}
	a.seen[c.Path] = true
	if c.Size < 0 || c.Size > MaxFileSize {
		return fmt.Errorf("bad size %d (at most %d)", c.Size, int64(MaxFileSize))
	}
	if c.Mode&^0o7777 != 0 {
		return fmt.Errorf("bad mode %o", c.Mode)
	}
	f, st, err := openRegular(root, c.Path, os.O_RDWR)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrNotApplicable, err)
	}
	fail := func(err error) error { _ = f.Close(); return fmt.Errorf("%w: %w", ErrNotApplicable, err) }
	if st.Nlink != 1 {
		return fail(fmt.Errorf("the target file has %d links", st.Nlink))
	}
	if identity(st) != c.Expect {
		return fail(errors.New("the target file changed since it was indexed"))
	}
	if x, err := hasXattrs(f); err != nil || x {
		return fail(fmt.Errorf("the target file has extended attributes or ACLs (%v)", err))
	}
	a.f, a.hdr, a.written, a.next = f, c, a.written[:0], 0
	return nil
}

// write checks one message's blocks and writes them in place.
func (a *applier) write(r io.Reader, c chunk) error {
	var want int64
	nb := Blocks(c.Size)
	for _, b := range c.Blocks {
		if b < a.next || b >= nb {
			return fmt.Errorf("block %d out of order or beyond the file's size", b)
		}
		a.next = b + 1
		want += blockLen(c.Size, b)
	}
	if c.DataLen != want || want > int64(len(a.buf)) {
		return fmt.Errorf("message carries %d bytes of data for blocks of %d", c.DataLen, want)
	}
	data := a.buf[:want]
	if _, err := io.ReadFull(r, data); err != nil {
		return errors.New("stream ended in the middle of a message (truncated)")
	}
	for _, b := range c.Blocks {
		l := blockLen(c.Size, b)
		if _, err := a.f.WriteAt(data[:l], b*BlockSize); err != nil {
			return err
		}
		data = data[l:]
		a.written = append(a.written, b)
		a.stats.Blocks++
		a.stats.Bytes += l
	}
	return nil
}

// finish applies size, owner, mode and time, syncs the file, and reads back
// the blocks written.
func (a *applier) finish(c chunk) (*reply, error) {
	f := a.f
	a.f = nil
	defer f.Close()
	fd := int(f.Fd())
	if err := f.Truncate(c.Size); err != nil {
		return nil, err
	}
	if err := unix.Fchown(fd, int(c.Uid), int(c.Gid)); err != nil {
		return nil, err
	}
	// After chown, which clears set-id bits; they are never set again
	// (setIDBits).
	if err := unix.Fchmod(fd, c.Mode&^setIDBits); err != nil {
		return nil, err
	}
	if err := futimens(f, c.MtimeNs); err != nil {
		return nil, err
	}
	if err := f.Sync(); err != nil {
		return nil, err
	}
	rep := &reply{Path: a.path, Hashes: make([]byte, 0, len(a.written)*HashSize)}
	for _, b := range a.written {
		l := blockLen(c.Size, b)
		if _, err := f.ReadAt(a.buf[:l], b*BlockSize); err != nil {
			return nil, fmt.Errorf("reading back block %d: %w", b, err)
		}
		rep.Hashes = hash(rep.Hashes, a.buf[:l])
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, err
	}
	rep.Target, rep.Uid, rep.Gid, rep.Nlink = identity(&st), st.Uid, st.Gid, st.Nlink
	a.stats.Files++
	return rep, nil
}
