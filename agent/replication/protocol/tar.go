package protocol

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"golang.org/x/time/rate"

	"github.com/livemigrate/livemigrate/agent/replication/tarstream"
	"github.com/livemigrate/livemigrate/agent/replication/transport"
)

// ErrTarNotApplicable is returned by SendTar when the first pass cannot go as
// a tar stream (the target is not empty, or the source holds what the stream
// does not carry); the caller runs an rsync pass instead. Nothing was
// written to the target.
var ErrTarNotApplicable = errors.New("first pass cannot use the tar stream")

// serveTar extracts one tar stream into the (empty) target: the first pass
// without rsync (package tarstream). The reply line tells the sender the
// outcome; on a failure the receiver keeps reading (bounded) so that the
// sender sees the reply rather than a reset connection.
func (r *Receiver) serveTar(ctx context.Context, conn net.Conn) error {
	ents, err := os.ReadDir(r.DestDir)
	if err != nil {
		return fmt.Errorf("reading target directory: %w", err)
	}
	if len(ents) > 0 {
		_, err := io.WriteString(conn, TarRefused+"target not empty\n")
		return err
	}
	if _, err := io.WriteString(conn, TarReady); err != nil {
		return err
	}
	counter := r.counter()
	cr := &countingReader{r: conn, n: counter}
	_, err = tarstream.Extract(ctx, r.DestDir, cr)
	if err != nil {
		if errors.Is(err, tarstream.ErrDiskFull) {
			err = &Error{ExitCode: -1, DiskFull: true, Output: err.Error(), Op: "tar stream failed", Err: err}
		}
		msg := strings.ReplaceAll(err.Error(), "\n", " ")
		if len(msg) > MaxReplyLen-len(ReplyError)-1 {
			msg = msg[:MaxReplyLen-len(ReplyError)-1]
		}
		_, _ = io.WriteString(conn, ReplyError+msg+"\n")
		drain(conn)
		return err
	}
	_, err = io.WriteString(conn, ReplyOK)
	return err
}

type countingReader struct {
	r io.Reader
	n *transport.Counter
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Received.Add(int64(n))
	return n, err
}

// tunnelWriter counts and rate-limits what is written to the tunnel.
type tunnelWriter struct {
	ctx context.Context
	w   io.Writer
	lim *rate.Limiter
	n   *transport.Counter
}

func (t *tunnelWriter) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		chunk := p
		if t.lim != nil && len(chunk) > t.lim.Burst() {
			chunk = chunk[:t.lim.Burst()]
		}
		if t.lim != nil {
			if err := t.lim.WaitN(t.ctx, len(chunk)); err != nil {
				return written, err
			}
		}
		n, err := t.w.Write(chunk)
		written += n
		t.n.Sent.Add(int64(n))
		if err != nil {
			return written, err
		}
		p = p[n:]
	}
	return written, nil
}

// SendTar runs the first pass as a tar stream (package tarstream) when the
// receiver's target is empty and the source holds only what the stream
// carries; otherwise it returns an error wrapping ErrTarNotApplicable and the
// caller runs rsync. Options used: SourceDir, Dial, BandwidthLimit, Counter,
// OnProgress. The result's Stats count as an rsync full pass would: every
// file created and its data literal.
func SendTar(ctx context.Context, opts SendOptions) (Result, error) {
	start := time.Now()
	if opts.Dial == nil {
		return Result{}, errors.New("no dialer")
	}
	st, err := os.Stat(opts.SourceDir)
	if err != nil {
		return Result{}, fmt.Errorf("source: %w", err)
	}
	if !st.IsDir() {
		return Result{}, fmt.Errorf("source %q is not a directory", opts.SourceDir)
	}
	entries, err := tarstream.Scan(opts.SourceDir)
	if err != nil {
		if errors.Is(err, tarstream.ErrUnsupported) {
			return Result{}, fmt.Errorf("%w: %w", ErrTarNotApplicable, err)
		}
		return Result{}, fmt.Errorf("scanning source: %w", err)
	}
	var total int64
	for _, e := range entries {
		total += e.Size()
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	conn, err := opts.Dial(ctx)
	if err != nil {
		return Result{}, err
	}
	defer conn.Close()
	go func() {
		<-ctx.Done()
		_ = conn.Close()
	}()
	counter := opts.Counter
	if counter == nil {
		counter = &transport.Counter{}
	}
	sent0, recv0 := counter.Sent.Load(), counter.Received.Load()
	if err := WriteRequest(conn, Tar); err != nil {
		return Result{}, fmt.Errorf("sending request: %w", err)
	}
	br := bufio.NewReaderSize(&countingReader{r: conn, n: counter}, 256)
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	line, err := br.ReadString('\n')
	_ = conn.SetReadDeadline(time.Time{})
	if err != nil {
		return Result{}, fmt.Errorf("receiver did not answer the tar request: %w", err)
	}
	if line != TarReady {
		if rest, ok := strings.CutPrefix(line, TarRefused); ok {
			return Result{}, fmt.Errorf("%w: receiver: %s", ErrTarNotApplicable, strings.TrimSpace(rest))
		}
		return Result{}, fmt.Errorf("receiver answered %q to the tar request", strings.TrimSpace(line))
	}
	// The reply comes after the stream, or early when the receiver fails.
	reply := make(chan string, 1)
	go func() {
		l, err := br.ReadString('\n')
		if err != nil && l == "" {
			l = "connection closed: " + err.Error()
		}
		reply <- l
	}()
	w := &tunnelWriter{ctx: ctx, w: conn, lim: transport.NewLimiter(opts.BandwidthLimit), n: counter}
	var wopts tarstream.WriteOptions
	if opts.OnProgress != nil {
		wopts.OnData = func(data int64) {
			p := Progress{Bytes: data, TotalFiles: int64(len(entries))}
			if total > 0 {
				p.Percent = int(data * 100 / total)
			}
			opts.OnProgress(p)
		}
	}
	stats, werr := tarstream.Write(ctx, w, opts.SourceDir, entries, wopts)
	var msg string
	if werr != nil {
		// The receiver may have failed first: its reply says why.
		select {
		case msg = <-reply:
		case <-time.After(10 * time.Second):
		}
	} else {
		select {
		case msg = <-reply:
		case <-ctx.Done():
		}
	}
	res := Result{
		Stats: Stats{Files: stats.Entries, CreatedFiles: stats.Entries, TransferredFiles: stats.Files, TotalFileSize: stats.Size,
			TransferredSize: stats.Size, LiteralData: stats.Data},
		WireSent:     counter.Sent.Load() - sent0,
		WireReceived: counter.Received.Load() - recv0,
		Duration:     time.Since(start),
	}
	if ctx.Err() != nil {
		return res, fmt.Errorf("tar stream interrupted: %w", ctx.Err())
	}
	if rest, ok := strings.CutPrefix(msg, ReplyError); ok {
		rest = strings.TrimSpace(rest)
		return res, &Error{ExitCode: -1, Output: "receiver: " + rest, Op: "tar stream failed",
			DiskFull: strings.Contains(rest, "No space left on device") || strings.Contains(rest, "Disk quota exceeded"),
			Err:      errors.New("tar stream failed on the receiver")}
	}
	if werr != nil {
		return res, fmt.Errorf("tar stream: %w", werr)
	}
	if msg != ReplyOK {
		return res, fmt.Errorf("tar stream: receiver did not confirm: %q", strings.TrimSpace(msg))
	}
	return res, nil
}
