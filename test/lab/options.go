package lab

import (
	"fmt"
	"os"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Node runtimes (Options.NodeRuntime).
const (
	// NodeRuntimeRunc, the default, runs pods as runc containers
	// checkpointed and restored by CRIU.
	NodeRuntimeRunc = "runc"
	// NodeRuntimeProcess is the memory stand-in for machines where CRIU
	// does not work (criu check fails): chosen explicitly, never as a
	// fallback.
	NodeRuntimeProcess = "process"
	// NodeRuntimeEnv names the environment variable that picks the node
	// runtime when Options.NodeRuntime is empty.
	NodeRuntimeEnv = "LIVEMIGRATE_LAB_NODE_RUNTIME"
)

const (
	kwokVersion    = "v0.8.0"
	karmadaModule  = "github.com/karmada-io/karmada"
	defaultTimeout = 3 * time.Minute
)

// Options configure a lab.
type Options struct {
	// Members is the number of member clusters, named member1…memberN, when
	// MemberSpecs is empty.
	Members int `json:"members,omitempty"`
	// NodesPerMember is the number of kwok nodes of each member when
	// MemberSpecs is empty (default 2).
	NodesPerMember int `json:"nodesPerMember,omitempty"`
	// NodeCapacity is every node's capacity when MemberSpecs is empty
	// (default 8 CPU, 32Gi memory, 110 pods).
	NodeCapacity corev1.ResourceList `json:"nodeCapacity,omitempty"`
	// MemberSpecs describes each member explicitly; it overrides Members,
	// NodesPerMember and NodeCapacity.
	MemberSpecs []MemberSpec `json:"memberSpecs,omitempty"`

	// Origins are named echo endpoints at network positions (user
	// populations), probed by every member's prober.
	Origins []OriginSpec `json:"origins,omitempty"`

	// Components are the project's components to run, by name (see
	// Components()). Nil means DefaultComponents.
	Components []string `json:"components,omitempty"`
	// StockScheduler also runs the stock karmada-scheduler under the
	// scheduler name StockSchedulerName, for side-by-side comparisons.
	StockScheduler bool `json:"stockScheduler,omitempty"`

	// Dir holds the lab's PKI, kubeconfigs, logs and etcd data. Empty means
	// a new temporary directory, removed by Stop unless KeepDir is set.
	Dir string `json:"dir,omitempty"`
	// KeepDir keeps Dir after Stop.
	KeepDir bool `json:"keepDir,omitempty"`
	// Invariants makes RunTests watch the lab app processes with the
	// invariant monitor (package invariant) for the whole run and fail the
	// package on any violation; EnvInvariants turns it on for any lab.
	Invariants bool `json:"invariants,omitempty"`
	// BinDir holds the binaries; empty means <repository>/bin.
	BinDir string `json:"binDir,omitempty"`
	// SkipProjectBuild does not run go build for the project's components
	// (they must already be in BinDir).
	SkipProjectBuild bool `json:"skipProjectBuild,omitempty"`
	// WANDataPath also sends the live-migration data path through the
	// simulated WAN (benchmarks): checkpoint images are pushed to a
	// registry at the target member's site through a relay carrying the
	// link (Lab.RegistryHostAt) and pulled from it locally, and each
	// agent's replication receiver is advertised at an address of its own
	// (127.0.0.<10+member index>) where a relay from the other member
	// forwards to it. Needs exactly two members.
	WANDataPath bool `json:"wanDataPath,omitempty"`
	// NodeRuntime is how the node runtimes run pods: NodeRuntimeRunc
	// (runc containers, checkpointed and restored by CRIU 4.2.1, which
	// hack/ensure-criu.sh builds when missing) or NodeRuntimeProcess (the
	// memory stand-in, for machines where criu check fails). Empty takes
	// $LIVEMIGRATE_LAB_NODE_RUNTIME, else NodeRuntimeRunc. With runc,
	// Start fails when CRIU cannot be installed or criu check fails; it
	// never falls back to the stand-in.
	NodeRuntime string `json:"nodeRuntime,omitempty"`
	// DeschedulerArgs are extra flags of livemigrate-descheduler (e.g.
	// --max-active-migrations-per-cluster=1), after the lab's own.
	DeschedulerArgs []string `json:"deschedulerArgs,omitempty"`
	// KarmadaControllerManagerArgs are extra flags of
	// karmada-controller-manager (e.g. --feature-gates=Failover=true).
	KarmadaControllerManagerArgs []string `json:"karmadaControllerManagerArgs,omitempty"`
	// StartTimeout bounds Start (default 3 minutes).
	StartTimeout metav1.Duration `json:"startTimeout,omitempty"`
	// Launch, when set, gives the command line of every instance of the
	// project's components instead of the components table: it gets the
	// instance and the flags the table would give it, and returns the
	// flags and the extra environment to start it with (test/install
	// starts the components as the Helm chart renders them).
	Launch func(in *Instance, tableArgs []string) (args, env []string, err error) `json:"-"`
}

// MemberSpec describes one member cluster.
type MemberSpec struct {
	Name         string              `json:"name"`
	Nodes        int                 `json:"nodes"`
	NodeCapacity corev1.ResourceList `json:"nodeCapacity,omitempty"`
	// Labels are put on the member's Cluster object in Karmada.
	Labels map[string]string `json:"labels,omitempty"`
	// Position is where the member sits on the lab's simulated network.
	Position NetworkPosition `json:"position"`
}

// OriginSpec describes an origin (see Origin).
type OriginSpec struct {
	Name string `json:"name"`
	// Near is the member at whose site the origin sits; its Position is
	// then relative to that member. Empty: on the backbone.
	Near     string          `json:"near,omitempty"`
	Position NetworkPosition `json:"position"`
}

// NetworkPosition places a member (or an origin) on the simulated network:
// members hang off a backbone, so the one-way delay between two members is
// the sum of their Delays, and their bandwidth is the smaller of their caps. Traffic between members goes
// through relays that impose exactly that (see package relay).
type NetworkPosition struct {
	// Delay is the one-way delay between the member and the backbone.
	Delay metav1.Duration `json:"delay"`
	// BytesPerSecond caps the member's link; zero means unlimited.
	BytesPerSecond int64 `json:"bytesPerSecond,omitempty"`
}

// DefaultNodeCapacity is the capacity of a node when none is given.
func DefaultNodeCapacity() corev1.ResourceList {
	return corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("8"),
		corev1.ResourceMemory: resource.MustParse("32Gi"),
		corev1.ResourcePods:   resource.MustParse("110"),
	}
}

