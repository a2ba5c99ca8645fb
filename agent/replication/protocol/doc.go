// Package protocol implements LIVEMIGRATE-REPLICATION/1, what a source agent
// and the receiver of a target volume say on a connection: the wire format
// (a request line first, then the exchange that request names), the
// receiver's dispatch (Receiver.ServeConn) and both sides of every request
// except rsync, whose transfer package rsync runs (Daemon on the receiver,
// Send, Repair, Verify on the sender). The package is named for the
// protocol, not for a tool: rsync is one of its seven requests, and the
// types of a pass (SendOptions, Result, Stats, Progress, Error) are the same
// whichever request carries it.
//
// A connection is authenticated before the request is read (package
// transport), carries one request, and ends with it. The request line is one
// of the fixed lines of Request.Line: the sender never names a command or a
// path, and the receiver answers anything else with "unknown request" and
// closes the connection.
//
// # Receiver
//
// For every authenticated connection Receiver.ServeConn reads one request
// line and serves it into DestDir, one transfer at a time:
//
//   - rsync: a single-use rsync daemon chrooted into the target
//     (Receiver.Rsync, package rsync: Daemon);
//   - status: the result of the last transfer (FetchStatus, which package
//     rsync's sender asks after a failed run: why the receiving side
//     failed, e.g. a full volume);
//   - space: whether the target's filesystem has room, in bytes and inodes,
//     for what the source tree occupies beside what the target holds
//     (CheckSpace, before the first pass; a *SpaceError says what is
//     missing);
//   - tar: the first pass into an empty target (SendTar, package
//     tarstream), extracted through an os.Root of the target; refused
//     ("refused target not empty") when the target holds anything;
//   - manifest: the identities of the target's entries (FetchManifest,
//     package manifest), no content;
//   - blockindex: the block hashes of listed target files with their
//     identities before and after hashing (FetchBlockIndex, package
//     blockdelta), no content;
//   - blockdelta: the final pass as a block delta into existing regular
//     files (SendBlockDelta, package blockdelta), answered with the
//     read-back hashes of the blocks written, the files' new identities and
//     the target's manifest.
//
// The tar and block-delta receivers never write a set-user-ID or
// set-group-ID bit of a regular file, as the rsync daemon does not
// (rsync.IncomingChmod). Every sender only ever reads the source.
//
// The wire format (Request, ReadRequest, the replies) depends on nothing
// that serves or sends the requests: it is what both sides agree on. The
// package never imports package rsync; the receiver reaches the rsync
// daemon through the RsyncServer interface.
package protocol
