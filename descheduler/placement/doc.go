// Package placement picks the target cluster of a live migration when the
// user did not name one. It runs the same Karmada scheduler plugins the
// livemigrate-scheduler runs (Capacity, Latency, and any other
// framework.FilterPlugin/ScorePlugin it is given) over the Ready member
// clusters, so that a migration goes where the scheduler would place the
// workload; and it explains why every other cluster was not chosen.
//
// It only reads: it never changes a binding or a cluster.
package placement
