// Package drain is the end-to-end test of the maintenance trigger in the
// lab (root): a member cluster drained with kubectl livemigrate drain
// --wait live-migrates its opted-in workloads (a StatefulSet of the lab app
// writing to its volume, a two-replica Deployment opted in through its
// PropagationPolicy) one at a time under a per-cluster budget of one, leaves
// the workload that is not opted in where it is, and checks the safety
// invariants of every move; uncordon removes the taint. A taint key given
// by --maintenance-taint-keys drains too; any other key does not.
package drain
