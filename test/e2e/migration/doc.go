// Package migration is the lab end-to-end test of live migration: the whole
// system runs as it does in clusters (the lab's components table: agents
// with their node runtimes, restore webhooks, registry, descheduler,
// schedulers), a StatefulSet of the lab app with a local volume is moved
// with `kubectl livemigrate move … --wait`, and the safety invariants are
// checked from the host (package scenario).
//
// It needs root (cgroup freezer, /proc/<pid>/mem, chroot of the
// replication receiver), rsync and the lab binaries (make lab-binaries);
// without them it fails, it never skips.
package migration
