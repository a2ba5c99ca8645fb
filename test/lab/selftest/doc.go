// Package selftest checks the lab itself against real binaries: member
// clusters Ready in Karmada, kwok nodes Ready, workloads propagated, the
// simulated network between members, and a teardown that leaves no process
// and no listening port behind, even when the test binary is killed.
//
// It needs the binaries of make lab-binaries and fails (never skips)
// without them.
package selftest
