// Package transport carries replication traffic between two agents over
// mutual TLS (TLS 1.3, per-migration credentials from package certs).
//
// Listen accepts connections on the target agent and completes the TLS
// handshake before handing a connection out, so nothing unauthenticated ever
// reaches the receiver (package protocol). A Router does the same for any
// number of replications on one listener: the client names its replication
// in the TLS server name indication, and the handshake completes with that
// replication's own configuration (tls.Config.GetConfigForClient), so each
// peer is checked exactly as by a Listener of its own; a missing or unknown
// name is refused. Dial opens a connection from the source agent.
// Both sides check that the peer certificate was issued by the migration's CA,
// is within its validity window and names the same migration UID with the
// opposite role.
//
// RateLimitedConn and the Counter wrappers implement the Go-side bandwidth
// limit and the byte accounting exported as progress and metrics.
//
// This package must never accept a connection without a verified client
// certificate, and never fall back to plaintext.
package transport
