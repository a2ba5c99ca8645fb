package lab

import (
	"context"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"time"

	"golang.org/x/sync/errgroup"
	"sigs.k8s.io/yaml"
)

// Scope says how many instances of a component the lab runs.
type Scope int

const (
	// ScopeKarmada runs one instance against the Karmada plane.
	ScopeKarmada Scope = iota
	// ScopeMember runs one instance per member cluster.
	ScopeMember
	// ScopeNode runs one instance per kwok node of every member.
	ScopeNode
)

// ComponentSpec describes one of the project's own components the way it
// runs in a cluster: the same binary with the same flags, pointed at the
// lab's kubeconfigs. The binary is built from ./cmd/<Binary>.
type ComponentSpec struct {
	// Name identifies the component in Options.Components and in logs.
	Name string
	// Binary is the command under cmd/ (default Name).
	Binary string
	// Packages are the Go packages built into the lab's bin directory for
	// the component, each binary named after its package's last element;
	// default ./cmd/<Binary>. The first one is the component's binary.
	Packages []string
	// Scope says where instances run.
	Scope Scope
	// Ports are named ports allocated for every instance before any
	// instance starts, so instances can refer to each other's ports.
	Ports []string
	// Args returns the instance's command-line flags.
	Args func(in *Instance) ([]string, error)
	// Ready waits until the instance serves; nil means started is enough.
	Ready func(ctx context.Context, in *Instance) error
	// Env returns environment variables the instance gets besides the
	// lab's own; nil means none.
	Env func(in *Instance) []string
}

func (s *ComponentSpec) env(in *Instance) []string {
	if s.Env == nil {
		return nil
	}
	return s.Env(in)
}

func (s *ComponentSpec) binary() string {
	if s.Binary != "" {
		return s.Binary
	}
	return s.Name
}

func (s *ComponentSpec) packages() []string {
	if len(s.Packages) > 0 {
		return s.Packages
	}
	return []string{"./cmd/" + s.binary()}
}

// Instance is one running copy of a component.
type Instance struct {
	Spec *ComponentSpec
	// Name is the process name: the component's name, plus the member's
	// and node's names for member and node scopes.
	Name string
	Lab  *Lab
	// Member is nil for ScopeKarmada.
	Member *Member
	// Node is set for ScopeNode.
	Node string
	// Ports holds the instance's allocated ports by name.
	Ports map[string]int
}

// Addr returns 127.0.0.1:<port> for a named port of the instance.
func (in *Instance) Addr(port string) string { return fmt.Sprintf("127.0.0.1:%d", in.Ports[port]) }

// Dir returns a directory for the instance's files, created on demand.
func (in *Instance) Dir() (string, error) {
	d := filepath.Join(in.Lab.Dir, "components", in.Name)
	if err := os.MkdirAll(d, 0o755); err != nil {
		return "", fmt.Errorf("creating %s: %w", d, err)
	}
	return d, nil
}

// components is the table of the project's components. Adding one to the
// lab is adding an entry here.
var components = []ComponentSpec{
	// The OCI registry checkpoint images are pushed to and pulled from.
	{
		Name: "lab-registry", Binary: "labnode", Packages: []string{"./test/labnode/cmd/labnode"},
		Scope: ScopeKarmada, Ports: []string{"registry"}, Args: registryArgs, Ready: httpReady("registry", "/v2/"),
	},
	// Each kwok node's runtime: the kubelet checkpoint API and the pods'
	// containers, runc containers checkpointed by CRIU or the memory
	// stand-in's processes (package labnode, Options.NodeRuntime).
	{
		Name: "labnode", Packages: []string{"./test/labnode/cmd/labnode", "./test/labapp"},
		Scope: ScopeNode, Ports: []string{"kubelet"}, Args: labnodeArgs, Ready: labnodeReady, Env: labnodeEnv,
	},
	// The agent as its DaemonSet runs it: checkpoints and volume replication.
	{
		Name: "livemigrate-agent", Scope: ScopeNode, Ports: []string{"health", "replication"},
		Args: agentArgs, Ready: httpReady("health", "/readyz"),
	},
	// The agent as its restore Deployment runs it: the restore webhook.
	{
		Name: "livemigrate-restore", Binary: "livemigrate-agent", Scope: ScopeMember, Ports: []string{"webhook", "health"},
		Args: restoreArgs, Ready: restoreReady,
	},
	// The LiveMigration controller and its webhook; the kubectl plugin is built beside it.
	{
		Name: "livemigrate-descheduler", Packages: []string{"./cmd/livemigrate-descheduler", "./cmd/kubectl-livemigrate"},
		Scope: ScopeKarmada, Ports: []string{"webhook", "metrics", "health"}, Args: deschedulerArgs, Ready: deschedulerReady,
	},
	{
		Name:  "livemigrate-scheduler",
		Scope: ScopeKarmada,
		Ports: []string{"health"},
		Args: func(in *Instance) ([]string, error) {
			return in.Lab.karmadaSchedulerArgs(in.Ports["health"], DefaultSchedulerName), nil
		},
		Ready: httpReady("health", "/healthz"),
	},
	{
		// One prober per member; peers and origins are reached only through
		// the relays of the member's network position.
		Name:  "livemigrate-prober",
		Scope: ScopeMember,
		Ports: []string{"echo", "metrics"},
		Args:  proberArgs,
		Ready: httpReady("metrics", "/healthz"),
	},
}

