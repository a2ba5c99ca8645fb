// Package descheduler holds Go benchmarks of the descheduler's decisions:
// one load rebalancing round (rebalance.Planner.Plan: list, snapshot,
// decide) over 100 member clusters and 10,000 ResourceBindings served from
// informer stores, against a baseline that only lists the same bindings
// and sums their requests per cluster. hack/bench-descheduler.sh runs them
// and prints the ratio.
package descheduler
