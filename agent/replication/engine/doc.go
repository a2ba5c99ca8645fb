// Package engine sequences the rsync passes of one volume replication on the
// source side: pre-copy (a full pass while the application runs, then delta
// passes until the delta converges below a threshold or a round limit is
// reached) and final (one delta pass while the pod is frozen, then a
// verification pass with whole-file checksums, repaired and re-verified if it
// finds a difference).
//
// The engine holds no state that is not also reported through its callbacks:
// a restarted agent rebuilds a Session from the round recorded in the
// VolumeReplication status and simply runs the next pass, since an rsync
// pass is idempotent. It never writes to the source directory.
package engine
