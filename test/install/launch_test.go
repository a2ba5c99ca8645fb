package install

import (
	"context"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"

	"github.com/livemigrate/livemigrate/test/chart"
	"github.com/livemigrate/livemigrate/test/lab"
)

// fieldManager is the server-side apply field manager of the test, as
// helm's would be.
const fieldManager = "helm"

// renderedChart holds the chart rendered for the lab, per install mode,
// rendered on the first component start (the values name the lab
// registry's address, known once the lab allocated its ports).
type renderedChart struct {
	root string

	once                  sync.Once
	err                   error
	host, karmada, member []*unstructured.Unstructured

	mu      sync.Mutex
	applied map[string]bool
}

func renderForLab(ctx context.Context, root string) (*renderedChart, error) {
	// Build the renderer now, so that its first build is not counted in
	// the lab's start timeout.
	if _, err := chart.Renderer(ctx, root); err != nil {
		return nil, err
	}
	return &renderedChart{root: root, applied: map[string]bool{}}, nil
}

// values are what a platform team would set for this lab: its registry,
// over plain HTTP; the lab node runtime's kubelet CA (it keeps it in the
// kubelet's root directory); livemigrate-scheduler instead of
// karmada-scheduler, since the lab runs no other.
func (r *renderedChart) render(l *lab.Lab) error {
	r.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		registry := l.RegistryHost()
		common := []string{"logLevel=2"}
		if r.host, r.err = chart.Render(ctx, r.root, "karmada-system", append(common,
			"installMode=host",
			"scheduler.mode=replace",
			"descheduler.checkpointRepository="+registry+"/"+lab.CheckpointRepository,
			"descheduler.checkpointRegistryInsecure=true",
		)...); r.err != nil {
			return
		}
		if r.karmada, r.err = chart.Render(ctx, r.root, "karmada-system", append(common,
			"installMode=karmada",
			// The lab registers the webhook by URL with its own CA (it has no
			// Service network); the registration's rules come from the chart.
			"descheduler.webhook.caBundle=bGFi",
			// TestDoctorWithTheChartsRBAC runs the doctor as this user.
			"doctor.subjects[0].kind=User",
			"doctor.subjects[0].name="+doctorUser,
			"prober.enabled=true",
			"prober.clusters={"+strings.Join(memberNames(l), ",")+"}",
		)...); r.err != nil {
			return
		}
		r.member, r.err = chart.Render(ctx, r.root, lab.AgentNamespace, append(common,
			"installMode=member",
			"agent.insecureRegistries={"+registry+"}",
			"agent.probeRegistries={"+registry+"}",
			"agent.kubeletCAFile=/var/lib/kubelet/kubelet-ca.crt",
			"agent.reportInterval=1s",
			"prober.enabled=true",
			"prober.clusterName=placeholder",
			"deschedulerMemberIdentity.kind=User",
			"deschedulerMemberIdentity.name=lab-admin",
		)...)
	})
	return r.err
}

func memberNames(l *lab.Lab) []string {
	var out []string
	for _, m := range l.Members {
		out = append(out, m.Name)
	}
	return out
}

// applyOnce server-side applies a mode's objects to a cluster once.
// Workloads (Deployments, DaemonSets) and the webhook registrations are
// applied with dryRun: the lab runs the components itself, as processes,
// and registers the webhooks by URL; the API server still validates them.
// So is the agents' node restriction policy: the lab's agents are processes
// holding one token of their ServiceAccount, bound to no pod and so to no
// node (descheduler/integration TestAgentNodeRestriction tests the policy).
func (r *renderedChart) applyOnce(key string, cfg *rest.Config, objs []*unstructured.Unstructured) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.applied[key] {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := serverSideApply(ctx, cfg, objs); err != nil {
		return fmt.Errorf("applying the chart to %s: %w", key, err)
	}
	r.applied[key] = true
	return nil
}

