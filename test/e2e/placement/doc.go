// Package placement is the end-to-end test of the placement trigger in
// the lab (root): an edit of the PropagationPolicy of an opted-in
// StatefulSet of the lab app, writing to its volume, moves it live to the
// cluster karmada-scheduler chose (memory and log continue, never two live
// copies, a LiveMigration labelled trigger=placement), while the same edit
// re-creates a workload that is not opted in; re-labelling the cluster it
// runs on out of its cluster affinity moves it live too; and with the
// descheduler stopped an edit re-creates nothing, the workload moving live
// once the descheduler is back.
package placement
