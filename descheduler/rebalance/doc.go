// Package rebalance is the descheduler's load rebalancing trigger: when some
// member clusters are above the high band of utilization and others below
// the low band, it moves opted-in workloads live from the first to the
// second, one LiveMigration each.
//
// The decision (Decide) is a pure function of a snapshot of the federation
// (Snapshot: the clusters' resource summaries, the ResourceBindings, the
// LiveMigrations and each candidate's policy) and of an Env that runs the
// scheduler's Filter plugins and the LiveMigration's downtime estimate. The
// Reconciler runs it every --rebalance-interval and, in Auto mode, creates
// the LiveMigrations it chose; `kubectl livemigrate plan --rebalance` prints
// it. It never changes a binding or a cluster, and it never moves a workload
// within its cooldown, onto a cluster it would push above the high band, or
// back along a pair of clusters it moved load over within the cooldown.
package rebalance
