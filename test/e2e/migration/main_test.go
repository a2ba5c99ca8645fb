package migration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/livemigrate/livemigrate/test/lab"
)

var testLab *lab.Lab

// Two members on the simulated WAN, two nodes each; the invariant monitor
// watches every lab app process for the whole run.
func labOptions() lab.Options {
	return lab.Options{
		Invariants: true,
		MemberSpecs: []lab.MemberSpec{
			{Name: "member1", Nodes: 2, Position: lab.NetworkPosition{Delay: metav1.Duration{Duration: 2 * time.Millisecond}, BytesPerSecond: 100 << 20}},
			{Name: "member2", Nodes: 2, Position: lab.NetworkPosition{Delay: metav1.Duration{Duration: 10 * time.Millisecond}, BytesPerSecond: 50 << 20}},
		},
	}
}

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "FAIL: the migration end-to-end test needs root (cgroup freezer, /proc/<pid>/mem, the replication receiver's chroot)")
		os.Exit(1)
	}
	if _, err := exec.LookPath("rsync"); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL: rsync is not installed (make deps)")
		os.Exit(1)
	}
	os.Exit(lab.RunTests(m, labOptions(), func(l *lab.Lab) { testLab = l }))
}

func binDir(t *testing.T) string {
	t.Helper()
	root, err := lab.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(root, "bin")
}
