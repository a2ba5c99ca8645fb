// Package freezer freezes and thaws a whole pod through its cgroup, with the
// cgroup v1 freezer controller (freezer.state) or cgroup v2 (cgroup.freeze),
// finding the pod's cgroup from its UID under the kubelet's layout for both
// the cgroupfs and the systemd cgroup drivers.
//
// Freeze returns only once the kernel reports the cgroup frozen (v1 FROZEN,
// v2 cgroup.events "frozen 1"), and gives up when its context ends. It never
// creates, moves or removes cgroups; it only writes the freeze files.
//
// The v2 group-path check comes from containerd/cgroups/v3 (cgroup2);
// the write-and-wait loop is our own because the library's Freeze loops
// until the state is reached with no deadline, and a task stuck in
// uninterruptible sleep would hold the agent forever.
package freezer
