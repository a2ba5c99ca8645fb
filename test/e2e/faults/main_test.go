package faults

import (
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/livemigrate/livemigrate/test/lab"
)

var testLab *lab.Lab

// Two members on the simulated WAN, two nodes each, with the migration's
// data path (volume replication, the checkpoint push) through the link
// between them so that cutting it cuts the migration; a 20 MiB/s link
// makes the transfer of the lab app's memory last seconds. The invariant
// monitor watches every lab app process for the whole run.
func labOptions() lab.Options {
	return lab.Options{
		Invariants:  true,
		WANDataPath: true,
		MemberSpecs: []lab.MemberSpec{
			{Name: "member1", Nodes: 2, Position: lab.NetworkPosition{Delay: metav1.Duration{Duration: 2 * time.Millisecond}, BytesPerSecond: 100 << 20}},
			{Name: "member2", Nodes: 2, Position: lab.NetworkPosition{Delay: metav1.Duration{Duration: 10 * time.Millisecond}, BytesPerSecond: 20 << 20}},
		},
	}
}

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "FAIL: the fault matrix needs root (cgroup freezer, /proc/<pid>/mem, the replication receiver's chroot)")
		os.Exit(1)
	}
	if _, err := exec.LookPath("rsync"); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL: rsync is not installed (make deps)")
		os.Exit(1)
	}
	os.Exit(lab.RunTests(m, labOptions(), func(l *lab.Lab) { testLab = l }))
}