// DefaultOptions is the lab used by the demo and by livemigrate-lab up:
// three members with different capacities and network distances.
func DefaultOptions() Options {
	capacity := func(cpu, mem string) corev1.ResourceList {
		return corev1.ResourceList{
			corev1.ResourceCPU:    resource.MustParse(cpu),
			corev1.ResourceMemory: resource.MustParse(mem),
			corev1.ResourcePods:   resource.MustParse("110"),
		}
	}
	return Options{
		MemberSpecs: []MemberSpec{
			{
				Name: "member1", Nodes: 3, NodeCapacity: capacity("8", "32Gi"),
				Labels:   map[string]string{"topology.livemigrate.io/region": "eu-west"},
				Position: NetworkPosition{Delay: metav1.Duration{Duration: 2 * time.Millisecond}, BytesPerSecond: 100 << 20},
			},
			{
				Name: "member2", Nodes: 2, NodeCapacity: capacity("4", "16Gi"),
				Labels:   map[string]string{"topology.livemigrate.io/region": "eu-central"},
				Position: NetworkPosition{Delay: metav1.Duration{Duration: 10 * time.Millisecond}, BytesPerSecond: 50 << 20},
			},
			{
				Name: "member3", Nodes: 4, NodeCapacity: capacity("16", "64Gi"),
				Labels:   map[string]string{"topology.livemigrate.io/region": "us-east"},
				Position: NetworkPosition{Delay: metav1.Duration{Duration: 40 * time.Millisecond}, BytesPerSecond: 20 << 20},
			},
		},
		// Users next to member1 and next to member3.
		Origins: []OriginSpec{
			{Name: "eu-users", Near: "member1", Position: NetworkPosition{Delay: metav1.Duration{Duration: 1 * time.Millisecond}}},
			{Name: "us-users", Near: "member3", Position: NetworkPosition{Delay: metav1.Duration{Duration: 2 * time.Millisecond}}},
		},
		StockScheduler: true,
	}
}

