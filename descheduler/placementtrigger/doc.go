// Package placementtrigger moves an opted-in workload live when Karmada's
// scheduling changes its placement (a PropagationPolicy or
// ClusterPropagationPolicy edit, a re-labelled Cluster, a
// WorkloadRebalancer, a scheduler re-run), instead of letting Karmada
// re-create it on the new cluster.
//
// Two parts work together. The placement webhook (descheduler/webhook,
// PlacementHold) admits the updates of the ResourceBindings labelled
// livemigrate.io/opted-in that would take the workload off the one
// cluster it runs on: when no live migration or eviction makes that
// update (Hold), it keeps spec.clusters and records karmada-scheduler's
// result in the livemigrate.io/scheduled-clusters annotation. The
// Reconciler keeps the label in step with the workload's policy, asks
// karmada-scheduler to reschedule a workload whose cluster no longer
// matches its placement's cluster affinity (karmada-scheduler does not
// reschedule a Divided workload on a cluster's label change by itself),
// and starts the LiveMigration to the recorded result, labelled
// livemigrate.io/trigger: placement, within the concurrency budget.
//
// It never moves a workload that is not opted in, and never writes
// spec.clusters itself except to hand a LiveMigrateIfPossible workload
// that cannot move live to Karmada (the scheduling result with a graceful
// eviction task, as Karmada's failover does) or to apply the held result
// of a workload that is no longer opted in.
package placementtrigger
