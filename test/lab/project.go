package lab

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	neturl "net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"

	"github.com/livemigrate/livemigrate/test/lab/relay"
)

// This file holds what the live-migration components of the components
// table need around them in the lab: the identities, RBAC and webhook
// registrations their manifests give them in clusters.

const (
	// AgentNamespace is the agent's namespace in every member.
	AgentNamespace = "livemigrate-system"
	// CheckpointRepository is the repository of the lab registry the
	// agents push checkpoint images to.
	CheckpointRepository = "livemigrate/checkpoints"
	// LabAppImage is the image name the lab node runtime runs the lab app for.
	LabAppImage = "livemigrate.io/labapp:latest"

	// DeschedulerPollInterval is the descheduler's --poll-interval in the lab.
	DeschedulerPollInterval = 500 * time.Millisecond
	// DeschedulerRollbackAbortWait is the descheduler's
	// --rollback-abort-wait in the lab: how long a rollback waits for the
	// agents to confirm that volume replication stopped.
	DeschedulerRollbackAbortWait = 15 * time.Second
)

// memberManifests holds what is applied to every member cluster before
// the agents start: the chart's member objects (manifests/install/member.yaml,
// rendered from charts/livemigrate by make manifests) of the kinds in
// kindResources — the agent's and restore webhook's ServiceAccounts and
// RBAC, and what the descheduler needs with the push-mode credentials —
// in the agent's namespace, created first.
const memberManifests = "manifests/install/member.yaml"

// karmadaManifests is the chart's Karmada-plane part, whose webhook
// registration the lab applies by URL.
const karmadaManifests = "manifests/install/karmada.yaml"

// kindResources maps the kinds of memberManifests to their resources.
var kindResources = map[string]schema.GroupVersionResource{
	"Namespace":          {Version: "v1", Resource: "namespaces"},
	"ServiceAccount":     {Version: "v1", Resource: "serviceaccounts"},
	"ClusterRole":        {Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterroles"},
	"ClusterRoleBinding": {Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterrolebindings"},
	"Role":               {Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "roles"},
	"RoleBinding":        {Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "rolebindings"},
}

// memberIdentity holds the agent's credentials in one member.
type memberIdentity struct {
	AgentKubeconfig   string
	AgentToken        string
	RestoreKubeconfig string
}

// agentIdentity applies memberManifests to the member once and issues
// tokens for the agent's ServiceAccounts.
func (l *Lab) agentIdentity(m *Member) (*memberIdentity, error) {
	l.identityMu.Lock()
	defer l.identityMu.Unlock()
	if l.identities == nil {
		l.identities = map[*Member]*memberIdentity{}
	}
	if id, ok := l.identities[m]; ok {
		return id, nil
	}
	ctx, cancel := context.WithTimeout(l.ctx, time.Minute)
	defer cancel()
	objs, err := decodeYAMLFile(filepath.Join(l.root, memberManifests))
	if err != nil {
		return nil, err
	}
	ns := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "Namespace",
		// The restore webhook never looks at its own namespace's pods.
		"metadata": map[string]any{"name": AgentNamespace, "labels": map[string]any{"agent.livemigrate.io/restore-webhook": "disabled"}},
	}}
	for _, o := range append([]*unstructured.Unstructured{ns}, objs...) {
		if _, ok := kindResources[o.GetKind()]; !ok {
			continue
		}
		if err := applyObject(ctx, &m.Cluster, o); err != nil {
			return nil, fmt.Errorf("%s in %s: %w", memberManifests, m.Name, err)
		}
	}
	// The push-mode credentials Karmada holds for the member are lab-admin's.
	binding := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
		"metadata": map[string]any{"name": "livemigrate-descheduler-member"},
		"roleRef":  map[string]any{"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "livemigrate-descheduler-member"},
		"subjects": []any{map[string]any{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "lab-admin"}},
	}}
	if err := applyObject(ctx, &m.Cluster, binding); err != nil {
		return nil, err
	}
	dir := filepath.Join(l.Dir, "components", "identity-"+m.Name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	id := &memberIdentity{}
	if id.AgentKubeconfig, id.AgentToken, err = l.serviceAccountKubeconfig(ctx, m, "livemigrate-agent", dir); err != nil {
		return nil, err
	}
	if id.RestoreKubeconfig, _, err = l.serviceAccountKubeconfig(ctx, m, "livemigrate-restore", dir); err != nil {
		return nil, err
	}
	l.identities[m] = id
	return id, nil
}

