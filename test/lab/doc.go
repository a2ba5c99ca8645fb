// Package lab runs a real Karmada control plane and real member clusters as
// plain processes on one machine, for integration tests, end-to-end tests,
// benchmarks and the demo (see README.md).
//
// Start brings up one etcd (a key prefix per apiserver), a PKI made with
// crypto/x509, the Karmada plane (kube-apiserver, kube-controller-manager,
// karmada-aggregated-apiserver, karmada-webhook, karmada-controller-manager),
// member clusters with kwok nodes registered in Push mode, user-space relays
// that give members a network position, and the project's own components
// from the table in components.go. It returns when everything is Ready and
// gives kubeconfigs and clients for every cluster; Stop tears it all down.
//
// The lab never sleeps for a fixed time to synchronize (readiness is
// polled), never leaves a process or a listening port behind (process
// groups, Pdeathsig), and never touches anything outside its directory and
// the repository's bin/. Its binaries are built by hack/lab-binaries.sh;
// a missing one is an error, never a reason to skip.
package lab
