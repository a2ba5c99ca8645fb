package engine

import (
	"context"
	"net"

	"github.com/livemigrate/livemigrate/agent/replication/blockdelta"
	"github.com/livemigrate/livemigrate/agent/replication/manifest"
	"github.com/livemigrate/livemigrate/agent/replication/protocol"
	"github.com/livemigrate/livemigrate/agent/replication/rsync"
)

// Peer is the receiver at the other end of a session, as the session drives
// it: every pass, verification and index goes through one of its methods.
// Options carry the source directory, dialer, limits and callbacks of the
// pass (see protocol.SendOptions for which each method uses). The default peer
// (Config.Peer nil) runs rsync and the replication protocol over
// Config.Dial; tests put a fake in its place to drive the session's retry,
// fallback and repair logic.
type Peer interface {
	// Send runs an rsync pass that makes the target like the source.
	Send(ctx context.Context, o protocol.SendOptions) (protocol.Result, error)
	// SendTar streams the source into an empty target; an error wrapping
	// protocol.ErrTarNotApplicable means nothing was sent and rsync must run.
	SendTar(ctx context.Context, o protocol.SendOptions) (protocol.Result, error)
	// Repair rewrites every file whose whole-file checksum differs.
	Repair(ctx context.Context, o protocol.SendOptions) (protocol.Result, error)
	// Verify compares the whole tree by checksum and metadata, writing
	// nothing.
	Verify(ctx context.Context, o protocol.SendOptions) (rsync.VerifyResult, error)
	// VerifyPaths compares the listed entries as Verify does.
	VerifyPaths(ctx context.Context, o protocol.SendOptions, paths []string) (rsync.VerifyResult, error)
	// FetchManifest returns the identities of the target's entries.
	FetchManifest(ctx context.Context) (manifest.Manifest, error)
	// FetchBlockIndex calls fn with the block index of each target file
	// of paths.
	FetchBlockIndex(ctx context.Context, paths []string, fn func(*blockdelta.FileIndex) error) error
	// CheckSpace tells whether the target has room for need (an error
	// wrapping *protocol.SpaceError when it has not).
	CheckSpace(ctx context.Context, need protocol.Usage) error
	// SendBlockDelta sends files as a block delta and checks the target's
	// answers.
	SendBlockDelta(ctx context.Context, o protocol.SendOptions, files []blockdelta.File) (protocol.Result, blockdelta.Result, error)
}

// rsyncPeer is the Peer of a protocol.Receiver reached through dial: its
// passes and verifications run rsync (package rsync), the other requests
// are package protocol's senders.
type rsyncPeer struct {
	dial func(context.Context) (net.Conn, error)
}

var _ Peer = rsyncPeer{}

func (rsyncPeer) Send(ctx context.Context, o protocol.SendOptions) (protocol.Result, error) {
	return rsync.Send(ctx, o)
}

func (rsyncPeer) SendTar(ctx context.Context, o protocol.SendOptions) (protocol.Result, error) {
	return protocol.SendTar(ctx, o)
}

func (rsyncPeer) Repair(ctx context.Context, o protocol.SendOptions) (protocol.Result, error) {
	return rsync.Repair(ctx, o)
}

func (rsyncPeer) Verify(ctx context.Context, o protocol.SendOptions) (rsync.VerifyResult, error) {
	return rsync.Verify(ctx, o)
}

func (rsyncPeer) VerifyPaths(ctx context.Context, o protocol.SendOptions, paths []string) (rsync.VerifyResult, error) {
	return rsync.VerifyPaths(ctx, o, paths)
}

func (p rsyncPeer) FetchManifest(ctx context.Context) (manifest.Manifest, error) {
	return protocol.FetchManifest(ctx, p.dial)
}

func (p rsyncPeer) FetchBlockIndex(ctx context.Context, paths []string, fn func(*blockdelta.FileIndex) error) error {
	return protocol.FetchBlockIndex(ctx, p.dial, paths, fn)
}

func (p rsyncPeer) CheckSpace(ctx context.Context, need protocol.Usage) error {
	return protocol.CheckSpace(ctx, p.dial, need)
}

func (rsyncPeer) SendBlockDelta(ctx context.Context, o protocol.SendOptions, files []blockdelta.File) (protocol.Result, blockdelta.Result, error) {
	return protocol.SendBlockDelta(ctx, o, files)
}
