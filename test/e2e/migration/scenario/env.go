// Package scenario is the live-migration scenario of the lab, shared by the
// end-to-end test (test/e2e/migration) and the demo (livemigrate-lab
// demo): run the lab app as a workload of the Karmada plane, write to its
// volume continuously, live-migrate it with the kubectl plugin, and check
// the safety invariants (docs/architecture.md §4) from what the lab can see on
// the host: the lab app processes, their cgroups, their memory and their
// logs on the volumes.
//
// It never changes the system under test: it creates workloads, runs
// kubectl livemigrate and observes.
package scenario

import (
	"fmt"
	"io"
	"path/filepath"
	"sort"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	policyv1alpha1 "github.com/karmada-io/karmada/pkg/apis/policy/v1alpha1"
	workv1alpha2 "github.com/karmada-io/karmada/pkg/apis/work/v1alpha2"

	agentv1alpha1 "github.com/livemigrate/livemigrate/api/agent/v1alpha1"
	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
	"github.com/livemigrate/livemigrate/test/lab"
)

// Cluster is one apiserver of the lab.
type Cluster struct {
	Name       string
	Kubeconfig string
	Config     *rest.Config
	Client     kubernetes.Interface
	// CR reads and writes typed objects (Karmada's and ours in the plane).
	CR client.Client
}

// Env is a running lab as the scenario sees it.
type Env struct {
	Karmada *Cluster
	Members map[string]*Cluster
	// Paths locates the node runtimes' files.
	Paths lab.Paths
	// BinDir holds kubectl-livemigrate and labapp.
	BinDir string
	// Out receives kubectl livemigrate's output and the scenario's report.
	Out io.Writer
	// Logf logs a line (t.Logf in tests).
	Logf func(format string, args ...any)
}

// MemberNames returns the member names, sorted.
func (e *Env) MemberNames() []string {
	out := make([]string, 0, len(e.Members))
	for n := range e.Members {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, lmv1alpha1.AddToScheme, agentv1alpha1.AddToScheme, policyv1alpha1.Install, workv1alpha2.Install} {
		if err := add(s); err != nil {
			panic(err)
		}
	}
	return s
}

func newCluster(name, kubeconfig string, cfg *rest.Config) (*Cluster, error) {
	if cfg == nil {
		var err error
		if cfg, err = clientcmd.BuildConfigFromFlags("", kubeconfig); err != nil {
			return nil, fmt.Errorf("kubeconfig of %s: %w", name, err)
		}
		cfg.QPS, cfg.Burst = 50, 100
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	cr, err := client.New(cfg, client.Options{Scheme: scheme()})
	if err != nil {
		return nil, err
	}
	return &Cluster{Name: name, Kubeconfig: kubeconfig, Config: cfg, Client: cs, CR: cr}, nil
}

// FromLab is the environment of a lab started in this process.
func FromLab(l *lab.Lab, binDir string, out io.Writer, logf func(string, ...any)) (*Env, error) {
	e := &Env{Members: map[string]*Cluster{}, Paths: l.Paths(), BinDir: binDir, Out: out, Logf: logf}
	var err error
	if e.Karmada, err = newCluster("karmada", l.Karmada.Kubeconfig, l.Karmada.Config); err != nil {
		return nil, err
	}
	for _, m := range l.Members {
		if e.Members[m.Name], err = newCluster(m.Name, m.Kubeconfig, m.Config); err != nil {
			return nil, err
		}
	}
	return e, nil
}

// FromKubeconfigs is the environment of a lab running elsewhere (started by
// livemigrate-lab up): its directory and its clusters' kubeconfigs by
// name, "karmada" for the plane.
func FromKubeconfigs(labDir string, kubeconfigs map[string]string, binDir string, out io.Writer, logf func(string, ...any)) (*Env, error) {
	e := &Env{Members: map[string]*Cluster{}, Paths: lab.Paths{Dir: labDir}, BinDir: binDir, Out: out, Logf: logf}
	for name, kc := range kubeconfigs {
		c, err := newCluster(name, kc, nil)
		if err != nil {
			return nil, err
		}
		if name == "karmada" {
			e.Karmada = c
		} else {
			e.Members[name] = c
		}
	}
	if e.Karmada == nil {
		return nil, fmt.Errorf("no kubeconfig of the Karmada plane among %d", len(kubeconfigs))
	}
	return e, nil
}

func (e *Env) bin(name string) string { return filepath.Join(e.BinDir, name) }
