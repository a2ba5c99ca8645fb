package kubectl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	clusterv1alpha1 "github.com/karmada-io/karmada/pkg/apis/cluster/v1alpha1"
	"github.com/spf13/cobra"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/livemigrate/livemigrate/agent/report"
	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
	"github.com/livemigrate/livemigrate/descheduler/member"
)

// Status is the outcome of one doctor check.
type Status string

// Outcomes: a Fail needs fixing before migrations can work; a Warn is
// worth a look (something optional is missing, or cannot be judged).
const (
	StatusOK   Status = "OK"
	StatusWarn Status = "WARN"
	StatusFail Status = "FAIL"
)

// Check is one line of the doctor's report.
type Check struct {
	// Scope is "karmada" or the member cluster's name.
	Scope  string
	Name   string
	Status Status
	// Detail says what was found; Fix what to do about a Warn or Fail.
	Detail string
	Fix    string
}

// Doctor checks an installation from the Karmada control plane's
// kubeconfig: the Karmada side directly, each member through the push-mode
// credentials Karmada holds for it.
type Doctor struct {
	Karmada client.Client
	Members *member.Clients
	Now     func() time.Time
	// AgentNamespace is the members' release namespace (livemigrate-system).
	AgentNamespace string
	// KarmadaNamespace holds the scheduler's and descheduler's Leases.
	KarmadaNamespace string
	// LatencyMaxAge is how old a ClusterLatency may be (the Latency
	// plugin's maxAge).
	LatencyMaxAge time.Duration
	// Host, when set, reads the cluster that runs the Karmada control plane
	// (the chart's host release, in KarmadaNamespace): the descheduler's
	// serving certificate Secret, when its webhook endpoint cannot be
	// dialled from here.
	Host client.Reader
	// DialTimeout bounds the TLS handshake with a webhook (5s when 0).
	DialTimeout time.Duration
}

// DoctorScheme holds what the doctor reads in the Karmada plane and in members.
func DoctorScheme() *runtime.Scheme {
	s := Scheme()
	if err := apiextensionsv1.AddToScheme(s); err != nil {
		panic(err)
	}
	return s
}

// Expected CRDs and their version.
var (
	karmadaCRDs = []string{"livemigrations.livemigrate.io", "clusterlatencies.livemigrate.io"}
	memberCRDs  = []string{"podcheckpoints.agent.livemigrate.io", "podrestores.agent.livemigrate.io", "volumereplications.agent.livemigrate.io"}
)

const crdVersion = "v1alpha1"

// Run runs every check.
func (d *Doctor) Run(ctx context.Context) []Check {
	var out []Check
	for _, name := range karmadaCRDs {
		out = append(out, d.crd(ctx, d.Karmada, "karmada", name, "helm upgrade --install livemigrate charts/livemigrate -n karmada-system --kubeconfig <karmada-apiserver> --set installMode=karmada"))
	}
	out = append(out, d.deschedulerWebhook(ctx))
	out = append(out, d.deschedulerCerts(ctx)...)
	out = append(out, d.lease(ctx, d.Karmada, "karmada", "livemigrate-descheduler", d.KarmadaNamespace, []string{"livemigrate-descheduler"},
		"kubectl -n karmada-system get pods -l app.kubernetes.io/name=livemigrate-descheduler (host cluster) and its logs"))
	out = append(out, d.lease(ctx, d.Karmada, "karmada", "livemigrate-scheduler", d.KarmadaNamespace, []string{"livemigrate-scheduler", "karmada-scheduler"},
		"kubectl -n karmada-system get pods -l app.kubernetes.io/name=livemigrate-scheduler (host cluster) and its logs"))

	clusters := &clusterv1alpha1.ClusterList{}
	if err := d.Karmada.List(ctx, clusters); err != nil {
		return append(out, Check{Scope: "karmada", Name: "clusters", Status: StatusFail, Detail: err.Error(), Fix: "check the kubeconfig: it must be the karmada-apiserver's"})
	}
	slices.SortFunc(clusters.Items, func(a, b clusterv1alpha1.Cluster) int { return strings.Compare(a.Name, b.Name) })
	archs := map[string][]string{}
	for i := range clusters.Items {
		cl := &clusters.Items[i]
		out = append(out, d.latency(ctx, cl.Name))
		out = append(out, d.member(ctx, cl, archs)...)
	}
	if len(archs) > 1 {
		var parts []string
		for a, nodes := range archs {
			parts = append(parts, fmt.Sprintf("%s: %d nodes", a, len(nodes)))
		}
		slices.Sort(parts)
		out = append(out, Check{Scope: "karmada", Name: "architectures", Status: StatusWarn, Detail: strings.Join(parts, ", "),
			Fix: "a checkpoint restores only on the architecture it was taken on: keep migrations between nodes of one architecture (node affinity on kubernetes.io/arch)"})
	}
	return out
}

