// Package tarstream carries the first (full) replication pass into an empty
// target volume as a PAX tar stream (archive/tar) instead of rsync, and
// extracts it on the receiver through an os.Root of the target.
//
// Delta, keep-warm, final and repair passes stay rsync. Why the first pass
// does not is in docs/replication.md ("First pass: tar stream"), the
// measurements in benchmarks/README.md ("Replication").
//
// # What the stream carries
//
// Directories (the tree's root first, as "./"), regular files, symlinks
// (stored as links, never followed) and hard links (TypeLink to the first
// path of the inode), with permission and set-id/sticky bits (the receiver
// clears the set-id bits of regular files, see StripSetID), numeric
// owner and group, and modification times to the nanosecond (PAX). That is
// what rsync -aH carries for such a tree, and the result is compared with an
// rsync pass by the same tests (package protocol). Files with holes are sent as
// their data extents (SEEK_DATA/SEEK_HOLE) with the extent map and the
// apparent size in PAX records of this package's own (LIVEMIGRATE.sparse.*);
// the receiver writes the extents and truncates to the size, so holes stay
// holes — without the per-byte zero scan of rsync -S. More than MaxExtents
// extents are reduced by filling the smallest holes.
//
// Scan refuses (ErrUnsupported) a tree holding device nodes, FIFOs, sockets,
// extended attributes or ACLs: those are rare in application volumes, the
// receiver then needs no code that creates device nodes or sets security
// attributes, and rsync (-AX, -D as root) copies such a tree as before.
//
// # Sender
//
// The volume is scanned first and streamed after while the workload keeps
// writing to it, so the sender reads only what it scanned: Scan looks every
// entry up relative to its parent directory held open and never follows a
// symlink, and Write opens every path through an os.Root of the volume and
// sends a file only when the inode it opened is the scanned one. A
// directory swapped for a symlink after the scan (to the host's files or
// another part of the volume) is skipped like a vanished file.
//
// # Receiver
//
// Extract runs in the agent, one connection at a time, behind the same
// mutual-TLS listener and per-migration credentials as the rsync receiver
// (package protocol dispatches the request). The rsync daemon is confined by
// chroot; the extractor by os.Root (every path resolved beneath the target,
// no escape through "..", absolute names or symlinks) and, beyond that, by
// accepting only the streams Write produces: see Extract. It refuses to
// write into a non-empty directory, so it only ever creates entries, never
// replaces one. A full target fails with an error wrapping ErrDiskFull; the
// source is only ever read.
package tarstream
