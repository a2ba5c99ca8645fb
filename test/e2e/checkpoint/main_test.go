package checkpoint

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/livemigrate/livemigrate/agent/app"
	"github.com/livemigrate/livemigrate/agent/checkpointimage"
	"github.com/livemigrate/livemigrate/test/lab"
	"github.com/livemigrate/livemigrate/test/labnode"
)

// env is shared by the tests; setupErr says why it is missing.
var (
	env      *environment
	setupErr error
)

type environment struct {
	lab      *lab.Lab
	dir      string
	registry *labnode.Registry
	members  map[string]*memberEnv
	cleanups []func()
}

type memberEnv struct {
	m        *lab.Member
	client   client.Client
	runtimes map[string]*labnode.Runtime // by node name
}

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "FAIL: the checkpoint end-to-end test needs root (cgroup freezer, /proc/<pid>/mem)")
		os.Exit(1)
	}
	opts := lab.Options{Members: 2, NodesPerMember: 1, Components: []string{}}
	// An interrupted run exits from the lab's own handler; stop the lab app
	// processes first (frozen ones only die once thawed) so none is left.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sig
		if env != nil {
			for _, me := range env.members {
				for _, rt := range me.runtimes {
					rt.StopAll()
				}
			}
		}
	}()
	code := lab.RunTests(m, opts, func(l *lab.Lab) {
		env, setupErr = setup(l)
		if setupErr != nil {
			fmt.Fprintf(os.Stderr, "setting up the agents: %v\n", setupErr)
		}
	})
	if env != nil {
		for i := len(env.cleanups) - 1; i >= 0; i-- {
			env.cleanups[i]()
		}
	}
	os.Exit(code)
}

func requireEnv(t *testing.T) *environment {
	t.Helper()
	if env == nil {
		t.Fatalf("no test environment: %v", setupErr)
	}
	return env
}