func applyObject(ctx context.Context, c *Cluster, o *unstructured.Unstructured) error {
	gvr, ok := kindResources[o.GetKind()]
	if !ok {
		return fmt.Errorf("kind %s is not known to the lab", o.GetKind())
	}
	var err error
	if o.GetNamespace() != "" {
		_, err = c.Dynamic.Resource(gvr).Namespace(o.GetNamespace()).Create(ctx, o, metav1.CreateOptions{})
	} else {
		_, err = c.Dynamic.Resource(gvr).Create(ctx, o, metav1.CreateOptions{})
	}
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating %s %s: %w", o.GetKind(), o.GetName(), err)
	}
	return nil
}

// serviceAccountKubeconfig issues a token of a ServiceAccount of the
// agent's namespace and writes a kubeconfig using it, and the token alone
// (the agent presents it to the kubelet).
func (l *Lab) serviceAccountKubeconfig(ctx context.Context, m *Member, sa, dir string) (string, string, error) {
	tr, err := m.Client.CoreV1().ServiceAccounts(AgentNamespace).CreateToken(ctx, sa, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](7 * 24 * 3600)},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", "", fmt.Errorf("token of %s in %s: %w", sa, m.Name, err)
	}
	tok := filepath.Join(dir, sa+".token")
	if err := os.WriteFile(tok, []byte(tr.Status.Token), 0o600); err != nil {
		return "", "", err
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[m.Name] = &clientcmdapi.Cluster{Server: m.URL, CertificateAuthorityData: l.pki.caPEM}
	cfg.AuthInfos[sa] = &clientcmdapi.AuthInfo{Token: tr.Status.Token}
	cfg.Contexts[m.Name] = &clientcmdapi.Context{Cluster: m.Name, AuthInfo: sa}
	cfg.CurrentContext = m.Name
	kc := filepath.Join(dir, sa+".kubeconfig")
	return kc, tok, clientcmd.WriteToFile(*cfg, kc)
}

// webhookCertDir writes the lab's serving certificate (SAN 127.0.0.1,
// signed by the lab CA) as tls.crt/tls.key into the instance's directory.
func (in *Instance) webhookCertDir() (string, error) {
	dir, err := in.Dir()
	if err != nil {
		return "", err
	}
	certDir := filepath.Join(dir, "certs")
	if err := os.MkdirAll(certDir, 0o700); err != nil {
		return "", err
	}
	for src, dst := range map[string]string{in.Lab.pki.ServerCert: "tls.crt", in.Lab.pki.ServerKey: "tls.key"} {
		b, err := os.ReadFile(src)
		if err != nil {
			return "", err
		}
		if err := os.WriteFile(filepath.Join(certDir, dst), b, 0o600); err != nil {
			return "", err
		}
	}
	return certDir, nil
}

// RegistryHost is the lab registry's host:port, the descheduler's default
// checkpoint repository's host. With Options.WANDataPath it is a relay in
// front of the registry, which then sits at the first member's site: bytes
// from the registry (pulls) cross the link between the two members, delay
// and bandwidth cap; bytes to it (pushes, from the first member) only its
// delay, since pushers and pullers share one address. Migrations between
// the two members use RegistryHostAt instead.
func (l *Lab) RegistryHost() string {
	ins := l.Instances("lab-registry")
	if len(ins) == 0 {
		return ""
	}
	registry := ins[0].Addr("registry")
	if !l.opts.WANDataPath {
		return registry
	}
	link, err := l.dataLink(l.Members[0].Name, l.Members[1].Name)
	if err != nil {
		return ""
	}
	addr, err := l.dataPathRelay("registry", relay.Config{Target: registry, Forward: relay.Link{Delay: link.Delay, Switch: link.Switch}, Reverse: link})
	if err != nil {
		return ""
	}
	return addr
}

// RegistryHostAt is the host:port of the registry at member's site, where
// the descheduler (--checkpoint-repository-for) has the checkpoint images
// of migrations into member pushed. Without Options.WANDataPath it is the
// lab registry itself. With it, the one lab registry plays a registry at
// member's site through a relay of its own: the client → registry
// direction carries the link from the other member to member (delay and
// cap), so the source agents' push crosses the link once; the registry →
// client direction is unshaped, so the target runtime's pull stays on the
// site's LAN. The approximation: the relay cannot tell a pusher from a
// puller, so the pull's requests also pay the link's delay (a few round
// trips, not its bytes) and the push's responses do not.
func (l *Lab) RegistryHostAt(member string) string {
	ins := l.Instances("lab-registry")
	if len(ins) == 0 {
		return ""
	}
	registry := ins[0].Addr("registry")
	if !l.opts.WANDataPath {
		return registry
	}
	idx := slices.IndexFunc(l.Members, func(m *Member) bool { return m.Name == member })
	if idx < 0 {
		return ""
	}
	link, err := l.dataLink(l.Members[1-idx].Name, member)
	if err != nil {
		return ""
	}
	addr, err := l.dataPathRelay("registry-at-"+member, relay.Config{Target: registry, Forward: link})
	if err != nil {
		return ""
	}
	return addr
}

