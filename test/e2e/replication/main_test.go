package replication

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

var (
	env      *environment
	setupErr error
)

type environment struct {
	lab    *lab.Lab
	dir    string
	labapp string
}

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "FAIL: the replication end-to-end test needs root (the receiver chroots into the target volume)")
		os.Exit(1)
	}
	if _, err := exec.LookPath("rsync"); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL: rsync is not installed (apt-get install -y rsync)")
		os.Exit(1)
	}
	// Two members on the simulated WAN: 2 ms + 10 ms one way between them,
	// capped at 20 MiB/s.
	opts := lab.Options{
		Components: []string{},
		MemberSpecs: []lab.MemberSpec{
			{Name: "member1", Nodes: 1, Position: lab.NetworkPosition{Delay: metav1.Duration{Duration: 2 * time.Millisecond}, BytesPerSecond: 100 << 20}},
			{Name: "member2", Nodes: 1, Position: lab.NetworkPosition{Delay: metav1.Duration{Duration: 10 * time.Millisecond}, BytesPerSecond: 20 << 20}},
		},
	}
	dir, err := os.MkdirTemp("", "e2e-replication-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := lab.RunTests(m, opts, func(l *lab.Lab) {
		env, setupErr = setup(l, dir)
		if setupErr != nil {
			fmt.Fprintf(os.Stderr, "setting up: %v\n", setupErr)
		}
	})
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

func setup(l *lab.Lab, dir string) (*environment, error) {
	root, err := lab.RepoRoot()
	if err != nil {
		return nil, err
	}
	e := &environment{lab: l, dir: dir, labapp: filepath.Join(dir, "bin", "labapp")}
	cmd := exec.Command("go", "build", "-o", e.labapp, "./test/labapp")
	cmd.Dir, cmd.Stdout, cmd.Stderr = root, os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return e, fmt.Errorf("building the lab app: %w", err)
	}
	return e, nil
}

func requireEnv(t *testing.T) *environment {
	t.Helper()
	if env == nil {
		t.Fatalf("no test environment: %v", setupErr)
	}
	return env
}
