package protocol

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/livemigrate/livemigrate/agent/replication/internal/fswalk"
)

// Usage is what a tree occupies on its filesystem.
type Usage struct {
	// Bytes allocated to its entries (holes not counted, each inode once).
	Bytes int64
	// Inodes are its entries, each inode once.
	Inodes int64
}

// TreeUsage adds up what the tree dir occupies: the blocks allocated to
// every inode under it (hard links once) and the number of inodes. Entries
// vanishing during the walk are left out.
func TreeUsage(dir string) (Usage, error) {
	var u Usage
	seen := map[[2]uint64]bool{}
	err := fswalk.Walk(dir, func(_ string, st *unix.Stat_t) error {
		if st.Nlink > 1 && st.Mode&unix.S_IFMT != unix.S_IFDIR {
			k := [2]uint64{st.Dev, st.Ino}
			if seen[k] {
				return nil
			}
			seen[k] = true
		}
		u.Bytes += st.Blocks * 512
		u.Inodes++
		return nil
	})
	return u, err
}

// SpaceError is a target without room for the source's data.
type SpaceError struct {
	// Message is the receiver's explanation: what is needed, what is free.
	Message string
}

func (e *SpaceError) Error() string { return "target volume too small: " + e.Message }

// IsSpaceError reports whether err is a *SpaceError.
func IsSpaceError(err error) bool {
	var se *SpaceError
	return errors.As(err, &se)
}

// CheckSpace asks the receiver whether the target has room for need (the
// source tree's usage, TreeUsage) beside what it holds already: it returns
// a *SpaceError when it has not, nil when it has or when the receiver does
// not know the request (an agent of an earlier version, which closes the
// connection).
func CheckSpace(ctx context.Context, dial func(context.Context) (net.Conn, error), need Usage) error {
	c, err := dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { _ = c.Close() })
	defer stop()
	_ = c.SetDeadline(time.Now().Add(5 * time.Minute))
	if _, err := io.WriteString(c, Space.Line()+strconv.FormatInt(need.Bytes, 10)+" "+strconv.FormatInt(need.Inodes, 10)+"\n"); err != nil {
		return fmt.Errorf("sending request: %w", err)
	}
	line, err := bufio.NewReader(io.LimitReader(c, MaxReplyLen)).ReadString('\n')
	switch {
	case err == io.EOF && line == "":
		return nil // the receiver does not know the request
	case err != nil:
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("reading the receiver's answer: %w", err)
	case line == ReplyOK:
		return nil
	case strings.HasPrefix(line, ReplyError):
		return &SpaceError{Message: strings.TrimSpace(strings.TrimPrefix(line, ReplyError))}
	}
	return fmt.Errorf("unexpected answer to the space request: %q", line)
}

// maxSpaceLine bounds the line that follows a space request.
const maxSpaceLine = 64

// serveSpace answers a space request: the target has room when what its
// filesystem has available for unprivileged writers, plus what the target
// directory holds already (a first pass rewrites it in place), covers the
// source's usage, in bytes and in inodes.
func (r *Receiver) serveSpace(conn net.Conn) error {
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	line := make([]byte, 0, maxSpaceLine)
	b := make([]byte, 1)
	for {
		if _, err := io.ReadFull(conn, b); err != nil {
			return fmt.Errorf("reading the space request: %w", err)
		}
		if b[0] == '\n' {
			break
		}
		if len(line) == maxSpaceLine {
			return errors.New("space request line too long")
		}
		line = append(line, b[0])
	}
	var need Usage
	f := strings.Fields(string(line))
	var e1, e2 error
	if len(f) == 2 {
		need.Bytes, e1 = strconv.ParseInt(f[0], 10, 64)
		need.Inodes, e2 = strconv.ParseInt(f[1], 10, 64)
	}
	if len(f) != 2 || e1 != nil || e2 != nil || need.Bytes < 0 || need.Inodes < 0 {
		_, _ = io.WriteString(conn, ReplyError+"malformed space request\n")
		return fmt.Errorf("malformed space request %q", line)
	}
	msg, err := r.room(need)
	if err != nil {
		_, _ = io.WriteString(conn, ReplyError+"checking the target's free space: "+oneLine(err.Error())+"\n")
		return err
	}
	if msg != "" {
		_, err := io.WriteString(conn, ReplyError+oneLine(msg)+"\n")
		return err
	}
	_, err = io.WriteString(conn, ReplyOK)
	return err
}

// room returns why the target has no room for need, or "".
func (r *Receiver) room(need Usage) (string, error) {
	var fs unix.Statfs_t
	if err := unix.Statfs(r.DestDir, &fs); err != nil {
		return "", err
	}
	held, err := TreeUsage(r.DestDir)
	if err != nil {
		return "", err
	}
	free := int64(fs.Bavail) * fs.Bsize
	if more := need.Bytes - held.Bytes; more > free {
		return fmt.Sprintf("the source's data needs %s, the target holds %s of it and its filesystem has %s available (%s short); "+
			"make the target claim larger or free space on the target node",
			bytesText(need.Bytes), bytesText(held.Bytes), bytesText(free), bytesText(more-free)), nil
	}
	// Filesystems without an inode limit report 0 files.
	if fs.Files > 0 {
		if more := need.Inodes - held.Inodes; more > int64(fs.Ffree) {
			return fmt.Sprintf("the source has %d files and directories, the target holds %d and its filesystem has %d free inodes; "+
				"use a target filesystem with more inodes", need.Inodes, held.Inodes, fs.Ffree), nil
		}
	}
	return "", nil
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if limit := MaxReplyLen - len(ReplyError) - 1; len(s) > limit {
		s = s[:limit]
	}
	return s
}

// bytesText writes n in binary units ("1.5 GiB").
func bytesText(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
