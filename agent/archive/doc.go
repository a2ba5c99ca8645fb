// Package archive checks and reads container checkpoint archives written by
// the container runtime (the CRI-O layout: checkpoint/ with the CRIU images,
// config.dump, spec.dump, stats-dump, rootfs-diff.tar, ...).
//
// Archives are untrusted input: Validate walks every member and rejects
// absolute paths, path traversal, links leaving the tree, device files and
// FIFOs, oversize members and oversize totals, before anything else reads
// them. Inspect reads the metadata with the checkpointctl library and the CRIU
// dump statistics with go-criu, extracting only the few small metadata files
// into a root-only (0700) scratch directory. Archives hold process memory:
// Secure makes them root-only and Remove deletes them (the kubelet never does).
package archive