// ProbeInterval is the prober's interval between rounds in the lab.
const ProbeInterval = 2 * time.Second

// proberArgs writes the prober's configuration file: its echo endpoint, and
// every peer prober and origin through a relay placed between this member
// and the peer or origin.
func proberArgs(in *Instance) ([]string, error) {
	type endpoint struct {
		Name    string `json:"name"`
		Address string `json:"address"`
	}
	cfg := struct {
		ClusterName   string     `json:"clusterName"`
		ListenAddress string     `json:"listenAddress"`
		Peers         []endpoint `json:"peers,omitempty"`
		Origins       []endpoint `json:"origins,omitempty"`
		Interval      string     `json:"interval"`
		Samples       int        `json:"samples"`
		Timeout       string     `json:"timeout"`
	}{
		ClusterName: in.Member.Name, ListenAddress: in.Addr("echo"),
		Interval: ProbeInterval.String(), Samples: 5, Timeout: "2s",
	}
	for _, peer := range in.Lab.Instances(in.Spec.Name) {
		if peer.Member == in.Member {
			continue
		}
		addr, err := in.Lab.Relay(in.Member.Name, peer.Member.Name, peer.Addr("echo"))
		if err != nil {
			return nil, err
		}
		cfg.Peers = append(cfg.Peers, endpoint{Name: peer.Member.Name, Address: addr})
	}
	for _, o := range in.Lab.Origins {
		addr, err := in.Lab.Relay(in.Member.Name, o.Name, o.Addr)
		if err != nil {
			return nil, err
		}
		cfg.Origins = append(cfg.Origins, endpoint{Name: o.Name, Address: addr})
	}
	dir, err := in.Dir()
	if err != nil {
		return nil, err
	}
	raw, err := yaml.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("encoding the prober configuration: %w", err)
	}
	path := filepath.Join(dir, "prober.yaml")
	if err := os.WriteFile(path, raw, 0o644); err != nil {
		return nil, fmt.Errorf("writing %s: %w", path, err)
	}
	return []string{
		"--config=" + path,
		"--kubeconfig=" + in.Lab.Karmada.Kubeconfig,
		"--create-if-missing",
		"--metrics-bind-address=" + in.Addr("metrics"),
		"--v=1",
	}, nil
}

// DefaultSchedulerName is the scheduler name livemigrate-scheduler serves
// in the lab: Karmada's default, used by every PropagationPolicy that does
// not name a scheduler.
const DefaultSchedulerName = "default-scheduler"

// Components returns the names of every component the lab knows.
func Components() []string {
	out := make([]string, 0, len(components))
	for _, c := range components {
		out = append(out, c.Name)
	}
	return out
}

// DefaultComponents are the components a lab runs unless Options.Components
// says otherwise: every known component whose command exists in this
// checkout.
func DefaultComponents() []string {
	root, err := RepoRoot()
	var out []string
	for _, c := range components {
		if err == nil {
			if _, serr := os.Stat(filepath.Join(root, c.packages()[0])); serr != nil {
				continue
			}
		}
		out = append(out, c.Name)
	}
	return out
}

func componentByName(name string) (*ComponentSpec, bool) {
	for i := range components {
		if components[i].Name == name {
			return &components[i], true
		}
	}
	return nil, false
}

// httpReady returns a Ready function polling http://<port>/<path>.
func httpReady(port, path string) func(context.Context, *Instance) error {
	return func(ctx context.Context, in *Instance) error {
		return waitHTTP(ctx, in.Name, "http://"+in.Addr(port)+path, nil)
	}
}

// selectedComponents resolves Options.Components.
func (l *Lab) selectedComponents() ([]*ComponentSpec, error) {
	var out []*ComponentSpec
	for _, name := range l.opts.Components {
		spec, ok := componentByName(name)
		if !ok {
			return nil, fmt.Errorf("unknown component %q", name)
		}
		if _, err := os.Stat(filepath.Join(l.root, spec.packages()[0])); err != nil {
			return nil, fmt.Errorf("component %s: %w", name, err)
		}
		out = append(out, spec)
	}
	return out, nil
}

