// Package snapshot provides the optional crash-consistent base of a
// pre-copy: when the source claim's StorageClass is served by a CSI driver
// that has a VolumeSnapshotClass, the first (full) pass reads a
// VolumeSnapshot of the claim instead of the live volume, so that the bulk
// of the data the target receives is one consistent point-in-time image
// rather than files copied at different instants. Delta passes then read the
// live volume, and the final pass (pod frozen) makes the target exact.
//
// The steps, each idempotent and keyed by the migration UID:
//
//  1. FindClass: the VolumeSnapshotClass whose driver is the StorageClass's
//     provisioner (the default-annotated one first); ErrNotSupported when
//     there is none, and the pre-copy reads the live volume as usual.
//  2. EnsureSnapshot: create the VolumeSnapshot of the claim; wait until
//     Ready (ReadyToUse, or an error reported by the snapshotter).
//  3. BaseClaim: a claim restored from the snapshot (dataSource
//     VolumeSnapshot), mounted read-only by a short-lived reader pod on the
//     source node; the Source VolumeReplication names it in
//     spec.preCopyBase, and the agent reads its mount for round 1.
//  4. Cleanup: delete the base claim and the snapshot when the replication
//     ends, whatever the outcome.
//
// The package never touches the source claim itself.
package snapshot
