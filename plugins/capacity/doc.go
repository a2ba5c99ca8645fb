// Package capacity is the Capacity scheduler plugin for Karmada: it filters
// out member clusters whose free resources (status.resourceSummary:
// allocatable − allocated − allocating) cannot hold the replicas a binding
// would place there, and scores the rest by the headroom left after placement.
//
// Cluster resource summaries are turned into int64 vectors once per cluster
// resourceVersion (from the cluster informer, or on first sight), and a
// binding's requests once per binding, so Filter and Score parse no
// quantities and allocate nothing on the success path.
//
// It must never filter out a cluster the binding already runs on: a capacity
// change alone must not evict anything.
package capacity
