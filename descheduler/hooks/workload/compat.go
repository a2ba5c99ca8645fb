package workload

import (
	"context"
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/livemigrate/livemigrate/descheduler/hooks/agentcr"
	"github.com/livemigrate/livemigrate/descheduler/migration"
)

// Compatibility is the CompatibilityHook comparing nodes: the target must
// have a Ready, schedulable node with the architecture and OS of every source
// pod's node and the same container runtime (name, e.g. cri-o), since a
// checkpoint restores only there. Fields a node does not report are not
// compared.
type Compatibility struct {
	Clients agentcr.ClientGetter
}

var _ migration.CompatibilityHook = &Compatibility{}

type platform struct{ arch, os, runtime string }

func platformOf(n *corev1.Node) platform {
	rt, _, _ := strings.Cut(n.Status.NodeInfo.ContainerRuntimeVersion, "://")
	return platform{arch: n.Status.NodeInfo.Architecture, os: n.Status.NodeInfo.OperatingSystem, runtime: rt}
}

func (p platform) String() string {
	return fmt.Sprintf("%s/%s %s", orUnknown(p.os), orUnknown(p.arch), orUnknown(p.runtime))
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
	return eq(s.arch, t.arch) && eq(s.os, t.os) && eq(s.runtime, t.runtime)
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
		targets = append(targets, platformOf(n))
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
		sp := platformOf(n)
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
