package rebalance

import (
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/livemigrate/livemigrate/test/lab"
)

var testLab *lab.Lab

// interval is the rounds' interval: short, so that the test sees several.
const interval = 10 * time.Second

// deschedulerArgs are the descheduler's flags in the given rebalancing mode.
func deschedulerArgs(mode string) []string {
	return []string{"--rebalance-mode=" + mode, "--rebalance-interval=" + interval.String(),
		"--rebalance-high=80", "--rebalance-low=50"}
}

// Three members of two nodes of 8 CPU each; the descheduler starts in DryRun.
func labOptions() lab.Options {
	return lab.Options{Members: 3, NodesPerMember: 2, Invariants: true, DeschedulerArgs: deschedulerArgs("DryRun")}
}

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "FAIL: the rebalancing end-to-end test needs root (cgroup freezer, /proc/<pid>/mem, the replication receiver's chroot)")
		os.Exit(1)
	}
	if _, err := exec.LookPath("rsync"); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL: rsync is not installed (make deps)")
		os.Exit(1)
	}
	os.Exit(lab.RunTests(m, labOptions(), func(l *lab.Lab) { testLab = l }))
}
