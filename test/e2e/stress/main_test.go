package stress

import (
	"fmt"
	"os"
	"os/exec"
	"testing"

	"github.com/livemigrate/livemigrate/test/lab"
)

var testLab *lab.Lab

// perCluster is the descheduler's concurrency budget per member cluster.
const perCluster = 2

// Three members of two nodes; the descheduler admits at most perCluster
// migrations per member at once. The invariant monitor watches every lab
// app process for the whole run.
func labOptions() lab.Options {
	return lab.Options{
		Members: 3, NodesPerMember: 2, Invariants: true,
		DeschedulerArgs: []string{fmt.Sprintf("--max-active-migrations-per-cluster=%d", perCluster), "--max-active-migrations=10"},
	}
}

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "FAIL: the concurrency stress test needs root (cgroup freezer, /proc/<pid>/mem, the replication receiver's chroot)")
		os.Exit(1)
	}
	if _, err := exec.LookPath("rsync"); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL: rsync is not installed (make deps)")
		os.Exit(1)
	}
	os.Exit(lab.RunTests(m, labOptions(), func(l *lab.Lab) { testLab = l }))
}