func serverSideApply(ctx context.Context, cfg *rest.Config, objs []*unstructured.Unstructured) error {
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return err
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return err
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))
	// CRDs first, as Helm orders them, then everything else.
	ordered := slices.Clone(objs)
	slices.SortStableFunc(ordered, func(a, b *unstructured.Unstructured) int {
		return boolInt(b.GetKind() == "CustomResourceDefinition") - boolInt(a.GetKind() == "CustomResourceDefinition")
	})
	for _, o := range ordered {
		gvk := o.GroupVersionKind()
		var mapping *meta.RESTMapping
		if err := poll(ctx, func() error {
			var err error
			mapping, err = mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
			if err != nil {
				mapper.Reset()
			}
			return err
		}); err != nil {
			return fmt.Errorf("%s %s: %w", gvk.Kind, o.GetName(), err)
		}
		var ri dynamic.ResourceInterface = dyn.Resource(mapping.Resource)
		if mapping.Scope.Name() == meta.RESTScopeNameNamespace {
			if o.GetNamespace() == "" {
				return fmt.Errorf("%s %s has no namespace", gvk.Kind, o.GetName())
			}
			if err := ensureNamespace(ctx, dyn, o.GetNamespace()); err != nil {
				return err
			}
			ri = dyn.Resource(mapping.Resource).Namespace(o.GetNamespace())
		}
		opts := metav1.ApplyOptions{FieldManager: fieldManager, Force: true}
		switch gvk.Kind {
		case "Deployment", "DaemonSet", "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration",
			"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding":
			opts.DryRun = []string{metav1.DryRunAll}
		}
		if _, err := ri.Apply(ctx, o.GetName(), o, opts); err != nil {
			return fmt.Errorf("server-side apply of %s %s: %w", gvk.Kind, o.GetName(), err)
		}
	}
	return nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// ensureNamespace creates a release namespace, as helm --create-namespace.
func ensureNamespace(ctx context.Context, dyn dynamic.Interface, ns string) error {
	nsObj := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": ns}}}
	_, err := dyn.Resource(corev1.SchemeGroupVersion.WithResource("namespaces")).Create(ctx, nsObj, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating namespace %s: %w", ns, err)
	}
	return nil
}

