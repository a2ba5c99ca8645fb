package protocol

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strings"

	"github.com/livemigrate/livemigrate/agent/replication/manifest"
)

// FetchManifest asks the receiver for the identities of the target's
// entries (package manifest).
func FetchManifest(ctx context.Context, dial func(context.Context) (net.Conn, error)) (manifest.Manifest, error) {
	c, err := dial(ctx)
	if err != nil {
		return manifest.Manifest{}, err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { _ = c.Close() })
	defer stop()
	if err := WriteRequest(c, Manifest); err != nil {
		return manifest.Manifest{}, fmt.Errorf("sending request: %w", err)
	}
	br := bufio.NewReader(c)
	line, err := br.ReadString('\n')
	if err != nil {
		return manifest.Manifest{}, fmt.Errorf("reading the receiver's manifest: %w", err)
	}
	if line != ReplyOK {
		return manifest.Manifest{}, fmt.Errorf("receiver's manifest: %s", strings.TrimSpace(line))
	}
	return manifest.Decode(br, 1<<30)
}
