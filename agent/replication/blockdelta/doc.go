// Package blockdelta carries the final replication pass, under freeze, as a
// delta of fixed 4 KiB blocks against an index of the target's blocks built
// before the freeze, and proves the result equal block by block. Why, and
// what it saves against rsync under freeze, is in docs/replication.md
// ("Final pass by block delta").
//
// The index (ServeIndex, on the target, while the application runs) holds
// the XXH3-128 hash of every 4 KiB block (the last one partial) of listed
// regular files, 16 bytes per block, with the file's identity (package
// manifest) before and after hashing; it is valid only when both are equal
// and equal to the identity the sender knows for the target file. The
// sender (Send) reads each changed file once and sends the blocks whose hash
// differs from the index and those beyond the target's old size, with the
// file's size, mode, owner and modification time; Apply writes them in
// place, truncates, applies the metadata, fsyncs, reads back what it wrote
// and returns those blocks' hashes and the file's new identity.
//
// # What proves the target equal
//
// For every block of a changed file the source's hash equals either the
// hash the target read back after writing it, or the index's hash of a
// block that was not written, which is trusted because the target file's
// identity when the receiver opened it for writing — device, inode, size,
// mtime and ctime, checked on the open descriptor — is the identity it had
// when it was indexed (every write changes the ctime, and no user-space call
// sets it back). Size, mode, owner and mtime are compared with the source's
// on the identity the receiver returns. A file sent is thus proved equal on
// its own. Any difference, or any file the delta cannot carry, makes the
// caller run the rsync final pass and its checksum verification instead.
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
