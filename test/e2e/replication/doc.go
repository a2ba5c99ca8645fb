// Package replication is the lab's end-to-end test of volume replication:
// the lab app writes continuously to a local PersistentVolume in member1;
// the target claim is pre-provisioned in member2 from the source objects
// (agent/replication/provision); the VolumeReplication reconcilers of both
// members (agent/replication.Setup, against the members' real
// kube-apiservers, with the project's CRD and its CEL rules) run the
// pre-copy rounds through the lab's WAN relay between member1 and member2
// (the first one a tar stream into the empty target) and the pre-freeze
// verification while the app still writes; then the app is frozen (SIGSTOP:
// one process, the same stop the cgroup freezer gives a pod), the final
// delta is sent, only what changed since the pre-freeze verification is
// checksummed (the Verified condition says so), and the target volume must
// equal the source byte for byte, metadata included.
package replication