func poll(ctx context.Context, f func() error) error {
	for {
		err := f()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// workload names the rendered workload and container a lab component runs
// as.
var workloads = map[string]struct{ mode, kind, name, container string }{
	"livemigrate-agent":       {"member", "DaemonSet", "livemigrate-agent", "agent"},
	"livemigrate-restore":     {"member", "Deployment", "livemigrate-restore", "restore"},
	"livemigrate-prober":      {"member", "Deployment", "livemigrate-prober", "prober"},
	"livemigrate-descheduler": {"host", "Deployment", "livemigrate-descheduler", "descheduler"},
	"livemigrate-scheduler":   {"host", "Deployment", "livemigrate-scheduler", "livemigrate-scheduler"},
}

// environmental are the flags whose values are the pod's environment in a
// cluster — paths inside its volume mounts, its listen addresses and
// ports, its API server — and are the lab's for these flags.
var environmental = []string{
	"kubeconfig", "config", "livemigrate-config",
	"checkpoint-dir", "kubelet-ca-file", "kubelet-token-file", "cgroup-root",
	"replication-target-roots", "replication-target-root", "replication-port",
	"webhook-cert-dir", "webhook-port",
	"metrics-bind-address", "health-probe-bind-address",
}

// nodeLayout are flags the lab adds that a cluster's pod does not need:
// the in-cluster API configuration (kubeconfig), the node's kubelet
// address and cgroup layout of the lab's node runtime, and the loopback
// addresses the lab binds.
var nodeLayout = []string{
	"kubeconfig", "kubelet-address", "cgroup-version", "cgroup-driver", "cgroup-parent",
	"replication-listen-host", "webhook-host",
}

// launch is the lab's Options.Launch: it applies the chart's objects to the
// cluster the instance runs against (once), and returns the rendered
// command line of the instance's container with the translations above.
func (r *renderedChart) launch(in *lab.Instance, table []string) ([]string, []string, error) {
	w, ok := workloads[in.Spec.Name]
	if !ok {
		return table, nil, nil // the lab's own registry and node runtime
	}
	l := in.Lab
	if err := r.render(l); err != nil {
		return nil, nil, err
	}
	var objs []*unstructured.Unstructured
	switch w.mode {
	case "member":
		objs = r.member
		if err := r.applyOnce(in.Member.Name, in.Member.Config, r.member); err != nil {
			return nil, nil, err
		}
	case "host":
		objs = r.host
		if err := r.applyOnce("karmada", l.Karmada.Config, r.karmada); err != nil {
			return nil, nil, err
		}
		// The host cluster of the lab's Karmada plane is the plane itself.
		if err := r.applyOnce("karmada-host", l.Karmada.Config, r.host); err != nil {
			return nil, nil, err
		}
	}
	o := chart.Find(objs, w.kind, w.name)
	if o == nil {
		return nil, nil, fmt.Errorf("the chart renders no %s %s", w.kind, w.name)
	}
	spec, err := chart.PodSpec(o)
	if err != nil {
		return nil, nil, err
	}
	var c *corev1.Container
	for i := range spec.Containers {
		if spec.Containers[i].Name == w.container {
			c = &spec.Containers[i]
		}
	}
	if c == nil {
		return nil, nil, fmt.Errorf("%s %s has no container %s", w.kind, w.name, w.container)
	}
	cmd, err := chart.ContainerCommand(c, chart.Downward{NodeName: in.Node, HostIP: "127.0.0.1", PodIP: "127.0.0.1", PodName: in.Name, Namespace: o.GetNamespace()})
	if err != nil {
		return nil, nil, err
	}
	if got, want := path.Base(cmd.Path), path.Base(in.Spec.Binary); in.Spec.Binary != "" && got != want || in.Spec.Binary == "" && got != in.Spec.Name {
		return nil, nil, fmt.Errorf("%s %s runs %s, the lab's component %s", w.kind, w.name, cmd.Path, in.Spec.Name)
	}
	args, err := translate(in, cmd.Args, table, r, objs)
	if err != nil {
		return nil, nil, err
	}
	var env []string
	for k, v := range cmd.Env {
		env = append(env, k+"="+v)
	}
	slices.Sort(env)
	return args, env, nil
}

func flagName(arg string) string {
	name, _, _ := strings.Cut(strings.TrimPrefix(arg, "--"), "=")
	return name
}

// translate keeps every rendered flag, replaces the environmental ones
// with the lab's, and adds the lab's node-layout flags. A rendered
// --livemigrate-config file is written from the rendered ConfigMap.
func translate(in *lab.Instance, rendered, table []string, r *renderedChart, objs []*unstructured.Unstructured) ([]string, error) {
	labValue := map[string]string{}
	for _, a := range table {
		labValue[flagName(a)] = a
	}
	var out []string
	for _, a := range rendered {
		name := flagName(a)
		switch {
		case name == "livemigrate-config":
			p, err := writeSchedulerConfig(in, objs)
			if err != nil {
				return nil, err
			}
			out = append(out, "--livemigrate-config="+p)
		case slices.Contains(environmental, name):
			if v, ok := labValue[name]; ok {
				out = append(out, v)
			} else if name == "metrics-bind-address" {
				out = append(out, "--metrics-bind-address=0")
			} else {
				out = append(out, a)
			}
		default:
			out = append(out, a)
		}
	}
	for _, a := range table {
		name := flagName(a)
		if slices.Contains(nodeLayout, name) && !slices.ContainsFunc(out, func(o string) bool { return flagName(o) == name }) {
			out = append(out, a)
		}
	}
	return out, nil
}

func writeSchedulerConfig(in *lab.Instance, objs []*unstructured.Unstructured) (string, error) {
	cm := chart.Find(objs, "ConfigMap", "livemigrate-scheduler-config")
	if cm == nil {
		return "", fmt.Errorf("the chart renders no ConfigMap livemigrate-scheduler-config")
	}
	data, _, _ := unstructured.NestedString(cm.Object, "data", "scheduler-plugins.yaml")
	dir, err := in.Dir()
	if err != nil {
		return "", err
	}
	p := filepath.Join(dir, "scheduler-plugins.yaml")
	return p, os.WriteFile(p, []byte(data), 0o644)
}
