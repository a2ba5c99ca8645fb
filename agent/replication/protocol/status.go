package protocol

import (
	"context"
	"io"
	"net"
	"time"
)

// FetchStatus asks the receiver for the result of its last transfer: "ok",
// why the receiving side failed, or "" when it cannot be asked.
func FetchStatus(ctx context.Context, dial func(context.Context) (net.Conn, error)) string {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	c, err := dial(ctx)
	if err != nil {
		return ""
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(15 * time.Second))
	if err := WriteRequest(c, Status); err != nil {
		return ""
	}
	b, _ := io.ReadAll(io.LimitReader(c, 16*1024))
	return string(b)
}
