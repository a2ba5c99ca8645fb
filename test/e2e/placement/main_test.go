package placement

import (
	"fmt"
	"os"
	"os/exec"
	"testing"

	"github.com/livemigrate/livemigrate/test/lab"
)

var testLab *lab.Lab

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "FAIL: the placement end-to-end test needs root (cgroup freezer, /proc/<pid>/mem, the replication receiver's chroot)")
		os.Exit(1)
	}
	if _, err := exec.LookPath("rsync"); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL: rsync is not installed (make deps)")
		os.Exit(1)
	}
	os.Exit(lab.RunTests(m, lab.Options{Members: 2, NodesPerMember: 2, Invariants: true}, func(l *lab.Lab) { testLab = l }))
}
