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
//   - TestRollbackWhenTheRestoreFails: the registry goes away during the
//     pre-copy (the push fails: Transfer), or the target's restore webhook
//     before the target pods are created (fails at once, in whichever phase
//     the unmutated pod is seen); the migration rolls back: the same source
//     process thawed with nothing lost, nothing left in member2.
//   - TestRollbackWhenTheRegistryRejectsThePull: the registry refuses blob
//     downloads (lab fault switch); the target pod waits with ErrImagePull,
//     the restore claim fails at once and the migration rolls back within
//     seconds of entering Restoring, not at its timeout.
//   - TestRollbackWhenTheTargetNodeDiesMidRestore: the target node's
//     runtime (and agent) is killed while it pulls or loads the checkpoint;
//     the migration fails at the Restoring timeout and rolls back; with the
//     agent gone for good, the rollback stops waiting for it after
//     --rollback-abort-wait and ends Failed with ReplicationStopped=False.
//   - TestDeschedulerRestartMidMigration: the descheduler is killed as the
//     migration enters PreCopy, Checkpointing or Restoring and restarted;
//     the migration completes with every invariant held.
//   - TestDeploymentBothPodsMigrate: a 2-replica Deployment (memory-only lab
//     apps); each source pod's checkpoint is restored by exactly one target
//     pod.
//   - TestMoveBack: one StatefulSet moves member1 → member2 → member1 →
//     member2, every leg checked as above; each source keeps its claim,
//     marked retained, and the move back is not blocked by it: the second
//     leg replaces the user's original claim (outside the agents' root), the
//     third adopts the claim the first provisioned and pre-copies only the
//     changes; a fourth leg back to member1, with the LiveMigration's
//     source-claim-policy Delete, adopts again and deletes member2's claim.
//   - TestMoveBlockedByAUsersClaim: a user's claim of the same name in the
//     target fails the migration in PreCopy, before the freeze, with
//     TargetClaimExists saying to delete it; it is left untouched, and once
//     deleted the move succeeds.
//
// It needs root (cgroup freezer, /proc/<pid>/mem, chroot of the
// replication receiver), rsync and the lab binaries (make lab-binaries);
// without them it fails, it never skips. One lab serves the package (≈ 3 min
// on two cores, the lab's start included).
package migration
