package checkpoint

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/livemigrate/livemigrate/test/e2e/migration/scenario"
	"github.com/livemigrate/livemigrate/test/lab"
)

// env is shared by the tests; setupErr says why it is missing.
var (
	env      *environment
	setupErr error
)

type environment struct {
	lab *lab.Lab
	// host locates the lab app processes of the node runtimes on the host.
	host *scenario.Env
	// registry is the lab registry's host:port.
	registry string
	members  map[string]*scenario.Cluster
}

// labOptions runs two members of one node each with the components the
// checkpoint path needs: the registry, the node runtimes, the node agents
// and the restore webhooks (no descheduler: the tests write the agents'
// objects themselves). The invariant monitor watches every lab app process
// for the whole run: a source stays frozen while its checkpoint, restored
// in the other member, goes on writing its log on the shared volume.
func labOptions() lab.Options {
	return lab.Options{
		Members: 2, NodesPerMember: 1, Invariants: true,
		Components: []string{"lab-registry", "labnode", "livemigrate-agent", "livemigrate-restore"},
	}
}

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "FAIL: the checkpoint end-to-end test needs root (cgroup freezer, /proc/<pid>/mem)")
		os.Exit(1)
	}
	os.Exit(lab.RunTests(m, labOptions(), func(l *lab.Lab) {
		env, setupErr = setup(l)
		if setupErr != nil {
			fmt.Fprintf(os.Stderr, "setting up the test environment: %v\n", setupErr)
		}
	}))
}

func requireEnv(t *testing.T) *environment {
	t.Helper()
	if env == nil {
		t.Fatalf("no test environment: %v", setupErr)
	}
	return env
}

func setup(l *lab.Lab) (*environment, error) {
	root, err := lab.RepoRoot()
	if err != nil {
		return nil, err
	}
	host, err := scenario.FromLab(l, filepath.Join(root, "bin"), io.Discard, func(string, ...any) {})
	if err != nil {
		return nil, err
	}
	if l.RegistryHost() == "" {
		return nil, fmt.Errorf("the lab runs no registry")
	}
	return &environment{lab: l, host: host, registry: l.RegistryHost(), members: host.Members}, nil
}

// member returns the i-th member of the lab.
func (e *environment) member(i int) *scenario.Cluster { return e.members[e.lab.Members[i].Name] }

// volume returns a host directory for the hostPath volume of the tests in ns.
func (e *environment) volume(t *testing.T, ns string) string {
	t.Helper()
	dir := filepath.Join(e.lab.Dir, "disks", "e2e-checkpoint", ns)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}
