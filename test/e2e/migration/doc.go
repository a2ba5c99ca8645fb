// Package migration is the lab end-to-end test of live migration: the whole
// system runs as it does in clusters (the lab's components table: agents
// with their node runtimes, restore webhooks, registry, descheduler,
// schedulers) and workloads of the lab app are moved with
// `kubectl livemigrate move … --wait` (the plugin binary), the safety
// invariants checked from the host (package scenario):
//
//   - TestStatefulSetMovesToMember2: a StatefulSet with a local volume,
//     written to continuously, moves from member1 to member2; memory and log
//     agree (labapp verify) and the log continues the source's without a gap
//     or a repeat; the source never counts after its freeze, is alive and
//     frozen until the target runs and is Ready, then gone; the downtime is
//     in status.
//   - TestRollbackWhenTheRestoreFails: the registry goes away after the
//     push, or the target's restore webhook before the target pod is
//     created; the migration fails in Restoring and rolls back: the same
//     source process thawed with nothing lost, nothing left in member2.
//   - TestDeschedulerRestartMidMigration: the descheduler is killed as the
//     migration enters PreCopy, Checkpointing or Restoring and restarted;
//     the migration completes with every invariant held.
//   - TestDeploymentBothPodsMigrate: a 2-replica Deployment (memory-only lab
//     apps); each source pod's checkpoint is restored by exactly one target
//     pod.
//
// It needs root (cgroup freezer, /proc/<pid>/mem, chroot of the
// replication receiver), rsync and the lab binaries (make lab-binaries);
// without them it fails, it never skips. One lab serves the package (≈ 80 s
// on two cores, the lab's start included).
package migration