// registryHosts lists every address of the lab registry the components
// may be given (all plain HTTP).
func (l *Lab) registryHosts() []string {
	hosts := []string{l.RegistryHost()}
	if l.opts.WANDataPath {
		for _, m := range l.Members {
			hosts = append(hosts, l.RegistryHostAt(m.Name))
		}
	}
	return hosts
}

// dataLink is the link from one member to another for the relays of
// Options.WANDataPath. Every data path relay carrying bytes in the same
// direction shares one relay.Wire, so concurrent transfers (the final volume
// sync beside the checkpoint push) share the link's bandwidth as they would
// on one WAN link, instead of getting the whole cap each.
func (l *Lab) dataLink(from, to string) (relay.Link, error) {
	link, err := l.Link(from, to)
	if err != nil {
		return relay.Link{}, err
	}
	l.wiresMu.Lock()
	defer l.wiresMu.Unlock()
	if l.wires == nil {
		l.wires = map[string]*relay.Wire{}
	}
	key := from + ">" + to
	if l.wires[key] == nil {
		l.wires[key] = relay.NewWire()
	}
	link.Wire = l.wires[key]
	return link, nil
}

// dataPathRelay starts (once per name) a relay of Options.WANDataPath and
// returns its address.
func (l *Lab) dataPathRelay(name string, cfg relay.Config) (string, error) {
	key := "data|" + name
	l.relayMu.Lock()
	defer l.relayMu.Unlock()
	if r, ok := l.relays[key]; ok {
		return r.Addr(), nil
	}
	r, err := relay.Start(l.ctx, cfg)
	if err != nil {
		return "", fmt.Errorf("data path relay %s to %s: %w", name, cfg.Target, err)
	}
	l.relays[key] = r
	return r.Addr(), nil
}

// replicationAdvertiseHost is the host an agent of member m advertises
// for its replication receivers: 127.0.0.1, or with Options.WANDataPath
// 127.0.0.<10+index of m>, where a relay carrying the link from the other
// member listens on the receiver's port.
func (l *Lab) replicationAdvertiseHost(m *Member, port int) (string, error) {
	if !l.opts.WANDataPath {
		return "127.0.0.1", nil
	}
	idx := slices.Index(l.Members, m)
	in, err := l.dataLink(l.Members[1-idx].Name, m.Name)
	if err != nil {
		return "", err
	}
	out, err := l.dataLink(m.Name, l.Members[1-idx].Name)
	if err != nil {
		return "", err
	}
	host := fmt.Sprintf("127.0.0.%d", 10+idx)
	cfg := relay.Config{Listen: fmt.Sprintf("%s:%d", host, port), Target: fmt.Sprintf("127.0.0.1:%d", port), Forward: in, Reverse: out}
	if _, err := l.dataPathRelay("replication-"+cfg.Listen, cfg); err != nil {
		return "", err
	}
	return host, nil
}

// Paths locates what the lab's node runtimes and agents keep on disk, from
// the lab's directory alone (so that a program attached to a lab started
// by livemigrate-lab up finds it too).
type Paths struct{ Dir string }

// Paths returns the lab's Paths.
func (l *Lab) Paths() Paths { return Paths{Dir: l.Dir} }

// NodeRuntime is the node runtimes' container runtime (NodeRuntimeRunc or
// NodeRuntimeProcess).
func (l *Lab) NodeRuntime() string { return l.opts.NodeRuntime }

// CRIU is the criu binary of the runc node runtime; empty otherwise.
func (l *Lab) CRIU() string { return l.criu }

// VolumeRoot is the directory under which target volumes are created on
// every node of the lab (the agents' --replication-target-roots and the
// descheduler's --replication-target-root).
func (p Paths) VolumeRoot() string { return filepath.Join(p.Dir, "volumes") }