func setup(l *lab.Lab) (*environment, error) {
	ctx := context.Background()
	root, err := lab.RepoRoot()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "e2e-checkpoint-")
	if err != nil {
		return nil, err
	}
	e := &environment{lab: l, dir: dir, members: map[string]*memberEnv{}}
	e.cleanups = append(e.cleanups, func() { _ = os.RemoveAll(dir) })
	bin := filepath.Join(dir, "bin")
	for pkg, out := range map[string]string{"./cmd/livemigrate-agent": "livemigrate-agent", "./test/labapp": "labapp"} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(bin, out), pkg)
		cmd.Dir, cmd.Stdout, cmd.Stderr = root, os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return e, fmt.Errorf("building %s: %w", pkg, err)
		}
	}
	if e.registry, err = labnode.StartRegistry("", filepath.Join(dir, "registry")); err != nil {
		return e, err
	}
	e.cleanups = append(e.cleanups, func() { _ = e.registry.Close() })
	parent := "livemigrate-e2e-" + string(uuid.NewUUID())[:8]
	e.cleanups = append(e.cleanups, func() { removeCgroupTree(filepath.Join("/sys/fs/cgroup/freezer", parent)) })
	scheme, err := app.Scheme()
	if err != nil {
		return e, err
	}
	for _, m := range l.Members {
		me := &memberEnv{m: m, runtimes: map[string]*labnode.Runtime{}}
		e.members[m.Name] = me
		if me.client, err = client.New(m.Config, client.Options{Scheme: scheme}); err != nil {
			return e, err
		}
		// The node agent also runs volume replication (agent/replication),
		// which needs its CRD and RBAC.
		for _, f := range []string{"manifests/crds/agent.livemigrate.io_podcheckpoints.yaml", "manifests/crds/agent.livemigrate.io_podrestores.yaml",
			"manifests/crds/agent.livemigrate.io_volumereplications.yaml",
			"manifests/agent/namespace.yaml", "manifests/agent/serviceaccount.yaml", "manifests/agent/rbac.yaml", "manifests/replication/rbac.yaml"} {
			if err := applyYAML(ctx, m, filepath.Join(root, f)); err != nil {
				return e, fmt.Errorf("%s in %s: %w", f, m.Name, err)
			}
		}
		if err := waitCRDs(ctx, me); err != nil {
			return e, err
		}
		mdir := filepath.Join(dir, m.Name)
		agentKC, agentTok, err := saKubeconfig(ctx, m, "livemigrate-agent", mdir)
		if err != nil {
			return e, err
		}
		restoreKC, _, err := saKubeconfig(ctx, m, "livemigrate-restore", mdir)
		if err != nil {
			return e, err
		}
		for _, node := range m.Nodes {
			rt, err := labnode.New(labnode.Config{
				NodeName: node, Client: m.Client, Root: filepath.Join(mdir, "nodes", node),
				FreezerMount: "/sys/fs/cgroup/freezer", CgroupParent: parent + "/" + node,
				LabApp: filepath.Join(bin, "labapp"), Registry: checkpointimage.PushOptions{Insecure: true},
			})
			if err != nil {
				return e, err
			}
			rctx, cancel := context.WithCancel(klog.NewContext(ctx, klog.Background()))
			e.cleanups = append(e.cleanups, func() { cancel(); rt.StopAll() })
			if err := rt.Start(rctx); err != nil {
				return e, err
			}
			me.runtimes[node] = rt
			// The kubelet port comes from the Node (status.daemonEndpoints),
			// where the runtime published it; kwok nodes have no InternalIP.
			host, _, _ := net.SplitHostPort(rt.Addr)
			replPort, err := lab.FreePort()
			if err != nil {
				return e, err
			}
			volRoot := filepath.Join(dir, "volumes")
			if err := os.MkdirAll(volRoot, 0o755); err != nil {
				return e, err
			}
			if err := e.startProcess("agent-"+node, filepath.Join(bin, "livemigrate-agent"),
				"--mode=node", "--node-name="+node, "--kubeconfig="+agentKC,
				"--kubelet-address="+host, "--kubelet-ca-file="+rt.CAFile, "--kubelet-token-file="+agentTok,
				"--checkpoint-dir="+rt.CheckpointDir(), "--cgroup-root=/sys/fs/cgroup", "--cgroup-version=v1", "--cgroup-driver=cgroupfs",
				"--cgroup-parent="+parent+"/"+node, "--insecure-registries="+e.registry.Host,
				"--replication-listen-host=127.0.0.1", "--replication-advertise-host=127.0.0.1",
				"--replication-port-min="+strconv.Itoa(replPort), "--replication-port-max="+strconv.Itoa(replPort),
				"--replication-target-roots="+volRoot,
				"--metrics-bind-address=0", "--health-probe-bind-address=0", "-v=2"); err != nil {
				return e, err
			}
		}
		whPort, err := lab.FreePort()
		if err != nil {
			return e, err
		}
		certDir := filepath.Join(mdir, "webhook-certs")
		caPEM, err := servingCert(certDir)
		if err != nil {
			return e, err
		}
		if err := e.startProcess("restore-"+m.Name, filepath.Join(bin, "livemigrate-agent"),
			"--mode=restore", "--kubeconfig="+restoreKC, "--webhook-host=127.0.0.1", "--webhook-port="+strconv.Itoa(whPort),
			"--webhook-cert-dir="+certDir, "--metrics-bind-address=0", "--health-probe-bind-address=0", "-v=2"); err != nil {
			return e, err
		}
		if err := registerWebhook(ctx, me, whPort, caPEM); err != nil {
			return e, err
		}
	}
	return e, nil
}

// startProcess runs a component like the lab runs its own, logging to a file.
func (e *environment) startProcess(name, bin string, args ...string) error {
	logf, err := os.Create(filepath.Join(e.dir, name+".log"))
	if err != nil {
		return err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return err
	}
	e.cleanups = append(e.cleanups, func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
		}
		logf.Close()
	})
	return nil
}

