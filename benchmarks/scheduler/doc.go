// Package scheduler holds Go benchmarks of one scheduling cycle (Filter over
// every cluster, then Score and NormalizeScore over the feasible ones) for
// one binding over 1,000 member clusters, run through Karmada's own framework
// runtime, with Karmada's built-in plugins alone ("builtin") and with the
// livemigrate Capacity and Latency plugins added ("livemigrate").
// hack/bench-scheduler.sh runs them and prints the ratio.
package scheduler
