// Package policy is the opt-in model every trigger of the descheduler shares:
// the livemigrate.io/ annotations a resource template, its PropagationPolicy or
// its ClusterPropagationPolicy carry, how they are validated, and how the
// effective policy of a workload is resolved from them (the template wins over
// the PropagationPolicy, which wins over the ClusterPropagationPolicy).
//
// A workload without livemigrate.io/eviction-strategy is not ours: no trigger
// may move it. A workload whose annotations are malformed is treated as not
// opted in either: nothing is ever moved on a guess.
//
// It only reads; it never writes an object.
package policy
