// Package controller holds the VolumeReplication reconciler of the agent:
// for objects naming this agent's node, it runs the receiver (role Target;
// package protocol) or the pre-copy and final passes (role Source) and
// reports progress in status and metrics.
//
// After pre-copy and after every keep-warm pass the source runs the
// pre-freeze verification (engine.Session.PreVerify; condition PreVerified,
// event PreVerified) and keeps its records in memory per object, so that the
// final pass only checksums what changed since; the Verified condition and
// livemigrate_replication_verified_entries_total tell how many entries were
// read under freeze. A failed pre-copy pass is retried (status.message, event
// PassRetried, livemigrate_replication_pass_retries_total).
//
// Every receiver of the agent is a route on one shared listener
// (transport.Router, Config.Port), named by RouteServerName and reported in
// status.serverName; spec.listenPort gives a receiver a listener of its own.
// A receiver or sender that cannot start reports why in its ReceiverReady or
// SenderReady condition (StartReason), is retried while the cause is
// transient and fails the object once it is terminal or outlasted
// Config.StartRetryTimeout.
//
// Long-running work (a receiver's connections, a source's passes) runs in
// goroutines owned by the reconciler, keyed by the object; the reconciler
// starts, replaces and stops them from the object's spec and status alone, so
// a restarted agent resumes from status (the round it reached) and an rsync
// pass is simply run again. Reconcile itself never blocks on a transfer.
//
// It must never write to a source volume, never write outside a target root
// it was configured with, and never serve a target volume whose claim was
// not provisioned for the same migration (label livemigrate.io/migration-uid).
package controller