func (d *Doctor) crd(ctx context.Context, c client.Client, scope, name, fix string) Check {
	ck := Check{Scope: scope, Name: "crd " + name}
	crd := &apiextensionsv1.CustomResourceDefinition{}
	if err := c.Get(ctx, types.NamespacedName{Name: name}, crd); err != nil {
		ck.Status, ck.Detail, ck.Fix = StatusFail, err.Error(), fix
		return ck
	}
	established := false
	for _, cond := range crd.Status.Conditions {
		if cond.Type == apiextensionsv1.Established && cond.Status == apiextensionsv1.ConditionTrue {
			established = true
		}
	}
	var served []string
	storage := ""
	for _, v := range crd.Spec.Versions {
		if v.Served {
			served = append(served, v.Name)
		}
		if v.Storage {
			storage = v.Name
		}
	}
	switch {
	case !established:
		ck.Status, ck.Detail, ck.Fix = StatusFail, "not Established", "kubectl describe crd "+name
	case !slices.Contains(served, crdVersion) || storage != crdVersion:
		ck.Status, ck.Detail, ck.Fix = StatusFail, fmt.Sprintf("serves %v, stores %s; this kubectl livemigrate expects %s", served, storage, crdVersion), "upgrade the chart and kubectl livemigrate to the same version: "+fix
	default:
		ck.Status, ck.Detail = StatusOK, "Established, "+crdVersion
	}
	return ck
}

// deschedulerWebhook sends a dry-run LiveMigration through the
// karmada-apiserver: any answer of the webhook (admitted or denied) proves
// it is reachable with a certificate the caBundle verifies.
func (d *Doctor) deschedulerWebhook(ctx context.Context) Check {
	ck := Check{Scope: "karmada", Name: "descheduler webhook"}
	vwc := &admissionregistrationv1.ValidatingWebhookConfiguration{}
	if err := d.Karmada.Get(ctx, types.NamespacedName{Name: "livemigrate-descheduler"}, vwc); err != nil {
		ck.Status, ck.Detail, ck.Fix = StatusFail, err.Error(), "install the chart with installMode=karmada into the karmada-apiserver"
		return ck
	}
	lm := &lmv1alpha1.LiveMigration{
		ObjectMeta: metav1.ObjectMeta{Name: "livemigrate-doctor", Namespace: "default"},
		Spec:       lmv1alpha1.LiveMigrationSpec{WorkloadRef: lmv1alpha1.WorkloadReference{Kind: "StatefulSet", Name: "livemigrate-doctor"}},
	}
	err := d.Karmada.Create(ctx, lm, client.DryRunAll)
	switch {
	// Admitted, or denied by the webhook itself. Any other refusal (RBAC,
	// the CRD's schema) comes before the webhook is called and proves
	// nothing about it.
	case err == nil || webhookDenied(err):
		ck.Status, ck.Detail = StatusOK, "answers a dry-run LiveMigration"
	case strings.Contains(err.Error(), "failed calling webhook"):
		ck.Status, ck.Detail = StatusFail, err.Error()
		ck.Fix = "the descheduler is not running or its certificate is not signed by the registration's caBundle: kubectl -n karmada-system get pods -l app.kubernetes.io/name=livemigrate-descheduler (host cluster); descheduler.webhook.caBundle must be the ca.crt of the Secret livemigrate-descheduler-webhook-cert"
	default:
		ck.Status, ck.Detail, ck.Fix = StatusWarn, err.Error(), "a dry-run LiveMigration in namespace default could not be sent; run the doctor with rights to create LiveMigrations there"
	}
	return ck
}

