// Package prober is livemigrate-prober's logic: run once per member cluster,
// it serves a TCP echo endpoint for its peers, measures the round-trip time
// to the peers and origins named in its configuration file, and writes the
// results into its own cluster's ClusterLatency status in the Karmada
// control plane (the only object it may write).
//
// Measurement: each target has one kept TCP connection; a sample writes a
// 16-byte payload and times until the same 16 bytes are read back, so
// connection setup (and TLS, DNS) is never part of an RTT. A failed sample
// closes the connection; the next sample dials again (dial time excluded).
// Targets must be TCP echo endpoints: another prober's --listen-address, or
// a `livemigrate-prober --echo-only` process standing in for an origin, or
// any relay that forwards to one.
package prober
