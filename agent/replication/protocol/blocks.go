package protocol

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/livemigrate/livemigrate/agent/replication/blockdelta"
	"github.com/livemigrate/livemigrate/agent/replication/transport"
)

// serveBlocks applies one block delta (package blockdelta) to the target:
// the final pass under freeze when only file content changed.
func (r *Receiver) serveBlocks(ctx context.Context, conn net.Conn) error {
	counter := r.counter()
	cr := bufio.NewReaderSize(&countingReader{r: conn, n: counter}, 64<<10)
	_, err := blockdelta.Apply(ctx, r.DestDir, cr, &countingWriter{w: conn, n: counter})
	if err != nil {
		drain(conn)
	}
	return err
}

type countingWriter struct {
	w io.Writer
	n *transport.Counter
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n.Sent.Add(int64(n))
	return n, err
}

// FetchBlockIndex asks the receiver for the block index (package
// blockdelta) of the target files paths and calls fn for each file in
// turn. The receiver reads the files while the application runs: call it
// before the freeze.
func FetchBlockIndex(ctx context.Context, dial func(context.Context) (net.Conn, error), paths []string, fn func(*blockdelta.FileIndex) error) error {
	c, err := dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { _ = c.Close() })
	defer stop()
	if err := WriteRequest(c, BlockIndex); err != nil {
		return fmt.Errorf("sending request: %w", err)
	}
	err = blockdelta.RequestIndex(bufio.NewReaderSize(c, 64<<10), c, paths, fn)
	if err != nil && ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// SendBlockDelta sends files as a block delta (package blockdelta) and
// checks the target's answers. Options used: SourceDir, Dial,
// BandwidthLimit, Counter. The result's Stats count the changed files as
// transferred, the blocks sent as literal data and the rest of those files
// as matched data.
func SendBlockDelta(ctx context.Context, opts SendOptions, files []blockdelta.File) (Result, blockdelta.Result, error) {
	start := time.Now()
	if opts.Dial == nil {
		return Result{}, blockdelta.Result{}, errors.New("no dialer")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	conn, err := opts.Dial(ctx)
	if err != nil {
		return Result{}, blockdelta.Result{}, err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	counter := opts.Counter
	if counter == nil {
		counter = &transport.Counter{}
	}
	sent0, recv0 := counter.Sent.Load(), counter.Received.Load()
	var res Result
	if err := WriteRequest(conn, BlockDelta); err != nil {
		return res, blockdelta.Result{}, fmt.Errorf("sending request: %w", err)
	}
	w := &tunnelWriter{ctx: ctx, w: conn, lim: transport.NewLimiter(opts.BandwidthLimit), n: counter}
	r := bufio.NewReaderSize(&countingReader{r: conn, n: counter}, 64<<10)
	br, err := blockdelta.Send(ctx, opts.SourceDir, files, r, w, blockdelta.SendOptions{})
	var size int64
	for _, f := range files {
		size += f.Source.Size
	}
	res = Result{
		Stats: Stats{Files: int64(len(files)), TransferredFiles: int64(len(br.Files)), TotalFileSize: size, TransferredSize: size,
			LiteralData: br.Literal, MatchedData: br.Matched},
		WireSent:     counter.Sent.Load() - sent0,
		WireReceived: counter.Received.Load() - recv0,
		Duration:     time.Since(start),
	}
	return res, br, err
}