// webhookDenied tells whether an admission webhook answered a request
// and denied it (the API server's "admission webhook %q denied the
// request" status).
func webhookDenied(err error) bool {
	var status apierrors.APIStatus
	if !errors.As(err, &status) {
		return false
	}
	msg := status.Status().Message
	return strings.HasPrefix(msg, "admission webhook ") && strings.Contains(msg, " denied the request")
}

// lease checks a leader-election or report Lease: renewed within its
// duration. Missing is a Warn (a component may run without leader
// election), stale a Fail.
func (d *Doctor) lease(ctx context.Context, c client.Client, scope, name, namespace string, candidates []string, fix string) Check {
	ck := Check{Scope: scope, Name: name}
	for _, n := range candidates {
		l := &coordinationv1.Lease{}
		if err := c.Get(ctx, types.NamespacedName{Namespace: namespace, Name: n}, l); err != nil {
			if apierrors.IsNotFound(err) || meta.IsNoMatchError(err) {
				continue
			}
			ck.Status, ck.Detail, ck.Fix = StatusFail, err.Error(), fix
			return ck
		}
		fresh, detail := d.fresh(l)
		ck.Detail = fmt.Sprintf("Lease %s/%s: %s", namespace, n, detail)
		if fresh {
			ck.Status = StatusOK
		} else {
			ck.Status, ck.Fix = StatusFail, fix
		}
		return ck
	}
	ck.Status = StatusWarn
	ck.Detail = fmt.Sprintf("no leader-election Lease %s in %s", strings.Join(candidates, " or "), namespace)
	ck.Fix = "without leader election nothing shows that it runs: " + fix
	return ck
}

func (d *Doctor) fresh(l *coordinationv1.Lease) (bool, string) {
	if l.Spec.RenewTime == nil {
		return false, "never renewed"
	}
	dur := 15 * time.Second
	if l.Spec.LeaseDurationSeconds != nil {
		dur = time.Duration(*l.Spec.LeaseDurationSeconds) * time.Second
	}
	age := d.Now().Sub(l.Spec.RenewTime.Time).Round(time.Second)
	holder := ""
	if l.Spec.HolderIdentity != nil {
		holder = *l.Spec.HolderIdentity
	}
	if age > dur {
		return false, fmt.Sprintf("held by %q, last renewed %s ago (duration %s)", holder, age, dur)
	}
	return true, fmt.Sprintf("held by %q, renewed %s ago", holder, age)
}