// NodeRoot is the lab node runtime's root directory of a node: its
// checkpoints/ (the kubelet's checkpoint directory) and pods/.
func (p Paths) NodeRoot(node string) string { return filepath.Join(p.Dir, "nodes", node) }

// CgroupParent is where a node's kubepods cgroup lives below the freezer
// mount: unique per lab directory, so that labs never see each other's pods.
func (p Paths) CgroupParent(node string) string {
	abs, err := filepath.Abs(p.Dir)
	if err != nil {
		abs = p.Dir
	}
	sum := sha256.Sum256([]byte(abs))
	return filepath.Join("livemigrate-lab", hex.EncodeToString(sum[:6]), node)
}

// removeCgroups removes the (empty, once the node runtimes stopped their
// pods) cgroup directories of the lab's nodes, deepest first.
// runc creates a container's cgroup in every v1 hierarchy, not only the
// freezer's.
func (l *Lab) removeCgroups() {
	hierarchies, _ := os.ReadDir("/sys/fs/cgroup")
	for _, h := range hierarchies {
		root := filepath.Join("/sys/fs/cgroup", h.Name(), filepath.Dir(l.Paths().CgroupParent("x")))
		var dirs []string
		_ = filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, path)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			_ = os.Remove(dirs[i])
		}
	}
}

func registryArgs(in *Instance) ([]string, error) {
	dir, err := in.Dir()
	if err != nil {
		return nil, err
	}
	return []string{"registry", "--listen=" + in.Addr("registry"), "--dir=" + filepath.Join(dir, "blobs")}, nil
}

func labnodeArgs(in *Instance) ([]string, error) {
	return []string{
		"--kubeconfig=" + in.Member.Kubeconfig,
		"--node-name=" + in.Node,
		"--root=" + in.Lab.Paths().NodeRoot(in.Node),
		"--cgroup-parent=" + in.Lab.Paths().CgroupParent(in.Node),
		"--labapp=" + in.Lab.bin("labapp"),
		"--labapp-image=" + LabAppImage,
		"--listen=" + in.Addr("kubelet"),
		"--container-runtime=" + in.Lab.opts.NodeRuntime,
		"--criu=" + in.Lab.criu,
	}, nil
}

// labnodeEnv is the node runtime's environment, which runc passes on to
// CRIU. Hardware breakpoints never fire in the virtual machines the lab
// runs on, so a dump would wait forever for its tasks to trap:
// CRIU_FAULT=130 is CRIU's own switch (FI_NO_BREAKPOINTS) to do without
// them. Only the lab sets it; nothing of the project's does.
func labnodeEnv(in *Instance) []string {
	if in.Lab.opts.NodeRuntime != NodeRuntimeRunc {
		return nil
	}
	return criuEnv
}

// criuEnv is what the lab adds to CRIU's environment (see labnodeEnv).
var criuEnv = []string{"CRIU_FAULT=130"}

