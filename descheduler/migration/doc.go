// Package migration is the LiveMigration controller: the state machine of a
// live migration (Pending → Planning → PreCopy → Checkpointing → Rebinding →
// FinalSync → Transfer → Restoring → Verifying → Cleanup → Succeeded, and
// RollingBack → Failed), persisted in the LiveMigration's status. Phases
// returns the happy path; what each phase does and when it is done is in
// docs/livemigration.md ("The state machine").
//
// # Crash safety
//
// Each reconcile reads the LiveMigration, runs the step of its phase and
// writes status once. Steps decide only from status and from what the hooks
// report, and every hook call is idempotent and keyed by the migration's UID,
// so a restarted controller resumes, or rolls back, from status alone. Each
// phase before Cleanup has a timeout (spec.timeouts, else the controller's
// defaults); a timeout, a StepFailedError from a hook, spec.abort or deleting
// the LiveMigration (held by a finalizer) starts the rollback. From Cleanup
// on, the target runs and the source is being deleted: the migration is only
// finished forward.
//
// # Safety invariants
//
// Nothing is synced "final" before every source pod is frozen. From the
// checkpoint on the source pods stay frozen until the target is Ready
// (Cleanup only releases the archives; Karmada deletes the frozen source).
// The target workload exists from Rebinding on, but its pods are gated, so
// none is scheduled or runs, until Transfer records the images, which
// happens after FinalSync: a target pod starts only with the final volume
// delta and its checkpoint images in place. On rollback (from any phase
// after the freeze, with a target workload or not) the target workload,
// gated pods included, is removed, and its removal awaited, before the
// source is thawed: "removed" means Karmada's Work for the target is gone
// (read from the API server after the revert) and neither the workload nor
// a pod it owned is left there. The downtime budget is enforced in one place
// (checkBudget) before anything is frozen. One migration acts on a workload
// at a time: it holds the workload's Lease (lock.go) from Planning on, and
// one without it fails before it freezes.
//
// Rebinding patches the workload's ResourceBinding (optimistic lock) with
// spec.clusters = [target] and a graceful eviction task {fromCluster:
// source, suppressDeletion: true, producer: livemigrate, reason:
// LiveMigration}, which keeps the frozen source workload until Cleanup
// removes the task. It then waits until karmada-scheduler observed the new
// generation (status.schedulerObservedGeneration) and fails, and rolls back,
// if spec.clusters no longer is the target alone; why the scheduler keeps
// it is in docs/livemigration.md ("Why karmada-scheduler does not undo the
// rebinding").
//
// This package never talks to member clusters itself: every side effect
// there goes through the hooks (CheckpointHook, ReplicationHooks per
// StorageClass, RestoreHook, WorkloadHook, TargetPicker).
package migration
