// Package faults is the lab's fault matrix: one table-driven test,
// TestFaultMatrix, live-migrates a StatefulSet of the lab app (128Mi of
// memory, a local volume written continuously) from member1 to member2
// once per cell of faults × phases and injects the cell's fault when a
// watch shows the migration in the cell's phase:
//
//   - faults (package matrix): the descheduler, the source node's agent,
//     the target member's agents, the source member's kube-apiserver, the
//     Karmada kube-apiserver and karmada-controller-manager killed (SIGKILL)
//     and started again; the WAN link between the members cut until the
//     migration gave up (its phase timeouts are 30s), or for 3s;
//   - phases: PreCopy, Checkpointing, Rebinding, FinalSync, Transfer,
//     Restoring, Verifying, Cleanup.
//
// The lab sends the migration's data path through the simulated WAN
// (Options.WANDataPath, 20 MiB/s to member2), so that the checkpoint's
// transfer lasts seconds and a cut link cuts the migration. Every cell
// must end Succeeded with every invariant held, or Failed after a clean
// rollback: the same source process runs on with memory and log agreeing
// and nothing of the migration is left in member2; the invariant monitor
// watches every lab app process for the whole run. The phase the fault
// hit is taken from the migration's phase transitions (a short phase may
// have ended by the time the fault lands).
//
// LIVEMIGRATE_FAULTS selects the cells: empty runs three representative
// ones (make test), "all" the whole matrix (make test-faults), or a list
// of faults and "<fault>/<phase>" cells. LIVEMIGRATE_FAULTS_RESULTS names
// a file each cell's outcome is appended to, from which make
// reliability-table generates docs/reliability.md's table.
//
// It needs root, rsync and the lab binaries; without them it fails, it
// never skips.
package faults
