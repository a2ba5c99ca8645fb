package chart

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/livemigrate/livemigrate/descheduler/webhook"
	"github.com/livemigrate/livemigrate/test/lab"
)

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := lab.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func render(t *testing.T, namespace string, sets ...string) []*unstructured.Unstructured {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	objs, err := Render(ctx, repoRoot(t), namespace, sets...)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

var hostSets = []string{"installMode=host", "descheduler.checkpointRepository=registry.example.com/livemigrate/checkpoints"}
var karmadaSets = []string{"installMode=karmada", "descheduler.webhook.caBundle=" + base64.StdEncoding.EncodeToString([]byte("ca")), "prober.enabled=true", "prober.clusters={member1,member2}"}
var memberSets = []string{"installMode=member", "prober.enabled=true", "prober.clusterName=member1"}

func names(objs []*unstructured.Unstructured) []string {
	var out []string
	for _, o := range objs {
		n := o.GetKind() + "/" + o.GetName()
		if o.GetNamespace() != "" {
			n = o.GetKind() + "/" + o.GetNamespace() + "/" + o.GetName()
		}
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// Each install mode renders its part and nothing of the others.
func TestInstallModesRenderTheirObjects(t *testing.T) {
	for _, tc := range []struct {
		mode, namespace string
		sets            []string
		want, notWant   []string
	}{
		{"host", "karmada-system", hostSets,
			[]string{"Deployment/karmada-system/livemigrate-descheduler", "Deployment/karmada-system/livemigrate-scheduler-second", "Service/karmada-system/livemigrate-descheduler", "Secret/karmada-system/livemigrate-descheduler-webhook-cert", "Secret/karmada-system/livemigrate-descheduler-webhook-cert-ca", "ConfigMap/karmada-system/livemigrate-scheduler-config"},
			[]string{"CustomResourceDefinition/", "DaemonSet/", "ValidatingWebhookConfiguration/"}},
		{"karmada", "karmada-system", karmadaSets,
			[]string{"CustomResourceDefinition/livemigrations.livemigrate.io", "CustomResourceDefinition/clusterlatencies.livemigrate.io", "ValidatingWebhookConfiguration/livemigrate-descheduler", "ClusterRole/livemigrate-descheduler", "ClusterRole/livemigrate-scheduler-plugins", "ClusterRole/livemigrate-prober-member1", "ClusterRoleBinding/livemigrate-prober-member2"},
			[]string{"CustomResourceDefinition/podcheckpoints.agent.livemigrate.io", "Deployment/", "DaemonSet/", "Secret/"}},
		{"member", "livemigrate-system", memberSets,
			[]string{"CustomResourceDefinition/podcheckpoints.agent.livemigrate.io", "CustomResourceDefinition/podrestores.agent.livemigrate.io", "CustomResourceDefinition/volumereplications.agent.livemigrate.io", "DaemonSet/livemigrate-system/livemigrate-agent", "Deployment/livemigrate-system/livemigrate-restore", "Deployment/livemigrate-system/livemigrate-prober", "MutatingWebhookConfiguration/livemigrate-restore", "ClusterRole/livemigrate-descheduler-member"},
			[]string{"CustomResourceDefinition/livemigrations.livemigrate.io", "ValidatingWebhookConfiguration/", "Deployment/livemigrate-system/livemigrate-descheduler"}},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			got := names(render(t, tc.namespace, tc.sets...))
			for _, w := range tc.want {
				if !slices.Contains(got, w) {
					t.Errorf("%s not rendered; rendered: %v", w, got)
				}
			}
			for _, nw := range tc.notWant {
				for _, g := range got {
					if strings.HasPrefix(g, nw) {
						t.Errorf("%s rendered in mode %s", g, tc.mode)
					}
				}
			}
		})
	}
}

// A value that cannot install is refused at render time with a message
// naming the value and what to write.
func TestBadValuesAreRefusedNamingTheValue(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		sets []string
		want string
	}{
		{"unknown mode", []string{"installMode=all"}, `installMode "all" is not one of host, karmada, member`},
		{"host without a repository", []string{"installMode=host"}, "descheduler.checkpointRepository is required"},
		{"karmada without the CA", []string{"installMode=karmada"}, "descheduler.webhook.caBundle is required"},
		{"prober without its cluster", []string{"installMode=member", "prober.enabled=true"}, "prober.clusterName is required"},
		{"unknown scheduler mode", append([]string{"scheduler.mode=both"}, hostSets...), `scheduler.mode "both" is not one of second, replace`},
		{"unknown certificate mode", []string{"installMode=member", "certs.mode=vault"}, `certs.mode "vault" is not one of auto, cert-manager, custom`},
		{"unknown claim policy", []string{"installMode=member", "descheduler.sourceClaimPolicy=Keep"}, `descheduler.sourceClaimPolicy "Keep" is not one of Retain, Delete`},
		{"webhook URL with a path", append([]string{"descheduler.webhook.url=https://lm.example:8443/validate-livemigrate-io-v1alpha1-livemigration"}, karmadaSets...), `descheduler.webhook.url "https://lm.example:8443/validate-livemigrate-io-v1alpha1-livemigration" is not a base URL: write https://HOST:PORT without a path`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Render(ctx, repoRoot(t), "ns", tc.sets...)
			var re *RenderError
			if !errors.As(err, &re) {
				t.Fatalf("got %v, want a RenderError", err)
			}
			if !strings.Contains(re.Stderr, tc.want) {
				t.Errorf("message %q does not contain %q", re.Stderr, tc.want)
			}
		})
	}
}

