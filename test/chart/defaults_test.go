package chart

import (
	"context"
	"flag"
	"path"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	agentapp "github.com/livemigrate/livemigrate/agent/app"
	agentoptions "github.com/livemigrate/livemigrate/agent/options"
	"github.com/livemigrate/livemigrate/agent/replication"
	schedulerapp "github.com/livemigrate/livemigrate/cmd/livemigrate-scheduler/app"
	deschedulerapp "github.com/livemigrate/livemigrate/descheduler/app"
	"github.com/livemigrate/livemigrate/plugins/latency/prober"
)

// binaryFlags returns the command line of a component's binary as its
// main builds it, with every flag at its default.
func binaryFlags(t *testing.T, binary string) *pflag.FlagSet {
	t.Helper()
	ctx := context.Background()
	switch binary {
	case "livemigrate-agent":
		return agentapp.NewFlagSet(agentoptions.New(), replication.NewOptions(), flag.NewFlagSet(binary, flag.ContinueOnError))
	case "livemigrate-descheduler":
		return deschedulerapp.NewCommand(ctx).Flags()
	case "livemigrate-prober":
		return prober.NewCommand(ctx).Flags()
	case "livemigrate-scheduler":
		return schedulerapp.NewSchedulerCommand(ctx).Flags()
	}
	t.Fatalf("no flags known for the binary %s", binary)
	return nil
}

// chartSets are the flags the chart sets, with its default values, to
// something else than the binary's default, and why: where the pod finds
// things (mounts, downward API), what only a deployment knows (its
// registry), and what a Deployment of several replicas needs. Any other
// rendered flag must carry the binary's default: values.yaml takes its
// defaults from the binaries, so each has one.
var chartSets = map[string]string{
	"livemigrate-agent --v":                              "logLevel: klog's default 0 logs too little to operate a cluster component",
	"livemigrate-descheduler --v":                        "logLevel",
	"livemigrate-scheduler --v":                          "logLevel",
	"livemigrate-prober --v":                             "logLevel",
	"livemigrate-agent --replication-advertise-host":     "the node's address (the downward API's status.hostIP), where the hostPort publishes the replication port",
	"livemigrate-agent --leader-election-namespace":      "the release namespace, where the chart's Role allows the Lease",
	"livemigrate-prober --config":                        "the prober's configuration ConfigMap, mounted",
	"livemigrate-agent --mode":                           "the same image runs the node agent and the restore webhook",
	"livemigrate-agent --node-name":                      "the downward API's spec.nodeName",
	"livemigrate-agent --kubelet-ca-file":                "agent.kubeletCAFile: the kubeadm kubelet's self-signed serving certificate, mounted from the node",
	"livemigrate-agent --leader-elect":                   "restore.replicas replicas share the PodRestore status writer",
	"livemigrate-descheduler --kubeconfig":               "the karmada-apiserver kubeconfig Secret, mounted",
	"livemigrate-descheduler --leader-elect":             "descheduler.replicas replicas",
	"livemigrate-descheduler --webhook-cert-dir":         "the mounted webhook certificate Secret",
	"livemigrate-descheduler --checkpoint-repository":    "descheduler.checkpointRepository: only the installation knows its registry (required)",
	"livemigrate-scheduler --kubeconfig":                 "the karmada-apiserver kubeconfig Secret, mounted",
	"livemigrate-scheduler --livemigrate-config":         "the plugins' configuration ConfigMap, mounted",
	"livemigrate-scheduler --scheduler-name":             "scheduler.mode second serves scheduler.schedulerName beside karmada-scheduler",
	"livemigrate-scheduler --leader-elect-resource-name": "its own Lease beside karmada-scheduler's",
	"livemigrate-scheduler --metrics-bind-address":       "every address of the pod",
	"livemigrate-scheduler --health-probe-bind-address":  "every address of the pod",
	"livemigrate-prober --kubeconfig":                    "the karmada-apiserver kubeconfig Secret, mounted",
	"livemigrate-prober --create-if-missing":             "the prober creates its cluster's ClusterLatency, which the karmada release allows it",
}