// logTail returns the end of a component's log.
func (e *environment) logTail(name string, n int) string {
	b, _ := os.ReadFile(filepath.Join(e.dir, name+".log"))
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func applyYAML(ctx context.Context, m *lab.Member, path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	dyn, err := dynamic.NewForConfig(m.Config)
	if err != nil {
		return err
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(m.Client.Discovery()))
	dec := yaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if len(u.Object) == 0 {
			continue
		}
		gvk := u.GroupVersionKind()
		mapping, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			return err
		}
		var ri dynamic.ResourceInterface = dyn.Resource(mapping.Resource)
		if mapping.Scope.Name() == "namespace" {
			ri = dyn.Resource(mapping.Resource).Namespace(u.GetNamespace())
		}
		if _, err := ri.Create(ctx, u, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("%s %s: %w", gvk.Kind, u.GetName(), err)
		}
	}
}

func waitCRDs(ctx context.Context, me *memberEnv) error {
	deadline := time.Now().Add(time.Minute)
	for {
		_, err1 := me.m.Client.Discovery().ServerResourcesForGroupVersion("agent.livemigrate.io/v1alpha1")
		if err1 == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("agent CRDs not served in %s: %w", me.m.Name, err1)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// saKubeconfig issues a token for a ServiceAccount of manifests/agent and
// writes a kubeconfig using it (and the token alone, for the kubelet).
func saKubeconfig(ctx context.Context, m *lab.Member, sa, dir string) (string, string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", err
	}
	tr, err := m.Client.CoreV1().ServiceAccounts("livemigrate-system").CreateToken(ctx, sa, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](24 * 3600)},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", "", fmt.Errorf("token for %s: %w", sa, err)
	}
	tokFile := filepath.Join(dir, sa+".token")
	if err := os.WriteFile(tokFile, []byte(tr.Status.Token), 0o600); err != nil {
		return "", "", err
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["member"] = &clientcmdapi.Cluster{Server: m.Config.Host, CertificateAuthorityData: m.Config.CAData, CertificateAuthority: m.Config.CAFile}
	cfg.AuthInfos[sa] = &clientcmdapi.AuthInfo{Token: tr.Status.Token}
	cfg.Contexts["default"] = &clientcmdapi.Context{Cluster: "member", AuthInfo: sa}
	cfg.CurrentContext = "default"
	kc := filepath.Join(dir, sa+".kubeconfig")
	return kc, tokFile, clientcmd.WriteToFile(*cfg, kc)
}

// servingCert writes tls.crt/tls.key for 127.0.0.1 and returns the CA (the
// certificate itself).
func servingCert(dir string) ([]byte, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "livemigrate-restore"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA: true, BasicConstraintsValid: true, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	crt := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := os.WriteFile(filepath.Join(dir, "tls.crt"), crt, 0o600); err != nil {
		return nil, err
	}
	return crt, os.WriteFile(filepath.Join(dir, "tls.key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
}

// registerWebhook registers the restore webhook like
// manifests/agent/restore-webhook.yaml, with a URL instead of a Service.
func registerWebhook(ctx context.Context, me *memberEnv, port int, ca []byte) error {
	url := fmt.Sprintf("https://127.0.0.1:%d/mutate-v1-pod-restore", port)
	ignore := admissionregistrationv1.Ignore
	none := admissionregistrationv1.SideEffectClassNoneOnDryRun
	scope := admissionregistrationv1.NamespacedScope
	cfg := &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "livemigrate-restore"},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name: "restore.agent.livemigrate.io", AdmissionReviewVersions: []string{"v1"},
			SideEffects: &none, FailurePolicy: &ignore, TimeoutSeconds: ptr.To[int32](5),
			ClientConfig: admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: ca},
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}, Scope: &scope},
			}},
			NamespaceSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
				{Key: "kubernetes.io/metadata.name", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"kube-system", "kube-public", "kube-node-lease", "livemigrate-system"}},
				{Key: "agent.livemigrate.io/restore-webhook", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"disabled"}},
			}},
		}},
	}
	_, err := me.m.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, cfg, metav1.CreateOptions{})
	return err
}

func removeCgroupTree(dir string) {
	entries, _ := os.ReadDir(dir)
	for _, en := range entries {
		if en.IsDir() {
			removeCgroupTree(filepath.Join(dir, en.Name()))
		}
	}
	_ = os.Remove(dir)
}