// ensureCRIU builds CRIU with hack/ensure-criu.sh when it is missing (and
// installs runc and iptables), checks that it works on this machine (criu
// check) and returns the criu binary. Either failure says how to run the
// lab with the memory stand-in instead: the lab never falls back to it by
// itself.
func ensureCRIU(root string) (string, error) {
	cmd := exec.Command(filepath.Join(root, "hack", "ensure-criu.sh"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("hack/ensure-criu.sh (the runc node runtime needs runc and CRIU 4.2.1): %w\n%s\n%s", err, lastBytes(stderr.String(), 2048), standinHint)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	criu := lines[len(lines)-1]
	if err := checkCRIU(criu); err != nil {
		return "", err
	}
	return criu, nil
}

// standinHint says how to run the lab where CRIU does not work.
var standinHint = fmt.Sprintf("Fix it, or run the lab with the memory stand-in instead of CRIU: %s=%s (Options.NodeRuntime, nodeRuntime in livemigrate-lab's config).", NodeRuntimeEnv, NodeRuntimeProcess)

// checkCRIU runs criu check, in the node runtimes' environment.
func checkCRIU(criu string) error {
	cmd := exec.Command(criu, "check")
	cmd.Env = append(os.Environ(), criuEnv...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s check: CRIU does not work on this machine, the runc node runtime cannot checkpoint: %w\n%s\n%s", criu, err, lastBytes(strings.TrimSpace(string(out)), 2048), standinHint)
	}
	return nil
}

// removeContainers deletes the runc containers a node runtime that did not
// stop cleanly (killed) left behind.
func (l *Lab) removeContainers() {
	if l.opts.NodeRuntime != NodeRuntimeRunc {
		return
	}
	roots, _ := filepath.Glob(filepath.Join(filepath.Dir(l.Paths().NodeRoot("x")), "*", "runc"))
	for _, root := range roots {
		out, err := exec.Command("runc", "--root", root, "list", "-q").Output()
		if err != nil {
			continue
		}
		for _, id := range strings.Fields(string(out)) {
			_ = exec.Command("runc", "--root", root, "delete", "--force", id).Run()
		}
	}
}

// labnodeReady waits until the node's kubelet API serves and its port is
// published in the Node's status, where the agent looks for it.
func labnodeReady(ctx context.Context, in *Instance) error {
	return poll(ctx, in.Name, func(ctx context.Context) (bool, string, error) {
		n, err := in.Member.Client.CoreV1().Nodes().Get(ctx, in.Node, metav1.GetOptions{})
		if err != nil {
			return false, err.Error(), nil
		}
		if got := int(n.Status.DaemonEndpoints.KubeletEndpoint.Port); got != in.Ports["kubelet"] {
			return false, fmt.Sprintf("kubelet port %d published, want %d", got, in.Ports["kubelet"]), nil
		}
		return true, "", nil
	})
}

func agentArgs(in *Instance) ([]string, error) {
	id, err := in.Lab.agentIdentity(in.Member)
	if err != nil {
		return nil, err
	}
	root := in.Lab.Paths().NodeRoot(in.Node)
	// The node runtime writes its kubelet CA when it starts serving.
	ctx, cancel := context.WithTimeout(in.Lab.ctx, 30*time.Second)
	defer cancel()
	ca := filepath.Join(root, "kubelet-ca.crt")
	if err := poll(ctx, "kubelet CA of "+in.Node, func(context.Context) (bool, string, error) {
		_, err := os.Stat(ca)
		return err == nil, "not written yet", nil
	}); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(in.Lab.Paths().VolumeRoot(), 0o755); err != nil {
		return nil, err
	}
	port := strconv.Itoa(in.Ports["replication"])
	advertise, err := in.Lab.replicationAdvertiseHost(in.Member, in.Ports["replication"])
	if err != nil {
		return nil, err
	}
	args := []string{
		"--mode=node",
		"--node-name=" + in.Node,
		"--kubeconfig=" + id.AgentKubeconfig,
		"--kubelet-address=127.0.0.1",
		"--kubelet-ca-file=" + ca,
		"--kubelet-token-file=" + id.AgentToken,
		"--checkpoint-dir=" + filepath.Join(root, "checkpoints"),
		"--cgroup-root=/sys/fs/cgroup", "--cgroup-version=v1", "--cgroup-driver=cgroupfs",
		"--cgroup-parent=" + in.Lab.Paths().CgroupParent(in.Node),
		"--insecure-registries=" + strings.Join(in.Lab.registryHosts(), ","),
		"--replication-listen-host=127.0.0.1",
		"--replication-advertise-host=" + advertise,
		"--replication-port=" + port,
		"--replication-target-roots=" + in.Lab.Paths().VolumeRoot(),
		"--replication-progress-interval=500ms",
		"--replication-secret-namespace=" + AgentNamespace,
		"--report-namespace=" + AgentNamespace,
		"--report-interval=1s",
		"--metrics-bind-address=0",
		"--health-probe-bind-address=" + in.Addr("health"),
		"--v=2",
	}
	if in.Lab.criu != "" {
		// The node runtime's CRIU, for the node report.
		args = append(args, "--criu="+in.Lab.criu)
	}
	return args, nil
}

func restoreArgs(in *Instance) ([]string, error) {
	id, err := in.Lab.agentIdentity(in.Member)
	if err != nil {
		return nil, err
	}
	certDir, err := in.webhookCertDir()
	if err != nil {
		return nil, err
	}
	return []string{
		"--mode=restore",
		"--kubeconfig=" + id.RestoreKubeconfig,
		"--webhook-host=127.0.0.1",
		"--webhook-port=" + strconv.Itoa(in.Ports["webhook"]),
		"--webhook-cert-dir=" + certDir,
		"--metrics-bind-address=0",
		"--health-probe-bind-address=" + in.Addr("health"),
		"--v=2",
	}, nil
}

// restoreReady waits for the restore webhook and registers it like the
// chart's MutatingWebhookConfiguration, by URL instead of a Service.
func restoreReady(ctx context.Context, in *Instance) error {
	if err := waitHTTP(ctx, in.Name, "http://"+in.Addr("health")+"/readyz", nil); err != nil {
		return err
	}
	url := fmt.Sprintf("https://%s/mutate-v1-pod-restore", in.Addr("webhook"))
	ignore := admissionregistrationv1.Ignore
	none := admissionregistrationv1.SideEffectClassNoneOnDryRun
	scope := admissionregistrationv1.NamespacedScope
	cfg := &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "livemigrate-restore"},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name: "restore.agent.livemigrate.io", AdmissionReviewVersions: []string{"v1"},
			SideEffects: &none, FailurePolicy: &ignore, TimeoutSeconds: ptr.To[int32](5),
			ClientConfig: admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: in.Lab.pki.caPEM},
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}, Scope: &scope},
			}},
			NamespaceSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
				{Key: "kubernetes.io/metadata.name", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"kube-system", "kube-public", "kube-node-lease", AgentNamespace}},
				{Key: "agent.livemigrate.io/restore-webhook", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"disabled"}},
			}},
		}},
	}
	_, err := in.Member.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, cfg, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("registering the restore webhook in %s: %w", in.Member.Name, err)
	}
	return nil
}

