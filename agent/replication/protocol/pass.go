package protocol

import (
	"context"
	"net"
	"time"

	"github.com/livemigrate/livemigrate/agent/replication/transport"
)

// SendOptions configure one pass from a source directory to a receiver,
// whichever request carries it (package rsync: Send, Repair, Verify; this
// package: SendTar, SendBlockDelta). Each sender says which fields it uses.
type SendOptions struct {
	// SourceDir is the directory whose content is replicated.
	SourceDir string
	// Dial opens an authenticated connection to the receiver.
	Dial func(ctx context.Context) (net.Conn, error)
	// RsyncPath is the rsync binary; "rsync" from PATH when empty.
	RsyncPath string
	// BandwidthLimit caps the bytes per second sent through the tunnel
	// (Go-side token bucket); 0 means unlimited.
	BandwidthLimit int64
	// RsyncBwLimitKiB is passed as --bwlimit (KiB/s) when > 0.
	RsyncBwLimitKiB int64
	// BlockSize forces rsync's delta block size when > 0.
	BlockSize int
	// DetectSparse passes -S only when the source holds a sparse file
	// (rsync.HasSparseFiles walks the tree first). Set it for the first,
	// full pass, where -S is expensive; other passes always get -S: they
	// write little, so the zero scan costs little, and the walk would add to
	// their time (the final pass runs under freeze).
	DetectSparse bool
	// AllowVanished treats rsync exit code 24 (source files vanished while
	// being read) as success; set for pre-copy rounds only.
	AllowVanished bool
	// IOTimeout is rsync's --timeout; 0 means 300s.
	IOTimeout time.Duration
	// Counter, when set, accumulates the bytes on the wire.
	Counter *transport.Counter
	// OnProgress receives progress updates.
	OnProgress func(Progress)
}

// Result describes a finished pass.
type Result struct {
	Stats Stats
	// WireSent and WireReceived are the bytes that crossed the tunnel.
	WireSent, WireReceived int64
	Duration               time.Duration
}

// Progress is one update of a running pass (for rsync, one
// `--info=progress2` line).
type Progress struct {
	// Bytes is the size of the file data processed so far (rsync counts
	// matched and literal data alike).
	Bytes int64
	// Percent of the total file size.
	Percent int
	// Rate as rsync prints it (e.g. "12.34MB/s").
	Rate string
	// Transferred files so far (xfr#) and files still to check.
	Transferred int64
	ToCheck     int64
	TotalFiles  int64
}

// Stats sum up a finished pass, counted as rsync's `--info=stats2` counts
// them.
type Stats struct {
	Files            int64
	CreatedFiles     int64
	DeletedFiles     int64
	TransferredFiles int64
	TotalFileSize    int64
	TransferredSize  int64
	LiteralData      int64
	MatchedData      int64
	BytesSent        int64
	BytesReceived    int64
}
