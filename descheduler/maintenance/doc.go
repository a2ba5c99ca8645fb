// Package maintenance is the maintenance trigger: a Cluster carrying a taint
// whose key is one of the maintenance keys (default
// livemigrate.io/maintenance), with effect NoSchedule or NoExecute, is being
// drained. Every workload bound to it that is opted in (package policy) is
// moved by a LiveMigration labelled livemigrate.io/trigger=maintenance, in
// drain-priority order, then smallest estimated downtime first, within the
// concurrency budget; a LiveMigrateIfPossible workload that cannot move live
// is handed to Karmada's graceful eviction instead. The state of the drain
// is written to the Cluster's livemigrate.io/drain-report annotation.
//
// It never moves a workload that is not opted in, or whose policy is
// malformed, and it never creates a migration for a workload that already
// has one in progress. Removing the taint stops new migrations; the running
// ones finish or roll back as usual.
package maintenance
