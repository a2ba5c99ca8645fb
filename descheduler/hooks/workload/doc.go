// Package workload implements the migration package's WorkloadHook for
// apps/v1 Deployments and StatefulSets in member clusters: it lists the
// running pods and the persistent volume claims they mount, tells whether
// every replica is Ready, and removes the workload (foreground deletion, so
// it is gone only once its pods are).
//
// It only ever deletes a workload when asked to by the rollback, in the
// target cluster.
package workload