// complete fills defaults and validates.
func (o Options) complete() (Options, error) {
	if len(o.MemberSpecs) == 0 {
		n := o.Members
		if n == 0 {
			n = 2
		}
		nodes := o.NodesPerMember
		if nodes == 0 {
			nodes = 2
		}
		capacity := o.NodeCapacity
		if capacity == nil {
			capacity = DefaultNodeCapacity()
		}
		for i := 1; i <= n; i++ {
			o.MemberSpecs = append(o.MemberSpecs, MemberSpec{
				Name: fmt.Sprintf("member%d", i), Nodes: nodes, NodeCapacity: capacity.DeepCopy(),
			})
		}
	}
	seen := map[string]bool{}
	for i := range o.MemberSpecs {
		m := &o.MemberSpecs[i]
		if m.Name == "" {
			return o, fmt.Errorf("member %d has no name", i)
		}
		if seen[m.Name] {
			return o, fmt.Errorf("member %q appears twice", m.Name)
		}
		seen[m.Name] = true
		if m.Nodes < 1 {
			return o, fmt.Errorf("member %q needs at least one node", m.Name)
		}
		if m.NodeCapacity == nil {
			m.NodeCapacity = DefaultNodeCapacity()
		}
		if _, ok := m.NodeCapacity[corev1.ResourcePods]; !ok {
			m.NodeCapacity[corev1.ResourcePods] = resource.MustParse("110")
		}
		if m.Position.Delay.Duration < 0 || m.Position.BytesPerSecond < 0 {
			return o, fmt.Errorf("member %q has a negative network position", m.Name)
		}
	}
	for _, org := range o.Origins {
		if org.Name == "" || seen[org.Name] {
			return o, fmt.Errorf("origin %q: empty or already used name", org.Name)
		}
		seen[org.Name] = true
		if org.Near != "" && !memberNamed(o.MemberSpecs, org.Near) {
			return o, fmt.Errorf("origin %q is near %q, which is not a member", org.Name, org.Near)
		}
		if org.Position.Delay.Duration < 0 || org.Position.BytesPerSecond < 0 {
			return o, fmt.Errorf("origin %q has a negative network position", org.Name)
		}
	}
	if o.NodeRuntime == "" {
		o.NodeRuntime = os.Getenv(NodeRuntimeEnv)
	}
	switch o.NodeRuntime {
	case "":
		o.NodeRuntime = NodeRuntimeRunc
	case NodeRuntimeRunc, NodeRuntimeProcess:
	default:
		return o, fmt.Errorf("nodeRuntime %q: write %q (runc containers checkpointed by CRIU) or %q (the memory stand-in)", o.NodeRuntime, NodeRuntimeRunc, NodeRuntimeProcess)
	}
	if o.WANDataPath && len(o.MemberSpecs) != 2 {
		return o, fmt.Errorf("wanDataPath needs exactly two members, not %d", len(o.MemberSpecs))
	}
	if o.Components == nil {
		o.Components = DefaultComponents()
	}
	for _, c := range o.Components {
		if _, ok := componentByName(c); !ok {
			return o, fmt.Errorf("unknown component %q", c)
		}
	}
	if o.StartTimeout.Duration == 0 {
		o.StartTimeout.Duration = defaultTimeout
	}
	return o, nil
}

func memberNamed(specs []MemberSpec, name string) bool {
	for _, m := range specs {
		if m.Name == name {
			return true
		}
	}
	return false
}
