// Package integration runs the livemigrate-descheduler, wired as its binary
// wires it, against a real kube-apiserver and etcd (from bin/, built by
// `make lab-binaries`) serving the Karmada binding and policy CRDs and the
// livemigrate CRDs, with a simulated agent, karmada-scheduler and garbage
// collector. It checks what unit tests cannot: the CRDs and their CEL rules
// as served, the admission webhook as called by the API server, and the
// state machine over real watches, optimistic concurrency and finalizers.
// The API server authorizes with RBAC: the agents' namespace, identities
// and roles are those make manifests renders for a member, the
// descheduler's bound to the admin identity it uses (which is in
// system:masters: the descheduler's own roles are not what lets it act).
//
// The member clusters are the same API server (two Cluster objects pointing
// at it), so the "target workload" the rollback removes is the workload
// itself. It holds tests only.
package integration
