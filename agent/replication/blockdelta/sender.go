package blockdelta

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/livemigrate/livemigrate/agent/replication/manifest"
)

// File is one changed source file to send.
type File struct {
	// Path relative to the tree.
	Path string
	// Source is the file's identity in the source's manifest (taken under
	// freeze); the file read must still have it.
	Source manifest.Identity
	// Index is the target file's, valid for the target's current identity
	// (FileIndex.Valid).
	Index *FileIndex
}

// FileResult is a file the delta made equal to the source.
type FileResult struct {
	Path string
	// Source and Target are the identities of both ends after the delta.
	Source, Target manifest.Identity
	// Hashes of the file's blocks (the source's, now also the target's).
	Hashes []byte
	// Blocks of the file, SentBlocks of them sent.
	Blocks, SentBlocks int64
}

// Result of Send.
type Result struct {
	Files []FileResult
	// Manifest is the target's, taken by the receiver after the last file.
	Manifest manifest.Manifest
	// Literal is the file data sent, Matched the data of the changed files
	// that the target already had.
	Literal, Matched int64
}

// MismatchError is returned when the target does not equal the source after
// the delta (a block read back differently, metadata not applied).
type MismatchError struct {
	Path   string
	Reason string
}

func (e *MismatchError) Error() string {
	return fmt.Sprintf("block delta: target file %q differs from the source: %s", e.Path, e.Reason)
}

// ReceiverError is an error the receiver answered with.
type ReceiverError struct{ Message string }

func (e *ReceiverError) Error() string { return "receiver: " + e.Message }

// SendOptions tune Send.
type SendOptions struct {
	// Workers read and hash source files in parallel; min(GOMAXPROCS, 4)
	// when 0.
	Workers int
}

type job struct {
	f      File
	chunks chan outChunk
	done   chan struct{}
	// Set by the worker before done is closed.
	hashes   []byte
	sent     []int64
	uid, gid uint32
	literal  int64
	err      error
}

type outChunk struct {
	hdr  chunk
	data []byte
}

// Send streams the blocks of files (paths relative to srcDir) that differ
// from their target index to the receiver (w; Apply on the other end),
// reads its answers from r and checks them: for every block of every file,
// the source's hash equals the hash the receiver read back after writing
// it, or, for a block not sent, the index's hash; size, mode, owner and
// modification time equal the source's; the receiver wrote the inode that
// was indexed. It returns the target's manifest taken after the last file
// for the caller to check the rest of the tree against its records.
//
// A source file that differs from its manifest identity, has more than one
// link, holes or extended attributes fails the delta with an error wrapping
// ErrNotApplicable; a difference after writing with a *MismatchError. The
// caller closes the connection after Send returns.
func Send(ctx context.Context, srcDir string, files []File, r io.Reader, w io.Writer, opts SendOptions) (Result, error) {
	var res Result
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	root, err := os.OpenRoot(srcDir)
	if err != nil {
		return res, fmt.Errorf("source: %w", err)
	}
	defer root.Close()
	jobs := make([]*job, len(files))
	for i, f := range files {
		if !f.Index.Valid(f.Index.After) {
			return res, fmt.Errorf("%w: %s has no valid index", ErrNotApplicable, f.Path)
		}
		jobs[i] = &job{f: f, chunks: make(chan outChunk, 2), done: make(chan struct{})}
	}
	workers := opts.Workers
	if workers <= 0 {
		workers = min(runtime.GOMAXPROCS(0), 4)
	}
	var next atomic.Int64
	for range min(workers, max(len(jobs), 1)) {
		go func() {
			buf := make([]byte, chunkBlocks*BlockSize)
			for {
				i := int(next.Add(1) - 1)
				if i >= len(jobs) {
					return
				}
				j := jobs[i]
				j.err = readFile(ctx, root, j, buf)
				close(j.chunks)
				close(j.done)
			}
		}()
	}
	encErr := make(chan error, 1)
	go func() { encErr <- encode(ctx, w, jobs) }()
	replies := make(chan reply)
	readErr := make(chan error, 1)
	go func() {
		for {
			var rep reply
			if err := readFrame(r, maxReply, &rep); err != nil {
				readErr <- err
				return
			}
			select {
			case replies <- rep:
			case <-ctx.Done():
				return
			}
			if rep.End {
				return
			}
		}
	}()
	for i := 0; ; {
		var rep reply
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case err := <-encErr:
			if err != nil {
				return res, err
			}
			encErr = nil // the stream is complete; wait for the answers
			continue
		case err := <-readErr:
			// The encoder may know why (a source file changed).
			select {
			case e := <-encErr:
				if e != nil {
					return res, e
				}
			default:
			}
			return res, fmt.Errorf("reading the receiver's answer: %w", err)
		case rep = <-replies:
		}
		if rep.Err != "" {
			return res, &ReceiverError{Message: rep.Err}
		}
		if i == len(jobs) {
			if !rep.End || rep.Manifest == nil {
				return res, errors.New("receiver did not end the delta with its manifest")
			}
			res.Manifest = *rep.Manifest
			return res, nil
		}
		if rep.End {
			return res, fmt.Errorf("receiver ended the delta after %d of %d files", i, len(jobs))
		}
		j := jobs[i]
		<-j.done
		if j.err != nil {
			return res, j.err
		}
		if err := check(j, &rep); err != nil {
			return res, err
		}
		res.Files = append(res.Files, FileResult{Path: j.f.Path, Source: j.f.Source, Target: rep.Target, Hashes: j.hashes,
			Blocks: Blocks(j.f.Source.Size), SentBlocks: int64(len(j.sent))})
		res.Literal += j.literal
		res.Matched += j.f.Source.Size - j.literal
		i++
	}
}

