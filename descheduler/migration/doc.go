// Package migration is the LiveMigration controller: the state machine of a
// live migration (Pending → Planning → PreCopy → Checkpointing → Rebinding →
// FinalSync → Transfer → Restoring → Verifying → Cleanup → Succeeded, and
// RollingBack → Failed), persisted in the LiveMigration's status.
//
// # What each phase covers
//
//   - PreCopy: volumes replicate while the workload runs, until the delta
//     converges; then the downtime budget is checked (the last step before
//     anything is frozen).
//   - Checkpointing: freezes every source pod (status.frozenAt, the start of
//     the downtime: the earliest freeze the backend reports, else when
//     every pod was seen frozen); as soon as all are frozen it requests the final volume
//     sync and the checkpoints together, so that the final pass runs while
//     the checkpoints are dumped and pushed. It ends once every archive is
//     reported taken (the in-tree agent reports its archives, phase Pushing,
//     before it pushes them).
//   - Rebinding: records the checkpoints, without their images (being
//     pushed), in the target (PodRestore) and points the ResourceBinding at
//     the target, while the push and the final sync run. Karmada propagates
//     the workload; the restore webhook gates each target pod (scheduling
//     gate agent.livemigrate.io/checkpoint-image): it is neither scheduled
//     nor run until its images are recorded.
//   - FinalSync: waits for the final volume sync requested at the freeze
//     (often already finished: then it lasts one reconcile).
//   - Transfer: waits until every checkpoint image is in the registry (the
//     push), records the images in status and in the PodRestore; the
//     agent's restore controller then points the gated pods at them and
//     removes the gate, in one update.
//   - Restoring: the target pods are scheduled, pulled and restored. A
//     target pod admitted without the restore webhook's annotation, or
//     with it but neither gated nor given the checkpoint images, fails the
//     step at once (RestoreWebhookBypassed).
//   - Verifying: waits until the target workload is Ready
//     (status.targetReadyAt, the end of the downtime), then reads the
//     restore again: every checkpoint must be restored by a running target
//     pod, and a target pod admitted without its checkpoint or a restore
//     claim that failed since Restoring rolls back (the source is still
//     frozen; Cleanup would delete it).
//   - Cleanup: releases the archives and ends replication; Karmada deletes
//     the frozen source.
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
// checkpoint on the source pods stay frozen until the target is Ready (Cleanup only releases the archives; Karmada deletes the frozen
// source). The target workload exists from Rebinding on, but its pods are
// gated, so none is scheduled or runs, until Transfer records the images,
// which happens after FinalSync: a target pod starts only with the final
// volume delta and its checkpoint images in place. On rollback (from any
// phase after the freeze, with a target workload or not) the target
// workload, gated pods included, is removed, and its removal awaited,
// before the source is thawed: "removed" means Karmada's Work for the
// target is gone (read from the API server after the revert) and neither
// the workload nor a pod it owned is left there. The downtime budget is
// enforced in one place (checkBudget) before anything is frozen. One
// migration acts on a workload at a time: it holds the workload's Lease
// (lock.go) from Planning on, and one without it fails before it freezes.
//
// # Rebinding, and why karmada-scheduler does not undo it
//
// Rebinding patches the workload's ResourceBinding (optimistic lock) with
// spec.clusters = [target] and a graceful eviction task
// {fromCluster: source, suppressDeletion: true, producer: livemigrate,
// reason: LiveMigration}. The task keeps the frozen source workload (Karmada's
// graceful eviction controller does not delete it while deletion is
// suppressed); removing the task in Cleanup lets Karmada delete it.
//
// The patch bumps the binding's generation, so karmada-scheduler (v1.18,
// pkg/scheduler/scheduler.go doScheduleBinding) looks at it again. It only
// recomputes the placement when (a) the policy placement differs from the
// binding's policy-placement annotation, (b) the sum of spec.clusters
// replicas differs from spec.replicas (Divided scheduling), (c)
// spec.rescheduleTriggeredAt is later than status.lastScheduledTime, (d) the
// replica scheduling type is Duplicated (or the resource is no workload), or
// (e) a target cluster is being deleted. The rebinding keeps the replica sum
// and never touches the placement or rescheduleTriggeredAt, so for Divided
// placements the scheduler only advances status.schedulerObservedGeneration.
// Should it reschedule anyway (Duplicated, a policy edit, a manual
// reschedule), its ClusterEviction filter excludes every cluster named in a
// graceful eviction task, so the source can never be picked back while the
// task exists. The controller waits in Rebinding until
// schedulerObservedGeneration reaches the binding's generation and fails
// (and rolls back) if spec.clusters no longer is the target alone.
//
// This package never talks to member clusters itself: every side effect
// there goes through the hooks (CheckpointHook, ReplicationHooks per
// StorageClass, RestoreHook, WorkloadHook, TargetPicker).
package migration
