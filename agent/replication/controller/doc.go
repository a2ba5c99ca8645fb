// Package controller holds the VolumeReplication reconciler of the agent:
// for objects naming this agent's node, it runs the rsync receiver (role
// Target) or the pre-copy and final passes (role Source) and reports
// progress in status and metrics.
//
// Long-running work (a receiver's listener, a source's passes) runs in
// goroutines owned by the reconciler, keyed by the object; the reconciler
// starts, replaces and stops them from the object's spec and status alone, so
// a restarted agent resumes from status (the round it reached) and an rsync
// pass is simply run again. Reconcile itself never blocks on a transfer.
//
// It must never write to a source volume, never write outside a target root
// it was configured with, and never serve a target volume whose claim was
// not provisioned for the same migration (label livemigrate.io/migration-uid).
package controller
