// Package replication replicates the persistent volumes of a pod to the
// target cluster of a live migration, agent to agent, over mutual TLS
// (ARCHITECTURE.md §2, steps 2 and 4). It is wired into the agent with
// Options (flags) and Setup (the VolumeReplication reconciler).
//
// # Flow
//
// The migration's controller creates, per persistent volume claim, a Target
// VolumeReplication in the target cluster (after pre-provisioning the claim
// with package provision) and a Source one in the source cluster, both
// keyed by the migration UID and naming their node, with a Secret holding the
// per-migration credentials (package certs). The target agent serves a
// receiver on its one replication port, routed by TLS server name, and
// reports status.endpoint and status.serverName (a receiver or sender that
// cannot start says why in its ReceiverReady or SenderReady condition);
// the source agent runs the pre-copy
// passes against it while the application runs (the first one as a tar
// stream into the empty target, the others rsync deltas; a failed pass is
// retried with backoff), verifies the target while the application still
// runs, records what is equal and has the target index the blocks of its
// regular files, and only then reports PreCopied (with the Converged
// condition and an estimate of the final pass), which lets the controller
// freeze the pod. Once the controller has frozen the pod
// and set spec.stage=Final, it sends the last delta — as a block delta
// against that index when only file content changed, proved block by block,
// otherwise by rsync followed by a checksum verification of what changed
// since the pre-freeze verification (or of the whole tree without records)
// — and reports Completed (or Failed, with the reason in status.message).
// spec.abort stops both sides and removes the target copy with its
// directory.
//
// # Packages
//
//   - certs: per-migration CA and certificates, URI SAN
//     livemigrate://migration/<uid>/source|target, peer verification.
//   - transport: the mutual-TLS listener, the router serving every
//     replication of a node on one port, the dialer, rate limiting, counters.
//   - rsync: the receiver (a chrooted, write-only, single-use rsync daemon
//     per connection, fixed argument list; the tar and manifest requests)
//     and the sender (rsync client tunnelled through the TLS connection);
//     the reasoning behind every rsync option is in that package's
//     documentation.
//   - tarstream: the first pass into an empty target as a PAX tar stream,
//     extracted through os.Root; why it replaces rsync there, with the
//     measurements, is in that package's documentation.
//   - manifest: identities (inode, size, times) of a tree's entries.
//   - blockdelta: the target's block index (XXH3-128 per 4 KiB block, as
//     rsync's xxh128 strong checksums) built before the freeze, and the
//     final pass as a block delta checked block by block; why, and what it
//     proves, is in that package's documentation.
//   - engine: pre-copy rounds with retries, the pre-freeze verification and
//     index, the final pass (block delta or rsync), verification and
//     repair; what the verification guarantees is in that package's
//     documentation.
//   - provision: target PV/PVC objects and volume paths.
//   - snapshot: optional crash-consistent pre-copy base from a CSI
//     VolumeSnapshot.
//   - controller: the VolumeReplication reconciler and metrics.
//
// # Where the data is
//
// Source: a local or hostPath volume's directory, otherwise the pod's mount
// under the kubelet root. Target: the agent writes a local or hostPath volume
// directly, under one of the configured target roots, and only if the claim
// carries the migration's label. Other target volumes need a receiver pod:
// a short-lived pod on the target node that mounts the claim and runs the
// same receiver (the agent binary with only the receiver enabled, the TLS
// Secret mounted, a hostPort or a Service for the source to reach), deleted
// once the replication completes or aborts; it is designed (see
// docs/replication.md) but not built yet.
package replication