// buildComponents builds (or checks, with SkipProjectBuild) the binaries of
// the selected components.
func (l *Lab) buildComponents(specs []*ComponentSpec) error {
	var pkgs, names []string
	for _, s := range specs {
		for _, p := range s.packages() {
			if !slices.Contains(pkgs, p) {
				pkgs = append(pkgs, p)
				names = append(names, path.Base(p))
			}
		}
	}
	if l.opts.SkipProjectBuild {
		return checkBinaries(l.binDir, names)
	}
	return buildProject(l.root, l.binDir, pkgs)
}

// instancesOf expands a spec into its instances, with ports allocated.
func (l *Lab) instancesOf(spec *ComponentSpec) ([]*Instance, error) {
	var out []*Instance
	add := func(name string, m *Member, node string) error {
		in := &Instance{Spec: spec, Name: name, Lab: l, Member: m, Node: node, Ports: map[string]int{}}
		for _, p := range spec.Ports {
			port, err := l.port(name + "/" + p)
			if err != nil {
				return err
			}
			in.Ports[p] = port
		}
		out = append(out, in)
		return nil
	}
	switch spec.Scope {
	case ScopeKarmada:
		if err := add(spec.Name, nil, ""); err != nil {
			return nil, err
		}
	case ScopeMember:
		for _, m := range l.Members {
			if err := add(spec.Name+"-"+m.Name, m, ""); err != nil {
				return nil, err
			}
		}
	case ScopeNode:
		for _, m := range l.Members {
			for _, n := range m.Nodes {
				if err := add(spec.Name+"-"+n, m, n); err != nil {
					return nil, err
				}
			}
		}
	}
	return out, nil
}

// startComponents allocates every instance's ports first, then starts all
// instances and waits until each is ready.
func (l *Lab) startComponents(ctx context.Context, specs []*ComponentSpec) error {
	var all []*Instance
	for _, s := range specs {
		ins, err := l.instancesOf(s)
		if err != nil {
			return err
		}
		all = append(all, ins...)
	}
	l.instancesMu.Lock()
	l.instances = append(l.instances, all...)
	l.instancesMu.Unlock()
	g, gctx := errgroup.WithContext(ctx)
	for _, in := range all {
		args, env, err := in.command()
		if err != nil {
			return err
		}
		if _, err := l.sup.start(in.Name, l.bin(in.Spec.binary()), args, env); err != nil {
			return err
		}
		if in.Spec.Ready != nil {
			g.Go(func() error { return in.Spec.Ready(gctx, in) })
		}
	}
	return g.Wait()
}

// command returns the instance's flags and extra environment: the
// components table's flags, or what Options.Launch makes of them, and the
// table's environment followed by the hook's.
func (in *Instance) command() ([]string, []string, error) {
	args, err := in.Spec.Args(in)
	if err != nil {
		return nil, nil, fmt.Errorf("flags of %s: %w", in.Name, err)
	}
	env := in.Spec.env(in)
	if in.Lab.opts.Launch == nil {
		return args, env, nil
	}
	args, launchEnv, err := in.Lab.opts.Launch(in, args)
	if err != nil {
		return nil, nil, fmt.Errorf("command line of %s: %w", in.Name, err)
	}
	// The hook's environment comes last so that it wins over the table's.
	return args, append(append([]string(nil), env...), launchEnv...), nil
}

// Instances returns the running instances of a component.
func (l *Lab) Instances(component string) []*Instance {
	l.instancesMu.Lock()
	defer l.instancesMu.Unlock()
	var out []*Instance
	for _, in := range l.instances {
		if in.Spec.Name == component {
			out = append(out, in)
		}
	}
	return out
}

// Kill ends a running instance at once (SIGKILL), as a crash would; the
// lab does not count it as an unexpected exit. Restart brings it back.
func (l *Lab) Kill(in *Instance) error {
	if l.sup.killNamed(in.Name) == 0 {
		return fmt.Errorf("%s is not running", in.Name)
	}
	return nil
}

// Restart starts an instance again, with the flags its Args give now, and
// waits until it is ready.
func (l *Lab) Restart(ctx context.Context, in *Instance) error {
	args, env, err := in.command()
	if err != nil {
		return err
	}
	if _, err := l.sup.start(in.Name, l.bin(in.Spec.binary()), args, env); err != nil {
		return err
	}
	if in.Spec.Ready != nil {
		return in.Spec.Ready(ctx, in)
	}
	return nil
}

// SetDeschedulerArgs replaces the extra flags (Options.DeschedulerArgs) the
// descheduler gets from its next Restart on.
func (l *Lab) SetDeschedulerArgs(args ...string) {
	l.instancesMu.Lock()
	defer l.instancesMu.Unlock()
	l.opts.DeschedulerArgs = append([]string(nil), args...)
}

// Instance returns the running instance of a component by its instance
// name (e.g. "livemigrate-agent-member2-node-1"), or nil.
func (l *Lab) Instance(name string) *Instance {
	l.instancesMu.Lock()
	defer l.instancesMu.Unlock()
	for _, in := range l.instances {
		if in.Name == name {
			return in
		}
	}
	return nil
}
