// Package controller holds the agent's reconcilers, one per file:
//
//   - PodCheckpointReconciler (every node's agent, only for PodCheckpoints
//     naming its node): freeze the pod, checkpoint each container through the
//     kubelet, inspect the archives, push checkpoint images; then thaw
//     (rollback) or release (success) when spec.action says so.
//   - PodRestoreReconciler (the restore Deployment): follows each pod that
//     consumed a checkpoint to Running and Ready, and frees claims whose pod
//     never appeared.
//
// Every step is idempotent and resumes from status: a restarted agent never
// re-freezes a thawed pod, never re-pushes a pushed image, and never thaws a
// pod unless spec.action is Thaw. The reconcilers never delete pods.
package controller
