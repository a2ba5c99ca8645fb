// Package engine sequences the passes of one volume replication on the
// source side: pre-copy (a full pass while the application runs, then delta
// passes until the delta converges below a threshold or a round limit is
// reached), the pre-freeze verification and target block index (PreVerify),
// and the final pass while the pod is frozen (Final). It reaches the
// receiver only through a Peer. The design, with what each step reads and
// why, is in docs/replication.md.
//
// Contracts:
//
//   - Round 1 goes as a tar stream when the target is empty and the source
//     holds only directories, regular files, symlinks and hard links
//     without extended attributes; otherwise, and for a retried first pass
//     that left partial data, as rsync. Every later pass is rsync.
//   - A pre-copy pass that fails is run again after a backoff (2 s,
//     doubling, at most a minute; DefaultPassAttempts attempts in all)
//     unless the target is full or the context ended; Config.OnRetry
//     reports each retry. A pass is idempotent, so a retry is always safe.
//     The final pass is never retried: it runs under freeze, and the
//     migration's controller decides what a failure means there.
//   - PreVerify records an entry as equal only when it compared equal with
//     whole-file checksums, both ends' identities (package manifest) were
//     the same before and after the comparison, and both ctimes were at
//     least StableAge older than the manifest they come from, each against
//     its own node's clock; the source is synced (syncfs) before its
//     manifest. The records and the block index (at most MaxIndexBytes)
//     live in memory (VerifyState).
//   - Final succeeds only when every entry of the target equals the source
//     at the freeze — content, type, mode, owner, times, symlink target,
//     hard links: each entry was either proved equal under freeze (block by
//     block, or with whole-file checksums after the rsync pass, repaired and
//     re-verified on a difference) or recorded equal by PreVerify with both
//     identities unchanged since. It relies on the kernel updating ctime on
//     every change of an inode; Config.WholeFinalVerify checksums the whole
//     tree under freeze for volumes where that does not hold. Without
//     records (a restarted agent, a freeze before the first PreVerify
//     finished) the whole tree is verified.
//   - Final chooses the block delta only when every entry that changed is a
//     regular file on both ends whose target is unchanged since it was
//     indexed; any other case, and any failure or difference of the block
//     delta, runs rsync (FinalResult.Fallback says why). Nothing is
//     reported equal that was not proved equal.
//
// The engine holds no other state that is not also reported through its
// callbacks: a restarted agent rebuilds a Session from the round recorded in
// the VolumeReplication status and runs the next pass. It never writes to
// the source directory.
package engine