func (d *Doctor) latency(ctx context.Context, cluster string) Check {
	ck := Check{Scope: cluster, Name: "prober"}
	cl := &lmv1alpha1.ClusterLatency{}
	if err := d.Karmada.Get(ctx, types.NamespacedName{Name: cluster}, cl); err != nil {
		if apierrors.IsNotFound(err) {
			ck.Status, ck.Detail = StatusWarn, "no ClusterLatency: the Latency plugin counts this cluster's latencies as missing"
			ck.Fix = "install the prober: helm upgrade … --set installMode=member --set prober.enabled=true --set prober.clusterName=" + cluster
			return ck
		}
		ck.Status, ck.Detail = StatusFail, err.Error()
		return ck
	}
	if cl.Status.LastProbeTime == nil {
		ck.Status, ck.Detail, ck.Fix = StatusFail, "ClusterLatency never written", "kubectl -n livemigrate-system logs deploy/livemigrate-prober in "+cluster
		return ck
	}
	age := d.Now().Sub(cl.Status.LastProbeTime.Time).Round(time.Second)
	if age > d.LatencyMaxAge {
		ck.Status, ck.Detail = StatusFail, fmt.Sprintf("last probe %s ago, older than %s", age, d.LatencyMaxAge)
		ck.Fix = "the prober of " + cluster + " stopped writing: kubectl -n livemigrate-system logs deploy/livemigrate-prober"
		return ck
	}
	ck.Status, ck.Detail = StatusOK, fmt.Sprintf("ClusterLatency written %s ago (%d peers, %d origins)", age, len(cl.Status.Peers), len(cl.Status.Origins))
	return ck
}

func (d *Doctor) member(ctx context.Context, cl *clusterv1alpha1.Cluster, archs map[string][]string) []Check {
	scope := cl.Name
	if !meta.IsStatusConditionTrue(cl.Status.Conditions, clusterv1alpha1.ClusterConditionReady) {
		return []Check{{Scope: scope, Name: "cluster", Status: StatusFail, Detail: "Cluster is not Ready in Karmada", Fix: "kubectl get cluster " + scope + " -o yaml"}}
	}
	mc, err := d.Members.Get(ctx, cl.Name)
	if err != nil {
		return []Check{{Scope: scope, Name: "cluster", Status: StatusFail, Detail: err.Error(), Fix: "the doctor reaches members with the push-mode credentials of their Cluster objects"}}
	}
	var out []Check
	fix := "helm upgrade --install livemigrate charts/livemigrate -n " + d.AgentNamespace + " --create-namespace --kubeconfig <" + scope + "> --set installMode=member"
	for _, name := range memberCRDs {
		out = append(out, d.crd(ctx, mc, scope, name, fix))
	}
	mwc := &admissionregistrationv1.MutatingWebhookConfiguration{}
	if err := mc.Get(ctx, types.NamespacedName{Name: "livemigrate-restore"}, mwc); err != nil {
		out = append(out, Check{Scope: scope, Name: "restore webhook", Status: StatusFail, Detail: err.Error(), Fix: fix})
	} else {
		out = append(out, d.lease(ctx, mc, scope, "restore webhook", d.AgentNamespace, []string{"livemigrate-agent-restore"},
			"kubectl -n "+d.AgentNamespace+" get pods -l app.kubernetes.io/component=restore in "+scope))
		out = append(out, d.webhookCert(ctx, d.restoreTarget(scope, mwc, mc)))
	}
	nodes := &corev1.NodeList{}
	if err := mc.List(ctx, nodes); err != nil {
		return append(out, Check{Scope: scope, Name: "nodes", Status: StatusFail, Detail: err.Error()})
	}
	for i := range nodes.Items {
		out = append(out, d.node(ctx, mc, scope, &nodes.Items[i], archs))
	}
	return out
}

