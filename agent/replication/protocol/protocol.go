package protocol

import (
	"errors"
	"fmt"
	"io"
)

// Version opens every request line.
const Version = "LIVEMIGRATE-REPLICATION/1"

// Request is what a sender asks of a receiver on one connection.
type Request string

// The requests of the protocol.
const (
	// Rsync runs a single-use rsync daemon, chrooted into the target, on
	// the connection.
	Rsync Request = "rsync"
	// Status answers the result of the last transfer: "ok", or why the
	// receiving side failed (e.g. a full volume), then closes.
	Status Request = "status"
	// Tar carries a first pass as a tar stream (package tarstream) into
	// the target, which must be empty; see the Tar replies.
	Tar Request = "tar"
	// Manifest asks for the identities of the target's entries (package
	// manifest), answered ReplyOK and the encoded manifest or ReplyError.
	Manifest Request = "manifest"
	// BlockIndex asks for the block hashes of target files (package
	// blockdelta), before the freeze.
	BlockIndex Request = "blockindex"
	// BlockDelta carries the final pass as a block delta (package
	// blockdelta) into existing target files.
	BlockDelta Request = "blockdelta"
	// Space asks whether the target has room for the source's data before
	// the first pass: one line "<bytes> <inodes>\n" follows the request
	// line, answered ReplyOK or ReplyError with what is missing.
	Space Request = "space"
)

// requests are the requests a receiver accepts.
var requests = []Request{Rsync, Status, Tar, Manifest, BlockIndex, BlockDelta, Space}

// MaxRequestLen bounds a request line, line break included.
const MaxRequestLen = 64

// Replies of the receiver that open its answer to a Tar or Manifest request.
const (
	// TarReady: the target is empty, send the stream.
	TarReady = "ready\n"
	// TarRefused, followed by the reason and a line break: nothing was
	// written; the sender runs rsync instead.
	TarRefused = "refused "
	// ReplyOK: the request succeeded.
	ReplyOK = "ok\n"
	// ReplyError, followed by the error on one line: the request failed.
	ReplyError = "error "
	// MaxReplyLen bounds a reply line, line break included.
	MaxReplyLen = 4096
)

// ErrUnknownRequest is returned by ReadRequest for a line that is not a
// request of this protocol.
var ErrUnknownRequest = errors.New("unknown request")

// Line is the request line of r.
func (r Request) Line() string { return Version + " " + string(r) + "\n" }

// WriteRequest writes the request line of r.
func WriteRequest(w io.Writer, r Request) error {
	_, err := io.WriteString(w, r.Line())
	return err
}

// ReadRequest reads a request line, one byte at a time so that nothing
// after it is consumed, and at most MaxRequestLen bytes.
func ReadRequest(r io.Reader) (Request, error) {
	line := make([]byte, 0, MaxRequestLen)
	b := make([]byte, 1)
	for len(line) < cap(line) {
		if _, err := io.ReadFull(r, b); err != nil {
			return "", fmt.Errorf("reading request: %w", err)
		}
		line = append(line, b[0])
		if b[0] != '\n' {
			continue
		}
		for _, req := range requests {
			if string(line) == req.Line() {
				return req, nil
			}
		}
		return "", ErrUnknownRequest
	}
	return "", ErrUnknownRequest
}
