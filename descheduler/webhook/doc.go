// Package webhook is the validating admission webhook for LiveMigrations. It
// rejects, with a message saying what to fix, what the CRD's CEL rules cannot
// check because it needs other objects: a workload kind the controller cannot
// migrate, a workload Karmada does not propagate or that runs on more than
// one cluster, a target that is the source or not a Ready member cluster, and
// a second active migration of the same workload. On update it only allows
// setting spec.abort.
//
// It only reads the Karmada control plane; it never mutates a request.
package webhook
