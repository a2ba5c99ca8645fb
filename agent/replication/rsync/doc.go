// Package rsync drives Debian's rsync binary on both ends of a volume
// replication, tunnelled through the mutual-TLS connection of package
// transport.
//
// # Receiver
//
// For every authenticated connection the receiver starts
//
//	rsync --server --daemon --config=<generated> .
//
// with the connection as its standard input and output: a single-use rsync
// daemon, as `rsync -e <rsh> host::module` would start over ssh. The argument
// list is fixed; the sender never gets to name a command. The generated
// configuration has exactly one module, "volume", whose path is the target
// volume directory, with
//
//   - use chroot = yes: the daemon chroots into the volume before it reads a
//     single file name from the sender, so neither "../" paths nor symlinks
//     planted by an earlier pass (or by the workload) can reach outside the
//     volume; the kernel enforces it, not rsync's own path sanitising.
//     Symlinks are therefore stored verbatim (no munging) and never followed
//     outside the volume.
//   - write only = yes: the module cannot be read from, so a peer holding the
//     credentials cannot pull data out of the target.
//   - uid = 0, gid = 0, numeric ids: ownership is preserved as numbers, as
//     the workload in the target cluster sees the same numeric ids.
//   - list = no: nothing to enumerate.
//
// This mirrors VolSync's rsync-tls mover, where stunnel terminates TLS in
// front of an rsync daemon whose module is the destination PVC; here the
// agent's Go TLS stack takes stunnel's place on both sides, so the credentials
// are checked against the migration UID (package certs) and no TCP port is
// opened for plaintext rsync.
//
// # Sender
//
// The sender runs the rsync client with
//
//	rsync -aHAX[S] --delete --numeric-ids --inplace --no-whole-file
//	      --modify-window=-1 --info=progress2,stats2 --no-h -e <tunnel>
//	      <source>/ livemigrate::volume/
//
// File descriptor 3 of the client (inherited by its remote shell) is one end
// of a Unix socketpair held by the agent. The remote shell reports its pid
// there; the agent takes copies of the shell's standard input and output
// (rsync's protocol stream) with pidfd_getfd(2) and bridges them to the TLS
// connection itself, with the Go-side rate limiter and byte counters in
// between, so no other process copies the bytes. Where pidfd_getfd is not
// allowed, the shell relays the stream through fd 3 with two cats instead
// (see tunnelRsh). No listening socket exists on the source node, and no
// helper binary is needed.
//
// --modify-window=-1 makes rsync compare modification times to the
// nanosecond: with the default, a directory or file whose time lies in the
// same second as the copy's is considered unchanged. A file rewritten within
// the filesystem's timestamp granularity with its size unchanged still
// escapes the quick check; the final verification (whole-file checksums)
// catches it and Repair (--checksum) fixes it before success is reported.
//
// Options chosen: -a (perms, times, owner, group, devices, specials, symlinks
// as symlinks), -H hard links, -A ACLs, -X xattrs, -S sparse files (which
// rsync ≥ 3.1.3 combines with --inplace; a full pass with
// SendOptions.DetectSparse passes it only when the source holds a file with
// holes, see HasSparseFiles: with -S the receiving rsync scans every written
// byte for zeros), --delete deletions, --numeric-ids. --no-whole-file forces the delta algorithm: rsync only
// defaults to it for remote transfers and only the changed blocks must
// travel. --inplace rewrites changed blocks of existing files instead of
// building a full temporary copy, so a delta pass writes (and the target
// volume needs room for) only the changed blocks; the cost, a file that is
// torn while a pass runs, is harmless because only the final pass — with the
// source frozen — has to produce a consistent image, and a verification
// pass with whole-file checksums (-c --dry-run --itemize-changes) checks it.
// Exit status 24 (files vanished while being read) is normal during
// pre-copy rounds while the application runs and is reported as success
// there, but never for the final pass.
//
// --blocking-io keeps the remote shell's descriptors blocking: the pump
// processes (cat) would otherwise fail with EAGAIN when rsync falls behind.
//
// Reruns are idempotent: an interrupted pass is simply run again.
//
// # Other requests
//
// Besides an rsync transfer, a receiver answers five fixed requests of the
// replication protocol (package protocol, LIVEMIGRATE-REPLICATION/1), on
// authenticated connections only and one transfer at a time:
//
//   - status: the result of the last transfer (so the sender can report why
//     the receiving side failed, e.g. a full volume);
//   - tar: the first pass as a tar stream into an empty target (SendTar,
//     package tarstream), extracted in the agent through an os.Root of the
//     target; refused ("refused target not empty") when the target holds
//     anything, in which case the sender runs rsync;
//   - manifest: the identities of the target's entries (package manifest:
//     no content, only what the source sent anyway), for the verification
//     that under freeze only checksums what changed (package engine);
//   - blockindex: the XXH3-128 hashes of the 4 KiB blocks of listed target
//     files with their identities before and after hashing
//     (FetchBlockIndex, package blockdelta), before the freeze: hashes of
//     what the source sent, not content;
//   - blockdelta: the final pass as a block delta into existing regular
//     files of the target (SendBlockDelta, package blockdelta), written
//     through an os.Root of the target and answered with the read-back
//     hashes of the blocks written, the files' new identities and the
//     target's manifest.
//
// VerifyPaths is Verify restricted to a list of entries (--files-from,
// without --delete, which needs recursion).
package rsync