// TestChartDefaultsAreTheBinariesDefaults renders every component with
// the chart's default values and parses each rendered flag with the
// binary's own flag set: every flag exists, and carries the binary's
// default unless chartSets says why not.
func TestChartDefaultsAreTheBinariesDefaults(t *testing.T) {
	seen := map[string]bool{}
	for _, mode := range []struct {
		namespace string
		sets      []string
	}{
		{"karmada-system", hostSets},
		{"livemigrate-system", append(slices.Clone(memberSets), "prober.enabled=true", "prober.clusterName=member1")},
	} {
		for _, o := range render(t, mode.namespace, mode.sets...) {
			if o.GetKind() != "Deployment" && o.GetKind() != "DaemonSet" {
				continue
			}
			spec, err := PodSpec(o)
			if err != nil {
				t.Fatal(err)
			}
			for i := range spec.Containers {
				c := &spec.Containers[i]
				cmd, err := ContainerCommand(c, Downward{NodeName: "node-1", HostIP: "192.0.2.10", PodIP: "192.0.2.20", PodName: "pod-1", Namespace: mode.namespace})
				if err != nil {
					t.Fatal(err)
				}
				binary := path.Base(cmd.Path)
				defaults := binaryFlags(t, binary)
				for _, arg := range cmd.Args {
					name, value, hasValue := strings.Cut(strings.TrimPrefix(arg, "--"), "=")
					where := o.GetKind() + " " + o.GetName() + " (" + binary + ")"
					f := defaults.Lookup(name)
					if !strings.HasPrefix(arg, "--") || f == nil {
						t.Errorf("%s: the chart renders %s, which %s does not have", where, arg, binary)
						continue
					}
					if !hasValue {
						value = "true"
					}
					parsed := binaryFlags(t, binary)
					if err := parsed.Set(name, value); err != nil {
						t.Errorf("%s: %s does not parse %s: %v", where, binary, arg, err)
						continue
					}
					key := binary + " --" + name
					got := parsed.Lookup(name).Value.String()
					if got == f.DefValue {
						continue
					}
					if _, ok := chartSets[key]; ok {
						seen[key] = true
						continue
					}
					t.Errorf("%s: the chart's default renders --%s=%s, the binary's default is %q: make the chart's default value the binary's (values.yaml), or say in chartSets why the chart sets it", where, name, value, f.DefValue)
				}
			}
		}
	}
	for key := range chartSets {
		if !seen[key] {
			t.Errorf("chartSets lists %q, which the chart's defaults do not set to anything but the binary's default: remove it", key)
		}
	}
}

// TestChartProberConfigIsTheProbersDefault: the prober's configuration
// file the chart renders with its default values holds the prober's own
// defaults.
func TestChartProberConfigIsTheProbersDefault(t *testing.T) {
	objs := render(t, "livemigrate-system", append(slices.Clone(memberSets), "prober.enabled=true", "prober.clusterName=member1")...)
	cm := Find(objs, "ConfigMap", "livemigrate-prober")
	if cm == nil {
		t.Fatal("the chart renders no ConfigMap livemigrate-prober")
	}
	data, _, _ := unstructured.NestedString(cm.Object, "data", "prober.yaml")
	var cfg prober.Config
	if err := yaml.UnmarshalStrict([]byte(data), &cfg); err != nil {
		t.Fatalf("the rendered prober.yaml: %v\n%s", err, data)
	}
	if cfg.Interval == nil || cfg.Interval.Duration != prober.DefaultInterval {
		t.Errorf("prober.interval renders %v, the prober's default is %s", cfg.Interval, prober.DefaultInterval)
	}
	if cfg.Samples == nil || *cfg.Samples != prober.DefaultSamples {
		t.Errorf("prober.samples renders %v, the prober's default is %d", cfg.Samples, prober.DefaultSamples)
	}
	if cfg.Timeout == nil || cfg.Timeout.Duration != prober.DefaultTimeout {
		t.Errorf("prober.timeout renders %v, the prober's default is %s", cfg.Timeout, prober.DefaultTimeout)
	}
}
