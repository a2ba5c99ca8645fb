// Package engine sequences the passes of one volume replication on the
// source side: pre-copy (a full pass while the application runs, then delta
// passes until the delta converges below a threshold or a round limit is
// reached), the pre-freeze verification and target block index, and final
// (while the pod is frozen: a block delta proved block by block, or one
// rsync delta pass then a verification with whole-file checksums, repaired
// and re-verified if it finds a difference).
//
// # First pass
//
// Round 1 goes as a tar stream (package tarstream, rsync.SendTar) when the
// target is empty and the source holds only directories, regular files,
// symlinks and hard links without extended attributes; otherwise, and for a
// retried first pass that left partial data, as an rsync pass. All later
// passes are rsync.
//
// # Retries
//
// A pre-copy pass that fails is run again after a backoff (2 s, doubling, at
// most a minute; DefaultPassAttempts attempts in all) unless the target is
// full or the context ended; Config.OnRetry reports each retry. A pass is
// idempotent, so a retry is always safe. The final pass is not retried: it
// runs under freeze, and the migration's controller decides what a failure
// means there.
//
// # Verification before the freeze
//
// PreVerify (after pre-copy and after every keep-warm pass, while the
// application runs) compares source and target with whole-file checksums
// and records, per entry found equal, the identities of both ends (package
// manifest: device, inode, size, mtime and ctime to the nanosecond, mode).
// It records an entry only if
//
//   - both identities were the same before and after the comparison (the
//     compared content was not changing), and
//   - both ctimes were at least StableAge (1 s) older than the manifest
//     they come from, each against its own node's clock (a change after the
//     manifest then gets a different ctime even on a filesystem storing
//     timestamps to the second); the source is synced (syncfs) before its
//     manifest, so that a later write through a shared writable mapping
//     faults and updates the times.
//
// Under freeze, Final runs the delta pass, takes both manifests again and
// checksums every entry whose source or target identity differs from its
// record or has none: everything the application changed since the
// pre-freeze verification (which is what the final pass sends), everything
// the final pass wrote, and anything that changed on the target. An entry
// present only on the target is a difference. Entries whose identities on
// both ends equal their record are not read.
//
// What is guaranteed on success: every entry of the target equals the
// source at the freeze — content, type, mode, owner, times, symlink target,
// hard links — because it was either compared with whole-file checksums
// under freeze, or compared equal before and provably (ctime, which no
// user-space call can set back) not modified on either end since. What it
// relies on: the kernel updating ctime on every change of an inode. Writes
// through a shared writable mapping update it at the first write fault after
// writeback (hence the syncfs); a filesystem that does not update times for
// such writes would hide them from rsync's quick check as well as from the
// identities — Config.WholeFinalVerify (agent flag
// --replication-whole-final-verify) restores the whole-tree verification
// under freeze for such volumes. Records live in memory (VerifyState); without
// them (a restarted agent, a freeze before the first pre-freeze
// verification finished) the final pass verifies the whole tree, as does a
// failure of the targeted verification.
//
// # Final pass methods
//
// After recording the verified entries, PreVerify asks the receiver for the
// block index of the target's regular files that have not changed for
// StableAge (package blockdelta: XXH3-128 of every 4 KiB block, 16 bytes
// per block, at most MaxIndexBytes per session; files whose index is still
// valid are not read again) and keeps it in VerifyState with the records.
// Final then chooses:
//
//   - block delta, when source and target hold the same paths and every
//     entry whose identities differ from its record, or that has none (a
//     file the application was writing during the pre-freeze
//     verification), is a regular file on both ends whose target is
//     unchanged since it was indexed (no entry added, removed or of another
//     type, no changed directory or symlink): the source reads each changed
//     file once and sends the blocks that differ from the index; the
//     receiver writes them, applies size, mode, owner and mtime, fsyncs and
//     reads back what it wrote. Every block's source hash must equal the
//     read-back hash or, for a block not sent, the index hash (trusted: the
//     receiver checked that the file's identity is the indexed one before
//     writing), the metadata the source's, and the target's manifest after
//     the delta the files' new identities and every other entry's record. A
//     file sent is proved equal block by block; it needs no record.
//     Source files with more than one link, extended attributes or ACLs, or
//     holes are not sent this way (the whole pass goes to rsync, which
//     preserves them). On success the records and the index are updated, so
//     that a repeated Final sends nothing.
//   - rsync: the delta pass and the checksum verification described above,
//     for everything else, and whenever the block delta fails or finds a
//     difference (FinalResult.Fallback says why; nothing is reported equal
//     that was not proved equal). WholeFinalVerify and DisableBlockDelta
//     always choose it.
//
// The block delta reads each changed file once on the source and only the
// blocks it wrote on the target; rsync reads every changed file twice on
// both ends (delta, then verification).
//
// The engine holds no other state that is not also reported through its
// callbacks: a restarted agent rebuilds a Session from the round recorded in
// the VolumeReplication status and simply runs the next pass, since a pass
// is idempotent. It never writes to the source directory.
package engine
