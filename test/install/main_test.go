package install

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/livemigrate/livemigrate/test/lab"
)

var (
	testLab  *lab.Lab
	rendered *renderedChart
)

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "FAIL: the install test needs root (cgroup freezer, /proc/<pid>/mem, the replication receiver's chroot)")
		os.Exit(1)
	}
	if _, err := exec.LookPath("rsync"); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL: rsync is not installed (make deps)")
		os.Exit(1)
	}
	root, err := lab.RepoRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		os.Exit(1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	rendered, err = renderForLab(ctx, root)
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		os.Exit(1)
	}
	opts := lab.Options{
		MemberSpecs: []lab.MemberSpec{
			{Name: "member1", Nodes: 2, Position: lab.NetworkPosition{Delay: metav1.Duration{Duration: 2 * time.Millisecond}, BytesPerSecond: 100 << 20}},
			{Name: "member2", Nodes: 2, Position: lab.NetworkPosition{Delay: metav1.Duration{Duration: 10 * time.Millisecond}, BytesPerSecond: 50 << 20}},
		},
		Launch: rendered.launch,
	}
	os.Exit(lab.RunTests(m, opts, func(l *lab.Lab) { testLab = l }))
}
