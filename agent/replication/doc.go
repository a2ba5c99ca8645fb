// Package replication replicates the persistent volumes of a pod to the
// target cluster of a live migration, agent to agent, over mutual TLS (the
// PreCopy and FinalSync phases of docs/architecture.md). It is wired into
// the agent with Options (flags) and Setup (the VolumeReplication
// reconciler). The flow, the protocol, the guarantees and where the data
// is are in docs/replication.md.
//
// Contracts: a target is written only under one of the configured target
// roots and only when its claim carries the migration's label; the source
// is only ever read; every connection is authenticated with the
// migration's own credentials before a request is read; a Source
// VolumeReplication reports PreCopied only after the pre-freeze
// verification, and Completed only when the target is proved equal to the
// source at the freeze.
//
// # Packages
//
//   - certs: per-migration CA and certificates, URI SAN
//     livemigrate://migration/<uid>/source|target, peer verification.
//   - transport: the mutual-TLS listener, the router serving every
//     replication of a node on one port, the dialer, rate limiting, counters.
//   - protocol: LIVEMIGRATE-REPLICATION/1: the request lines and replies,
//     the receiver's dispatch, both sides of every request but rsync
//     (status, space, tar, manifest, block index, block delta), and the
//     types of a pass.
//   - rsync: the rsync request: the receiver's chrooted, write-only,
//     single-use rsync daemon per connection, and the sender (rsync client
//     tunnelled through the TLS connection).
//   - tarstream: the first pass into an empty target as a PAX tar stream,
//     extracted through os.Root.
//   - manifest: identities (inode, size, times) of a tree's entries.
//   - blockdelta: the target's block index built before the freeze, and the
//     final pass as a block delta checked block by block.
//   - treediff: compares two trees as a replica must match its source (for
//     tests, end-to-end checks and benchmarks).
//   - engine: pre-copy rounds with retries, the pre-freeze verification and
//     index, the final pass (block delta or rsync), verification and repair.
//   - provision: target PV/PVC objects and volume paths.
//   - snapshot: optional crash-consistent pre-copy base from a CSI
//     VolumeSnapshot.
//   - controller: the VolumeReplication reconciler and metrics.
package replication
