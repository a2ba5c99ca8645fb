// Package stress is the lab's concurrency stress test of live migration:
// TestConcurrentMigrations starts N migrations of N StatefulSets of the lab
// app at once across three members, with the descheduler's concurrency
// budget at two migrations per member, and aborts every fourth midway
// (kubectl livemigrate abort). Every migration must end Succeeded with
// every invariant held or Failed after a clean rollback; the budget is
// checked from the phase transitions' timestamps (a migration holds its
// slots from Planning to its end); nothing of any migration is left in its
// other cluster; the invariant monitor watches every lab app process for
// the whole run.
//
// LIVEMIGRATE_STRESS_MIGRATIONS is N: 4 by default (make test), 12 under
// make test-faults. It needs root, rsync and the lab binaries; without them
// it fails, it never skips.
package stress