// node checks a node's agent report: renewed, and a runtime that can
// restore checkpoints.
func (d *Doctor) node(ctx context.Context, mc client.Client, scope string, n *corev1.Node, archs map[string][]string) Check {
	ck := Check{Scope: scope, Name: "agent " + n.Name}
	fix := "kubectl -n " + d.AgentNamespace + " get pods -l app.kubernetes.io/name=livemigrate-agent --field-selector spec.nodeName=" + n.Name + " in " + scope + ", and its logs"
	l := &coordinationv1.Lease{}
	if err := mc.Get(ctx, types.NamespacedName{Namespace: d.AgentNamespace, Name: report.LeaseName(n.Name)}, l); err != nil {
		ck.Status, ck.Fix = StatusFail, fix
		ck.Detail = "the agent never reported (" + err.Error() + ")"
		return ck
	}
	fresh, detail := d.fresh(l)
	if !fresh {
		ck.Status, ck.Detail, ck.Fix = StatusFail, "the agent is not running: its report "+detail, fix
		return ck
	}
	a := l.Annotations
	rt := a[report.AnnotationRuntime]
	archs[a[report.AnnotationArchitecture]] = append(archs[a[report.AnnotationArchitecture]], n.Name)
	ck.Detail = fmt.Sprintf("runtime %s, kernel %s, %s, freezer %s", rt, a[report.AnnotationKernel], a[report.AnnotationArchitecture], a[report.AnnotationFreezer])
	if api, ok := a[report.AnnotationCheckpointAPI]; ok && api != report.CheckpointAPIOK {
		ck.Status, ck.Detail = StatusFail, ck.Detail+": "+api
		ck.Fix = "the agent calls POST /checkpoint/… on the node's kubelet (port 10250) with its ServiceAccount token; docs/install.md lists what the node needs"
		return ck
	}
	if api, ok := a[report.AnnotationCheckpointAPI]; ok {
		ck.Detail += ", checkpoint API " + api
	}
	if check, ok := a[report.AnnotationCRIUCheck]; ok {
		ck.Detail += ", CRIU " + orNone(a[report.AnnotationCRIUVersion])
		if check != report.CRIUCheckOK {
			ck.Status, ck.Detail = StatusFail, ck.Detail+": "+check
			ck.Fix = "the node's CRIU must pass criu check as root (a kernel with CONFIG_CHECKPOINT_RESTORE, CRIU ≥ 4.0 on current kernels; docs/install.md)"
			return ck
		}
	}
	if raw, ok := a[report.AnnotationRegistries]; ok {
		var regs map[string]string
		if err := json.Unmarshal([]byte(raw), &regs); err != nil {
			ck.Status, ck.Detail = StatusFail, ck.Detail+": unreadable registry report: "+err.Error()
			ck.Fix = "upgrade the agent and kubectl livemigrate to the same version"
			return ck
		}
		hosts := slices.Sorted(maps.Keys(regs))
		var bad []string
		for _, h := range hosts {
			if regs[h] != report.RegistryOK {
				bad = append(bad, "registry "+h+" "+regs[h])
			}
		}
		if len(bad) > 0 {
			ck.Status, ck.Detail = StatusFail, ck.Detail+": "+strings.Join(bad, "; ")
			ck.Fix = "the node pushes checkpoint images to and pulls them from these registries: make them reachable from " + n.Name + " (DNS, firewall, proxy, the registry running); a plain-HTTP registry must be in agent.insecureRegistries and in the runtime's registry configuration, an HTTPS one needs a certificate the node trusts"
			return ck
		}
		if len(hosts) > 0 {
			ck.Detail += ", registries " + strings.Join(hosts, ",") + " reachable"
		}
	}
	status, why := runtimeSupport(rt)
	ck.Status = status
	if why != "" {
		ck.Detail += ": " + why
		ck.Fix = "checkpoints need CRI-O with enable_criu_support = true or containerd ≥ 2.0, the kubelet's ContainerCheckpoint feature and CRIU on the node (docs/install.md)"
	}
	return ck
}

// runtimeSupport judges a containerRuntimeVersion (e.g. cri-o://1.33.2,
// containerd://2.1.0).
func runtimeSupport(v string) (Status, string) {
	name, version, ok := strings.Cut(v, "://")
	if !ok {
		return StatusWarn, "unknown runtime"
	}
	switch name {
	case "cri-o":
		return StatusOK, ""
	case "containerd":
		major, err := strconv.Atoi(strings.SplitN(strings.TrimPrefix(version, "v"), ".", 2)[0])
		if err != nil {
			return StatusWarn, "cannot read the containerd version"
		}
		if major < 2 {
			return StatusFail, "containerd before 2.0 cannot restore a container from a checkpoint"
		}
		return StatusOK, ""
	}
	return StatusWarn, "runtime " + name + " is not known to checkpoint and restore"
}