// encode writes the jobs' messages in file order, then the end mark.
func encode(ctx context.Context, w io.Writer, jobs []*job) error {
	for _, j := range jobs {
		for c := range j.chunks {
			if err := writeFrame(w, &c.hdr); err != nil {
				return fmt.Errorf("sending the delta: %w", err)
			}
			if len(c.data) > 0 {
				if _, err := w.Write(c.data); err != nil {
					return fmt.Errorf("sending the delta: %w", err)
				}
			}
		}
		<-j.done
		if j.err != nil {
			return j.err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	return writeFrame(w, &chunk{End: true})
}

// readFile reads and hashes one source file and queues the blocks that
// differ from the target's index.
func readFile(ctx context.Context, root *os.Root, j *job, buf []byte) error {
	f, st, err := openRegular(root, j.f.Path, os.O_RDONLY)
	if err != nil {
		return fmt.Errorf("%w: source %s: %w", ErrNotApplicable, j.f.Path, err)
	}
	defer f.Close()
	switch {
	case identity(st) != j.f.Source:
		return fmt.Errorf("%w: source %s changed since its manifest", ErrNotApplicable, j.f.Path)
	case st.Nlink != 1:
		return fmt.Errorf("%w: source %s has %d links", ErrNotApplicable, j.f.Path, st.Nlink)
	case st.Blocks*512 < st.Size&^(BlockSize-1):
		return fmt.Errorf("%w: source %s has holes", ErrNotApplicable, j.f.Path)
	}
	if x, err := hasXattrs(f); err != nil || x {
		return fmt.Errorf("%w: source %s has extended attributes or ACLs (%v)", ErrNotApplicable, j.f.Path, err)
	}
	j.uid, j.gid = st.Uid, st.Gid
	idx := j.f.Index
	oldSize, oldBlocks := idx.After.Size, int64(len(idx.Hashes)/HashSize)
	size := st.Size
	hdr := chunk{Path: j.f.Path, Expect: idx.After, Size: size, Mode: st.Mode & 0o7777, Uid: st.Uid, Gid: st.Gid, MtimeNs: st.Mtim.Nano()}
	cur := outChunk{hdr: hdr}
	emit := func(last bool) error {
		cur.hdr.Last, cur.hdr.DataLen = last, int64(len(cur.data))
		select {
		case j.chunks <- cur:
		case <-ctx.Done():
			return ctx.Err()
		}
		cur = outChunk{hdr: hdr}
		return nil
	}
	j.hashes = make([]byte, 0, Blocks(size)*HashSize)
	for off := int64(0); off < size; {
		n := min(int64(len(buf)), size-off)
		if _, err := f.ReadAt(buf[:n], off); err != nil {
			if err == io.EOF {
				return fmt.Errorf("%w: source %s shrank while being read", ErrNotApplicable, j.f.Path)
			}
			return fmt.Errorf("reading source %s: %w", j.f.Path, err)
		}
		for k := int64(0); k < n; k += BlockSize {
			b := (off + k) / BlockSize
			data := buf[k:min(k+BlockSize, n)]
			j.hashes = hash(j.hashes, data)
			h := j.hashes[b*HashSize:]
			if b < oldBlocks && blockLen(oldSize, b) == int64(len(data)) && bytes.Equal(idx.Hashes[b*HashSize:(b+1)*HashSize], h) {
				continue
			}
			if cur.data == nil {
				cur.data = make([]byte, 0, chunkBlocks*BlockSize)
			}
			cur.hdr.Blocks = append(cur.hdr.Blocks, b)
			cur.data = append(cur.data, data...)
			j.sent = append(j.sent, b)
			j.literal += int64(len(data))
			if len(cur.hdr.Blocks) == chunkBlocks {
				if err := emit(false); err != nil {
					return err
				}
			}
		}
		off += n
	}
	var after unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &after); err != nil {
		return err
	}
	if identity(&after) != j.f.Source {
		return fmt.Errorf("%w: source %s changed while being read", ErrNotApplicable, j.f.Path)
	}
	return emit(true)
}

// check compares the receiver's answer for a file with the source.
func check(j *job, rep *reply) error {
	mismatch := func(format string, a ...any) error {
		return &MismatchError{Path: j.f.Path, Reason: fmt.Sprintf(format, a...)}
	}
	if rep.Path != j.f.Path {
		return mismatch("the receiver answered for %q", rep.Path)
	}
	if len(rep.Hashes) != len(j.sent)*HashSize {
		return mismatch("the receiver read back %d blocks, %d were sent", len(rep.Hashes)/HashSize, len(j.sent))
	}
	for k, b := range j.sent {
		if !bytes.Equal(rep.Hashes[k*HashSize:(k+1)*HashSize], j.hashes[b*HashSize:(b+1)*HashSize]) {
			return mismatch("block %d reads back different from the source", b)
		}
	}
	t, s, idx := rep.Target, j.f.Source, j.f.Index.After
	switch {
	case t.Dev != idx.Dev || t.Ino != idx.Ino:
		return mismatch("the receiver wrote another inode")
	case t.Size != s.Size:
		return mismatch("size %d, source %d", t.Size, s.Size)
	case t.Mode != s.Mode&^setIDBits:
		return mismatch("mode %o, source %o (set-id bits cleared)", t.Mode, s.Mode&^setIDBits)
	case t.MtimeNs != s.MtimeNs:
		return mismatch("modification time %d, source %d", t.MtimeNs, s.MtimeNs)
	case rep.Uid != j.uid || rep.Gid != j.gid:
		return mismatch("owner %d:%d, source %d:%d", rep.Uid, rep.Gid, j.uid, j.gid)
	case rep.Nlink != 1:
		return mismatch("%d links", rep.Nlink)
	}
	return nil
}

// RequestIndex asks for the block index of paths (relative to the target)
// on w and reads the answer from r (ServeIndex on the other end), calling fn
// for each file in turn.
func RequestIndex(r io.Reader, w io.Writer, paths []string, fn func(*FileIndex) error) error {
	if err := writeFrame(w, &indexRequest{Paths: paths}); err != nil {
		return fmt.Errorf("sending the index request: %w", err)
	}
	for i := 0; ; i++ {
		fi := &FileIndex{}
		if err := readFrame(r, maxIndexReply, fi); err != nil {
			return fmt.Errorf("reading the receiver's index: %w", err)
		}
		if fi.Path == "" {
			if i != len(paths) {
				return fmt.Errorf("receiver indexed %d of %d files", i, len(paths))
			}
			return nil
		}
		if i >= len(paths) || fi.Path != paths[i] {
			return fmt.Errorf("receiver answered with an index of %q", fi.Path)
		}
		if err := fn(fi); err != nil {
			return err
		}
	}
}
