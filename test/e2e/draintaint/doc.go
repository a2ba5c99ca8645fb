// Package draintaint is the end-to-end test of a NoExecute maintenance
// taint with Karmada's taint eviction on (feature gate Failover,
// --enable-no-execute-taint-eviction) in the lab's
// karmada-controller-manager: the opted-in workload, whose
// PropagationPolicy tolerates the maintenance taint for a while, moves live
// inside that toleration window, while the one that is not opted in is
// evicted and re-created by Karmada as usual.
package draintaint
