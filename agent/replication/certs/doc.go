// Package certs mints the per-migration credentials used by volume
// replication: a short-lived CA, a server certificate for the receiving
// (target) agent and a client certificate for the sending (source) agent.
//
// Every leaf certificate carries the migration UID and its role in a URI SAN,
// livemigrate://migration/<uid>/source or livemigrate://migration/<uid>/target.
// Both sides verify the peer's chain against the per-migration CA, its
// validity window and that the URI names the expected migration UID and the
// opposite role (Verifier). A credential issued for another migration, an
// expired one, or a certificate from another CA is rejected.
//
// The package must never persist keys itself and never issue a certificate
// without a migration UID: callers store the Bundle in a Secret (see
// SecretData) that only the two agents of the migration can read.
package certs
