// Package latency is the Latency scheduler plugin for Karmada: it scores
// member clusters by the measured round-trip time between each candidate
// cluster and what a workload says it must be close to (peer clusters and
// named origins, from the latency.livemigrate.io/near annotation), and
// filters out clusters whose measured RTT exceeds latency.livemigrate.io/max-rtt.
//
// RTTs come from ClusterLatency objects (written by livemigrate-prober, see
// the prober subpackage), read through an informer into a Store; annotations
// come from the resource template and its (Cluster)PropagationPolicy, read
// through listers. Filter and Score never call the API server; a measurement
// older than the configured maxAge counts as missing, and missing latency
// never filters a cluster.
package latency
