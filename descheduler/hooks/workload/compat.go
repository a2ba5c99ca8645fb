package workload

import (
	"cmp"
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/livemigrate/livemigrate/agent/report"
	"github.com/livemigrate/livemigrate/descheduler/hooks/agentcr"
	"github.com/livemigrate/livemigrate/descheduler/migration"
)

// Compatibility is the CompatibilityHook comparing nodes: the target must
// have a Ready, schedulable node with the architecture and OS of every source
// pod's node and the same container runtime (name, e.g. cri-o), since a
// checkpoint restores only there. With AgentNamespace, it also reads the
// nodes' agent reports (package agent/report): the target node's criu
// check must have passed and its CRIU must be at least the source node's
// version (CRIU restores the images of its own and older versions). Fields
// a node does not report are not compared.
type Compatibility struct {
	Clients agentcr.ClientGetter
	// AgentNamespace holds the agents' node report Leases in the members;
	// empty leaves the reports out. AgentNamespaceFor overrides it per
	// member cluster.
	AgentNamespace    string
	AgentNamespaceFor map[string]string
}

var _ migration.CompatibilityHook = &Compatibility{}

type platform struct{ arch, os, runtime, kernel, criu, criuCheck string }

func platformOf(n *corev1.Node) platform {
	rt, _, _ := strings.Cut(n.Status.NodeInfo.ContainerRuntimeVersion, "://")
	return platform{arch: n.Status.NodeInfo.Architecture, os: n.Status.NodeInfo.OperatingSystem, runtime: rt, kernel: n.Status.NodeInfo.KernelVersion}
}

// withReport adds what the node's agent reports: its CRIU version and
// check, and the kernel and architecture where the Node has none.
func (p platform) withReport(l *coordinationv1.Lease) platform {
	if l == nil {
		return p
	}
	a := l.Annotations
	p.criu, p.criuCheck = a[report.AnnotationCRIUVersion], a[report.AnnotationCRIUCheck]
	if p.kernel == "" {
		p.kernel = a[report.AnnotationKernel]
	}
	if p.arch == "" {
		p.arch = a[report.AnnotationArchitecture]
	}
	return p
}

func (p platform) String() string {
	s := fmt.Sprintf("%s/%s %s", orUnknown(p.os), orUnknown(p.arch), orUnknown(p.runtime))
	if p.kernel != "" {
		s += ", kernel " + p.kernel
	}
	if p.criu != "" {
		s += ", CRIU " + p.criu
	}
	if p.criuCheck != "" && p.criuCheck != report.CRIUCheckOK {
		s += " (" + p.criuCheck + ")"
	}
	return s
}

func orUnknown(s string) string {
	if s == "" {
		return "?"
	}
	return s
}

// fits reports whether a target node of platform t can restore from s.
func (s platform) fits(t platform) bool {
	eq := func(a, b string) bool { return a == "" || b == "" || a == b }
	if t.criuCheck != "" && t.criuCheck != report.CRIUCheckOK {
		return false
	}
	if s.criu != "" && t.criu != "" && compareVersions(t.criu, s.criu) < 0 {
		return false
	}
	return eq(s.arch, t.arch) && eq(s.os, t.os) && eq(s.runtime, t.runtime)
}

// compareVersions compares dotted versions ("4.2.1") numerically, part by
// part; a part that is not a number compares as text.
func compareVersions(a, b string) int {
	pa, pb := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < len(pa) || i < len(pb); i++ {
		var x, y string
		if i < len(pa) {
			x = pa[i]
		}
		if i < len(pb) {
			y = pb[i]
		}
		nx, errx := strconv.Atoi(x)
		ny, erry := strconv.Atoi(y)
		if x == "" {
			nx, errx = 0, nil
		}
		if y == "" {
			ny, erry = 0, nil
		}
		switch {
		case errx == nil && erry == nil && nx != ny:
			return cmp.Compare(nx, ny)
		case (errx != nil || erry != nil) && x != y:
			return strings.Compare(x, y)
		}
	}
	return 0
}

// nodeReport is the agent's report Lease of a node, nil when the agent
// does not report there (or AgentNamespace is empty).
func (c *Compatibility) nodeReport(ctx context.Context, cl client.Client, cluster, node string) (*coordinationv1.Lease, error) {
	ns := c.AgentNamespace
	if n := c.AgentNamespaceFor[cluster]; n != "" {
		ns = n
	}
	if ns == "" {
		return nil, nil
	}
	l := &coordinationv1.Lease{}
	err := cl.Get(ctx, types.NamespacedName{Namespace: ns, Name: report.LeaseName(node)}, l)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if apierrors.IsForbidden(err) {
		// Credentials without get on the reports: compared as unreported.
		klog.FromContext(ctx).V(2).Info("Cannot read the agent's node report; its CRIU is not compared", "node", node, "err", err)
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the agent report of node %s: %w", node, err)
	}
	return l, nil
}

// Check fails when no target node fits a source pod's node.
func (c *Compatibility) Check(ctx context.Context, m migration.Migration, pods []migration.Pod) error {
	src, err := c.Clients.Get(ctx, m.Source)
	if err != nil {
		return err
	}
	dst, err := c.Clients.Get(ctx, m.Target)
	if err != nil {
		return err
	}
	var nodes corev1.NodeList
	if err := dst.List(ctx, &nodes); err != nil {
		return fmt.Errorf("listing nodes of %s: %w", m.Target, err)
	}
	var targets []platform
	for i := range nodes.Items {
		n := &nodes.Items[i]
		if n.Spec.Unschedulable || !ready(n) {
			continue
		}
		rep, err := c.nodeReport(ctx, dst, m.Target, n.Name)
		if err != nil {
			return err
		}
		targets = append(targets, platformOf(n).withReport(rep))
	}
	if len(targets) == 0 {
		return migration.NewStepFailedError("Incompatible", fmt.Sprintf("cluster %s has no Ready schedulable node", m.Target))
	}
	seen := map[string]bool{}
	for _, p := range pods {
		if p.Node == "" || seen[p.Node] {
			continue
		}
		seen[p.Node] = true
		n := &corev1.Node{}
		if err := src.Get(ctx, types.NamespacedName{Name: p.Node}, n); err != nil {
			return fmt.Errorf("reading node %s of pod %s in %s: %w", p.Node, p.Name, m.Source, err)
		}
		rep, err := c.nodeReport(ctx, src, m.Source, n.Name)
		if err != nil {
			return err
		}
		sp := platformOf(n).withReport(rep)
		ok := false
		for _, t := range targets {
			if sp.fits(t) {
				ok = true
				break
			}
		}
		if !ok {
			var have []string
			for _, t := range targets {
				have = append(have, t.String())
			}
			sort.Strings(have)
			return migration.NewStepFailedError("Incompatible", fmt.Sprintf(
				"pod %s runs on %s (node %s); no Ready node of %s matches (it has %s): choose another target",
				p.Name, sp, p.Node, m.Target, strings.Join(dedupe(have), ", ")))
		}
	}
	return nil
}

func ready(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func dedupe(s []string) []string {
	var out []string
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}