// Every container of every mode can be started as the kubelet would start
// it: each $(VAR) of its command line is set by its env, and every path a
// flag names is inside one of its volume mounts (or the ServiceAccount
// token the kubelet mounts).
func TestEveryContainerCommandResolves(t *testing.T) {
	d := Downward{NodeName: "node-1", HostIP: "192.0.2.10", PodIP: "10.0.0.5", PodName: "p", Namespace: "ns"}
	pathFlags := []string{"checkpoint-dir", "kubelet-ca-file", "kubelet-token-file", "replication-target-roots", "replication-kubelet-root", "webhook-cert-dir", "kubeconfig", "config", "livemigrate-config"}
	for _, tc := range []struct {
		mode, ns string
		sets     []string
	}{{"host", "karmada-system", hostSets}, {"member", "livemigrate-system", memberSets}} {
		for _, o := range render(t, tc.ns, tc.sets...) {
			if o.GetKind() != "Deployment" && o.GetKind() != "DaemonSet" {
				continue
			}
			spec, err := PodSpec(o)
			if err != nil {
				t.Fatal(err)
			}
			for i := range spec.Containers {
				c := &spec.Containers[i]
				cmd, err := ContainerCommand(c, d)
				if err != nil {
					t.Errorf("%s %s: %v", o.GetKind(), o.GetName(), err)
					continue
				}
				if !strings.HasPrefix(cmd.Path, "/bin/livemigrate-") {
					t.Errorf("%s %s runs %s, want the image's /bin/<component>", o.GetKind(), o.GetName(), cmd.Path)
				}
				for _, f := range pathFlags {
					v, ok := Flag(cmd.Args, f)
					if !ok {
						continue
					}
					for _, p := range strings.Split(v, ",") {
						if !mounted(spec, c, p) {
							t.Errorf("%s %s: --%s=%s is not inside any volume mount of container %s", o.GetKind(), o.GetName(), f, p, c.Name)
						}
					}
				}
			}
		}
	}
}

func mounted(spec *corev1.PodSpec, c *corev1.Container, path string) bool {
	if strings.HasPrefix(path, "/var/run/secrets/kubernetes.io/serviceaccount/") {
		return spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken
	}
	for _, m := range c.VolumeMounts {
		if path == m.MountPath || strings.HasPrefix(path, strings.TrimSuffix(m.MountPath, "/")+"/") {
			return true
		}
	}
	return false
}

// The node agent's DaemonSet gives the agent what it needs to start and to
// be reached: the node's address to advertise, its replication port
// published on the node, and no host PID namespace it does not use.
func TestAgentDaemonSetIsReachable(t *testing.T) {
	objs := render(t, "livemigrate-system", memberSets...)
	ds := Find(objs, "DaemonSet", "livemigrate-agent")
	if ds == nil {
		t.Fatal("no agent DaemonSet rendered")
	}
	spec, err := PodSpec(ds)
	if err != nil {
		t.Fatal(err)
	}
	if spec.HostPID {
		t.Error("hostPID is set; the agent uses no host PID")
	}
	c := &spec.Containers[0]
	cmd, err := ContainerCommand(c, Downward{NodeName: "node-1", HostIP: "192.0.2.10"})
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := Flag(cmd.Args, "replication-advertise-host"); v != "192.0.2.10" {
		t.Errorf("--replication-advertise-host=%q, want the node's address 192.0.2.10", v)
	}
	if v, _ := Flag(cmd.Args, "node-name"); v != "node-1" {
		t.Errorf("--node-name=%q, want node-1", v)
	}
	port, _ := Flag(cmd.Args, "replication-port")
	published := false
	for _, p := range c.Ports {
		if p.Name == "replication" && p.HostPort != 0 && p.HostPort == p.ContainerPort && strings.TrimSpace(port) == itoa(p.ContainerPort) {
			published = true
		}
	}
	if !published {
		t.Errorf("replication port %s is not published as a hostPort: %+v", port, c.Ports)
	}
	hn := Find(render(t, "livemigrate-system", append(memberSets, "agent.hostNetwork=true")...), "DaemonSet", "livemigrate-agent")
	hspec, err := PodSpec(hn)
	if err != nil {
		t.Fatal(err)
	}
	if !hspec.HostNetwork || hspec.DNSPolicy != corev1.DNSClusterFirstWithHostNet {
		t.Errorf("agent.hostNetwork=true: hostNetwork %v dnsPolicy %q", hspec.HostNetwork, hspec.DNSPolicy)
	}
}

