// Package rsync drives Debian's rsync binary on both ends of a volume
// replication, tunnelled through the mutual-TLS connection of package
// transport: the rsync request of the replication protocol (package
// protocol, which serves and sends the other requests and holds the types
// of a pass). Why each option is chosen, the tunnel and the measurements
// are in docs/replication.md ("Delta transfer").
//
// # Receiver
//
// For a connection whose request is rsync, protocol.Receiver calls
// Daemon.ServeRsync, which starts
//
//	rsync --server --daemon --config=<generated> .
//
// with the connection as its standard input and output: a single-use rsync
// daemon with a fixed argument list, so the sender never names a command.
// The generated configuration (DaemonConfig) has exactly one module,
// "volume", whose path is the target volume directory, with use chroot
// (the kernel confines every path, symlinks included, to the volume;
// symlinks are stored verbatim), write only (a peer cannot read data
// back), uid/gid 0 with numeric ids (ownership kept as numbers),
// list = no, refuse options (RefusedOptions: device nodes and specials,
// compression, preallocation and other options a sender never uses; the
// daemon exits before writing anything), incoming chmod
// (IncomingChmod: no regular file is written with its set-user-ID or
// set-group-ID bit) and a filter on extended attribute names
// (XattrFilter: no file capabilities).
//
// # Sender
//
// Send runs the rsync client with
//
//	rsync -rlptgoHAX[S] --delete --numeric-ids --inplace --no-whole-file
//	      --modify-window=-1 --info=progress2,stats2 --no-h -e <tunnel>
//	      <source>/ livemigrate::volume/
//
// and bridges the remote shell's standard input and output to the TLS
// connection in the agent (pidfd_getfd(2), else a relay through the shell;
// see tunnelRsh), with the rate limiter and byte counters in between. No
// listening socket exists on the source node and no helper binary is
// needed. A full pass with protocol.SendOptions.DetectSparse passes -S
// only when the source holds a file with holes (HasSparseFiles). Exit status 24 (files
// vanished while being read) is success for a pre-copy pass and failure for
// the final pass; after a failed run the sender asks the receiver for the
// receiving side's diagnostics (protocol.FetchStatus). Verify (-c --dry-run --itemize-changes) lists what
// differs by whole-file checksums, VerifyPaths does so for a list of
// entries (--files-from, without --delete), and Repair (--checksum)
// rewrites what differs. Every pass is idempotent: an interrupted pass is
// simply run again. The source is only ever read.
package rsync