func deschedulerArgs(in *Instance) ([]string, error) {
	certDir, err := in.webhookCertDir()
	if err != nil {
		return nil, err
	}
	args := []string{
		"--kubeconfig=" + in.Lab.Karmada.Kubeconfig,
		"--checkpoint-repository=" + in.Lab.RegistryHost() + "/" + CheckpointRepository,
		"--checkpoint-registry-insecure",
		"--replication-target-root=" + in.Lab.Paths().VolumeRoot(),
		"--webhook-host=127.0.0.1",
		"--webhook-port=" + strconv.Itoa(in.Ports["webhook"]),
		"--webhook-cert-dir=" + certDir,
		"--metrics-bind-address=" + in.Addr("metrics"),
		"--health-probe-bind-address=" + in.Addr("health"),
		"--poll-interval=" + DeschedulerPollInterval.String(),
		"--rollback-abort-wait=" + DeschedulerRollbackAbortWait.String(),
		"--v=2",
	}
	if in.Lab.opts.WANDataPath {
		// Each target's registry sits at its site (see RegistryHostAt).
		var per []string
		for _, m := range in.Lab.Members {
			per = append(per, m.Name+"="+in.Lab.RegistryHostAt(m.Name)+"/"+CheckpointRepository)
		}
		args = append(args, "--checkpoint-repository-for="+strings.Join(per, ","))
	}
	in.Lab.instancesMu.Lock()
	defer in.Lab.instancesMu.Unlock()
	return append(args, in.Lab.opts.DeschedulerArgs...), nil
}

// deschedulerReady waits for the descheduler and registers its validating
// and mutating webhooks (the chart's, manifests/install/karmada.yaml) by URL
// with the lab CA.
func deschedulerReady(ctx context.Context, in *Instance) error {
	if err := waitHTTP(ctx, in.Name, "http://"+in.Addr("health")+"/readyz", nil); err != nil {
		return err
	}
	objs, err := decodeYAMLFile(filepath.Join(in.Lab.root, karmadaManifests))
	if err != nil {
		return err
	}
	for _, o := range objs {
		gvr := schema.GroupVersionResource{Group: "admissionregistration.k8s.io", Version: "v1"}
		switch o.GetKind() {
		case "ValidatingWebhookConfiguration":
			gvr.Resource = "validatingwebhookconfigurations"
		case "MutatingWebhookConfiguration":
			gvr.Resource = "mutatingwebhookconfigurations"
		default:
			continue
		}
		hooks, _, _ := unstructured.NestedSlice(o.Object, "webhooks")
		for _, h := range hooks {
			hm := h.(map[string]any)
			cc := hm["clientConfig"].(map[string]any)
			u, err := neturl.Parse(fmt.Sprint(cc["url"]))
			if err != nil {
				return fmt.Errorf("webhook URL in %s: %w", karmadaManifests, err)
			}
			cc["url"] = fmt.Sprintf("https://%s%s", in.Addr("webhook"), u.Path)
			cc["caBundle"] = base64.StdEncoding.EncodeToString(in.Lab.pki.caPEM)
		}
		if err := unstructured.SetNestedSlice(o.Object, hooks, "webhooks"); err != nil {
			return err
		}
		if _, err := in.Lab.Karmada.Dynamic.Resource(gvr).Create(ctx, o, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("registering the descheduler's webhook: %w", err)
		}
	}
	return nil
}

func lastBytes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}