func itoa(i int32) string { return strconv.Itoa(int(i)) }

// Images default to the components' images at the chart's appVersion.
func TestImagesDefaultToTheChartVersion(t *testing.T) {
	raw, err := RepoFile(repoRoot(t), filepath.Join(Dir, "Chart.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var meta struct {
		AppVersion string `json:"appVersion"`
	}
	if err := yaml.Unmarshal(raw, &meta); err != nil {
		t.Fatal(err)
	}
	for _, o := range append(render(t, "karmada-system", hostSets...), render(t, "livemigrate-system", memberSets...)...) {
		if o.GetKind() != "Deployment" && o.GetKind() != "DaemonSet" {
			continue
		}
		spec, err := PodSpec(o)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range spec.Containers {
			name := strings.TrimPrefix(c.Command[0], "/bin/")
			if want := "ghcr.io/livemigrate/" + name + ":v" + meta.AppVersion; c.Image != want {
				t.Errorf("%s %s: image %s, want %s", o.GetKind(), o.GetName(), c.Image, want)
			}
		}
	}
}

// The generated webhook certificates verify against the caBundle the
// webhook is registered with, for the Service name the API server calls.
func TestWebhookCertificatesMatchTheirRegistration(t *testing.T) {
	member := render(t, "livemigrate-system", memberSets...)
	mwc := Find(member, "MutatingWebhookConfiguration", "livemigrate-restore")
	hooks, _, _ := unstructured.NestedSlice(mwc.Object, "webhooks")
	caB64, _, _ := unstructured.NestedString(hooks[0].(map[string]any), "clientConfig", "caBundle")
	verifyServing(t, Find(member, "Secret", "livemigrate-restore-webhook-tls"), caB64, "livemigrate-restore.livemigrate-system.svc")

	host := render(t, "karmada-system", hostSets...)
	sec := Find(host, "Secret", "livemigrate-descheduler-webhook-cert")
	ca, _, _ := unstructured.NestedString(sec.Object, "data", "ca.crt")
	verifyServing(t, sec, ca, "livemigrate-descheduler.karmada-system.svc")
}

// The karmada mode registers both of the descheduler's webhooks at the paths
// the descheduler serves them on, under the Service's address or
// descheduler.webhook.url: the LiveMigration webhook failing closed, and the
// policy annotation webhook failing open and sent only objects that carry a
// livemigrate.io/ annotation.
func TestDeschedulerWebhooksAreRegisteredAtTheirPaths(t *testing.T) {
	for _, tc := range []struct {
		name, base string
		sets       []string
	}{
		{"service", "https://livemigrate-descheduler.karmada-system.svc:443", karmadaSets},
		{"url", "https://lm.example:8443", append([]string{"descheduler.webhook.url=https://lm.example:8443/"}, karmadaSets...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vwc := Find(render(t, "karmada-system", tc.sets...), "ValidatingWebhookConfiguration", "livemigrate-descheduler")
			if vwc == nil {
				t.Fatal("no ValidatingWebhookConfiguration livemigrate-descheduler")
			}
			hooks, _, _ := unstructured.NestedSlice(vwc.Object, "webhooks")
			want := map[string]struct{ url, failurePolicy string }{
				"livemigrations.livemigrate.io":     {tc.base + webhook.Path, "Fail"},
				"policy-annotations.livemigrate.io": {tc.base + webhook.PolicyPath, "Ignore"},
			}
			for _, h := range hooks {
				hm := h.(map[string]any)
				name, _, _ := unstructured.NestedString(hm, "name")
				w, ok := want[name]
				if !ok {
					t.Errorf("unexpected webhook %s", name)
					continue
				}
				delete(want, name)
				if url, _, _ := unstructured.NestedString(hm, "clientConfig", "url"); url != w.url {
					t.Errorf("%s: url %q, want %q", name, url, w.url)
				}
				if fp, _, _ := unstructured.NestedString(hm, "failurePolicy"); fp != w.failurePolicy {
					t.Errorf("%s: failurePolicy %q, want %q", name, fp, w.failurePolicy)
				}
				if name == "policy-annotations.livemigrate.io" {
					mc, _, _ := unstructured.NestedSlice(hm, "matchConditions")
					if len(mc) != 1 || !strings.Contains(mc[0].(map[string]any)["expression"].(string), "startsWith('livemigrate.io/')") {
						t.Errorf("%s: matchConditions %v do not select objects with a livemigrate.io/ annotation", name, mc)
					}
				}
			}
			for name := range want {
				t.Errorf("webhook %s not registered", name)
			}
		})
	}
}

func verifyServing(t *testing.T, secret *unstructured.Unstructured, caB64, dnsName string) {
	t.Helper()
	if secret == nil {
		t.Fatal("no webhook Secret rendered")
	}
	crtB64, _, _ := unstructured.NestedString(secret.Object, "data", "tls.crt")
	caPEM, err := base64.StdEncoding.DecodeString(caB64)
	if err != nil {
		t.Fatal(err)
	}
	crtPEM, err := base64.StdEncoding.DecodeString(crtB64)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatal("caBundle holds no certificate")
	}
	blk, _ := pem.Decode(crtPEM)
	if blk == nil {
		t.Fatal("tls.crt holds no PEM block")
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, DNSName: dnsName, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		t.Errorf("%s: serving certificate does not verify for %s: %v", secret.GetName(), dnsName, err)
	}
}