// Print writes the report as a table, fixes under each failing line.
func Print(w io.Writer, checks []Check) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STATUS\tSCOPE\tCHECK\tDETAIL")
	for _, c := range checks {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", c.Status, c.Scope, c.Name, c.Detail)
		if c.Fix != "" && c.Status != StatusOK {
			fmt.Fprintf(tw, "\t\t\t→ %s\n", c.Fix)
		}
	}
	_ = tw.Flush()
}

func newDoctorCommand(o *Options) *cobra.Command {
	agentNS, karmadaNS := "livemigrate-system", "karmada-system"
	maxAge := 5 * time.Minute
	hostKubeconfig := ""
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Check an installation: CRDs, webhooks, scheduler, descheduler, and in every member the agents, their runtimes and the prober",
		Long: `Check an installation from the Karmada control plane's kubeconfig.

On the Karmada side: the CRDs at the version this plugin expects, the
descheduler's webhook answering a dry-run LiveMigration, the scheduler's and
descheduler's leader-election Leases. In every member cluster (through the
push-mode credentials Karmada holds): the agent CRDs, the restore webhook, an
agent report renewed on every node with a runtime that can restore
checkpoints, and a fresh ClusterLatency from its prober.

For every webhook registration, its caBundle parses and the serving
certificate chains to it, names the host the API server calls, and is valid
(a WARN within 30 days of its or its CA's expiry). The serving certificate
is the one the webhook presents in a TLS handshake from here; when its
address cannot be dialled from here (a Service, a cluster-internal name), the
one in the Secret the webhook mounts: in the member for the restore webhook,
in the host cluster (--host-kubeconfig) for the descheduler's.

Exits non-zero when a check fails; each failing check says what to fix.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			kc, err := o.client()
			if err != nil {
				return err
			}
			d := &Doctor{
				Karmada:        kc,
				Members:        &member.Clients{Reader: kc, Scheme: DoctorScheme(), NewClient: o.NewMemberClient},
				Now:            o.Clock.Now,
				AgentNamespace: agentNS, KarmadaNamespace: karmadaNS, LatencyMaxAge: maxAge,
			}
			if hostKubeconfig != "" {
				cfg, err := clientcmd.BuildConfigFromFlags("", hostKubeconfig)
				if err != nil {
					return fmt.Errorf("--host-kubeconfig: loading %s: %w", hostKubeconfig, err)
				}
				if d.Host, err = client.New(cfg, client.Options{Scheme: DoctorScheme()}); err != nil {
					return fmt.Errorf("--host-kubeconfig: connecting to the host cluster: %w", err)
				}
			}
			checks := d.Run(cmd.Context())
			Print(o.Out, checks)
			failed := 0
			for _, c := range checks {
				if c.Status == StatusFail {
					failed++
				}
			}
			if failed > 0 {
				return fmt.Errorf("%d of %d checks failed", failed, len(checks))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&agentNS, "agent-namespace", agentNS, "Namespace of the agents in the member clusters (the member release's).")
	cmd.Flags().StringVar(&karmadaNS, "karmada-namespace", karmadaNS, "Namespace of the scheduler's and descheduler's Leases in the karmada-apiserver.")
	cmd.Flags().DurationVar(&maxAge, "latency-max-age", maxAge, "How old a ClusterLatency may be (the Latency plugin's maxAge).")
	cmd.Flags().StringVar(&hostKubeconfig, "host-kubeconfig", "", "Kubeconfig of the cluster that runs the Karmada control plane (the chart's host release): the descheduler's serving certificate is read from its Secret there when the webhook's address cannot be dialled from here.")
	return cmd
}

func orNone(s string) string {
	if s == "" {
		return "(no version)"
	}
	return s
}
