package drain

import (
	"fmt"
	"os"
	"os/exec"
	"testing"

	"github.com/livemigrate/livemigrate/test/lab"
)

var testLab *lab.Lab

// rebootKey is a maintenance taint key configured by flag, besides the default.
const rebootKey = "lab.livemigrate.io/reboot"

// Three members; at most one migration per cluster at a time.
func labOptions() lab.Options {
	return lab.Options{
		Members: 3, NodesPerMember: 2, Invariants: true,
		DeschedulerArgs: []string{
			"--max-active-migrations-per-cluster=1",
			"--maintenance-taint-keys=livemigrate.io/maintenance," + rebootKey,
			// These tests are about draining, not about the budget: a
			// real CRIU dump on a loaded two-core machine once took 7 s,
			// and the overhead learned from it put the next migrations
			// into that member over the default 10 s.
			"--default-downtime-budget=1m",
		},
	}
}

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "FAIL: the drain end-to-end test needs root (cgroup freezer, /proc/<pid>/mem, the replication receiver's chroot)")
		os.Exit(1)
	}
	if _, err := exec.LookPath("rsync"); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL: rsync is not installed (make deps)")
		os.Exit(1)
	}
	os.Exit(lab.RunTests(m, labOptions(), func(l *lab.Lab) { testLab = l }))
}