// The chart's CRDs are the generated ones (make generate copies them).
func TestChartCRDsAreTheGeneratedCRDs(t *testing.T) {
	root := repoRoot(t)
	gen, _ := filepath.Glob(filepath.Join(root, "manifests/crds/*.yaml"))
	chart, _ := filepath.Glob(filepath.Join(root, Dir, "files/crds/*.yaml"))
	if len(gen) == 0 || len(gen) != len(chart) {
		t.Fatalf("manifests/crds has %d files, %s/files/crds %d: run make generate", len(gen), Dir, len(chart))
	}
	for _, g := range gen {
		a, _ := os.ReadFile(g)
		b, err := os.ReadFile(filepath.Join(root, Dir, "files/crds", filepath.Base(g)))
		if err != nil || !bytes.Equal(a, b) {
			t.Errorf("%s differs from the chart's copy: run make generate", filepath.Base(g))
		}
	}
	// Every CRD is kept on uninstall.
	for _, o := range append(render(t, "karmada-system", karmadaSets...), render(t, "livemigrate-system", memberSets...)...) {
		if o.GetKind() == "CustomResourceDefinition" && o.GetAnnotations()["helm.sh/resource-policy"] != "keep" {
			t.Errorf("CRD %s is not kept on uninstall", o.GetName())
		}
	}
}

// Every value is documented, and the chart's README is generated from them.
func TestChartReadmeDocumentsEveryValue(t *testing.T) {
	root := repoRoot(t)
	bin, err := Renderer(context.Background(), root)
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "readme", "--check", "--chart", filepath.Join(root, Dir)).CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
}

// manifests/install is what make manifests renders from the chart now.
func TestGeneratedManifestsAreCurrent(t *testing.T) {
	root := repoRoot(t)
	out := t.TempDir()
	if b, err := exec.Command(filepath.Join(root, "hack/render-manifests.sh"), out).CombinedOutput(); err != nil {
		t.Fatalf("hack/render-manifests.sh: %v\n%s", err, b)
	}
	for _, mode := range []string{"host", "karmada", "member"} {
		want, err := os.ReadFile(filepath.Join(out, mode+".yaml"))
		if err != nil {
			t.Fatal(err)
		}
		have, err := os.ReadFile(filepath.Join(root, "manifests/install", mode+".yaml"))
		if err != nil || !bytes.Equal(have, want) {
			t.Errorf("manifests/install/%s.yaml is not what the chart renders: run make manifests and commit it", mode)
		}
	}
}

// The chart's default scheduler plugin configuration is the complete
// example of manifests/scheduler/scheduler-plugins.yaml (every default
// spelled out), so the two cannot drift.
func TestSchedulerPluginConfigIsTheDocumentedDefault(t *testing.T) {
	cm := Find(render(t, "karmada-system", hostSets...), "ConfigMap", "livemigrate-scheduler-config")
	if cm == nil {
		t.Fatal("no scheduler ConfigMap rendered")
	}
	data, _, _ := unstructured.NestedString(cm.Object, "data", "scheduler-plugins.yaml")
	raw, err := RepoFile(repoRoot(t), "manifests/scheduler/scheduler-plugins.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var got, want any
	if err := yaml.Unmarshal([]byte(data), &got); err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(raw, &want); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("the chart's scheduler.pluginConfig differs from manifests/scheduler/scheduler-plugins.yaml (-want +got):\n%s", d)
	}
}
