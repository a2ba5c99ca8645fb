// Package webhook holds the descheduler's admission webhooks: the
// validating webhook for LiveMigrations (below), the policy annotation
// webhook (PolicyAnnotations) and the placement webhook (PlacementHold, a
// mutating webhook on ResourceBinding updates, see
// descheduler/placementtrigger).
//
// The LiveMigration webhook:
// On create it checks the spec's values as the CRD's CEL rules do (a
// duration or quantity that does not parse, or is not greater than zero;
// an unsupported workload kind), so that a cluster whose CRD predates those
// rules refuses them too, and what the rules cannot check because it needs
// other objects: a workload Karmada does not propagate or that runs on more
// than one cluster, a target that is the source or not a Ready member
// cluster, and a second active migration of the same workload (a migration
// that has not started and whose spec is invalid does not count: the
// controller fails it without acting). That check reads a list, so two
// migrations of one workload created at the same instant can both pass it;
// the controller arbitrates them with a per-workload Lease that the API
// server grants to one (migration.LockName), and the other fails with
// MigrationInProgress before it freezes anything. On update it only allows setting
// spec.abort, comparing values, not their spellings.
//
// Every denial is an Invalid status whose causes name the field and say
// what to write instead. It only reads the Karmada control plane; only the
// placement webhook mutates a request.
package webhook
