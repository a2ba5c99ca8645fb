// Package blockdelta carries the final replication pass, under freeze, as a
// delta of fixed 4 KiB blocks against an index of the target's blocks built
// before the freeze, and proves the result equal block by block.
//
// # Why not rsync under freeze
//
// rsync's delta reads the whole of every changed file on both ends (the
// receiver's block sums of its basis, the sender's rolling sums), and the
// checksum verification that follows reads every one of them on both ends
// again. With a little changed in every file (1 % of the 4 KiB blocks of a
// 1 GiB volume spread over 16 files) that is the whole volume read four
// times while the application is frozen, on cores the checkpoint dump needs
// too. Here the target's side of that work happens before the freeze:
//
//   - Index (target, while the application runs): after the pre-freeze
//     verification, the receiver hashes each 4 KiB block (the last one
//     partial) of the target's regular files with XXH3-128 and returns the
//     hashes with the file's identity (package manifest) before and after
//     hashing; the index is valid only when both are equal and equal to the
//     identity the sender knows for the target file. 16 bytes per block:
//     4 MiB per GiB. rsync uses the same hash, xxh128, for its strong
//     checksums since 3.2.
//   - Send (source, under freeze): the source reads each changed file once,
//     hashes its blocks, and sends only the blocks whose hash differs from
//     the index (and those beyond the target's old size), with the file's
//     size, mode, owner and modification time.
//   - Apply (target): writes the blocks in place, truncates to the size,
//     applies owner, mode and time, fsyncs, reads back the blocks it wrote
//     and returns their hashes and the file's new identity.
//
// # What proves the target equal
//
// For every block of a changed file the source's hash equals either the
// hash the target read back after writing it, or the index's hash of a
// block that was not written, which is trusted because the target file's
// identity when the receiver opened it for writing — device, inode, size,
// mtime and ctime, checked by the receiver on the open descriptor — is the
// identity it had when it was indexed (every write changes the ctime, and no
// user-space call sets it back: the same argument as the pre-freeze
// verification's, see package engine). Size, mode, owner and mtime are
// compared with the source's on the identity the receiver returns. A file
// sent is thus proved equal on its own; every other entry is trusted
// because its identities on both ends equal those of the pre-freeze
// verification (package engine). Any difference, or any file the delta cannot
// carry, makes the caller run the rsync final pass and its checksum
// verification instead.
//
// # What it carries, what it refuses
//
// Only regular files present on both ends, with one link, without extended
// attributes or ACLs, and without holes on the source (a source file with
// fewer blocks allocated than its size needs): everything else — new,
// removed or renamed entries, a changed directory or symlink, hard links,
// extended attributes, sparse files — is for rsync, which preserves them.
//
// The receiver opens every path through an os.Root of the target, and
// beyond that accepts only canonical relative names (no "..", no absolute
// or empty name), refuses a path whose directories are not directories (a
// symlink anywhere in it) or whose final component is a symlink, and writes
// only into existing regular files of the tree with one link, no extended
// attributes, and the identity the sender indexed. It never creates,
// removes or renames an entry. Blocks must be ascending, inside the file's
// new size, and carry exactly their length.
package blockdelta
