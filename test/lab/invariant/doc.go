// Package invariant watches the lab's application processes from the host
// and records every breach of the two safety invariants a migration must
// keep at every instant:
//
//   - never two live copies: two lab app processes of one workload identity
//     (a StatefulSet pod name, say) both running unfrozen at once;
//   - nothing lost: a lab app process whose committed memory counter is
//     behind what its log on the volume says was written, or a log that
//     continues with a value it already holds or skips one (a restore from
//     a stale state). A process that starts fresh on an existing log (its
//     first value is 1: a container restarted, or a target pod admitted
//     without its checkpoint, which the migration rolls back) starts a new
//     sequence; it is noted, not counted.
//
// It reads only host facts that hold for a lab app run as a plain process
// or inside a container with its own PID namespace: the processes in
// /proc (argv, environment, cgroup), the freezer state of their cgroup
// (cgroup v1 freezer.state, inherited from a frozen parent; cgroup v2
// cgroup.events), the layout file the lab app publishes and its memory
// (through /proc/<pid>/mem), and its counter log. It never asks an API
// server whether something runs: that is what it checks.
//
// What names a process's workload is given by an Identity function; the
// default is the HOSTNAME in its environment (container runtimes set it to
// the pod's hostname, the pod name), else its pod cgroup. It is a test
// helper: it only reads, never signals, a process.
package invariant
