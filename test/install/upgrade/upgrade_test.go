package upgrade

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/livemigrate/livemigrate/test/chart"
	"github.com/livemigrate/livemigrate/test/lab"
)

const (
	hostNamespace   = "karmada-system"
	memberNamespace = "livemigrate-system"
	partOf          = "app.kubernetes.io/part-of=livemigrate"
)

var (
	crdGVR            = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	liveMigrationGVR  = schema.GroupVersionResource{Group: "livemigrate.io", Version: "v1alpha1", Resource: "livemigrations"}
	podCheckpointGVR  = schema.GroupVersionResource{Group: "agent.livemigrate.io", Version: "v1alpha1", Resource: "podcheckpoints"}
	validatingGVR     = schema.GroupVersionResource{Group: "admissionregistration.k8s.io", Version: "v1", Resource: "validatingwebhookconfigurations"}
	mutatingGVR       = schema.GroupVersionResource{Group: "admissionregistration.k8s.io", Version: "v1", Resource: "mutatingwebhookconfigurations"}
	karmadaCRDs       = []string{"clusterlatencies.livemigrate.io", "livemigrations.livemigrate.io"}
	memberCRDs        = []string{"podcheckpoints.agent.livemigrate.io", "podrestores.agent.livemigrate.io", "volumereplications.agent.livemigrate.io"}
	deschedulerSecret = "livemigrate-descheduler-webhook-cert"
	restoreSecret     = "livemigrate-restore-webhook-tls"
)

// workload is a rendered Deployment or DaemonSet and a flag its container
// runs with before and after the upgrade.
type workload struct {
	namespace, kind, name, container string
	before, after                    string
}

var workloads = []workload{
	{hostNamespace, "Deployment", "livemigrate-descheduler", "descheduler", "--max-active-migrations-per-cluster=2", "--max-active-migrations-per-cluster=1"},
	{hostNamespace, "Deployment", "livemigrate-scheduler-second", "livemigrate-scheduler", "--v=2", "--v=4"},
	{memberNamespace, "Deployment", "livemigrate-restore", "restore", "--v=2", "--v=4"},
	{memberNamespace, "DaemonSet", "livemigrate-agent", "agent", "--report-interval=15s", "--report-interval=30s"},
}

// TestHelmUpgradeAndUninstall installs the three releases with the Helm
// SDK, starts a migration (a LiveMigration past its planning, admitted by
// the descheduler's webhook registration, and its PodCheckpoint), upgrades
// every release with changed values and then uninstalls them:
//
//   - the upgrade keeps the CRDs (same UIDs) and the migration's objects
//     (same UIDs, status untouched);
//   - every component's pods are replaced by pods running the new command
//     line (the kubelet's part is kwok's, the rollout is the real
//     controllers');
//   - the webhooks' serving certificates are renewed, their CA is kept, and
//     the caBundle of each registration verifies the new certificate for
//     the Service's name in a TLS handshake;
//   - uninstall leaves the CRDs and the migration's objects and nothing
//     else labelled as the chart's.
func TestHelmUpgradeAndUninstall(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	root, err := lab.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	karmada := &testLab.Karmada.Cluster
	member := testLab.Members[0]
	helm := func(verb string, c *lab.Cluster, ns string, args ...string) {
		t.Helper()
		out, err := chart.Helm(ctx, root, verb, c.Kubeconfig, ns, args...)
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		t.Logf("%s %s/%s: %s", verb, c.Name, ns, strings.TrimSpace(out))
	}
	sets := func(vals ...string) []string {
		var out []string
		for _, v := range vals {
			out = append(out, "--set", v)
		}
		return out
	}

	// The lab applies the CRDs itself; here they are the releases'.
	deleteCRDs(ctx, t, karmada.Dynamic, karmadaCRDs)
	deleteCRDs(ctx, t, member.Dynamic, memberCRDs)

	// The host release: member1 stands in for the cluster that runs the
	// Karmada control plane.
	hostValues := []string{"installMode=host", "descheduler.checkpointRepository=registry.example.com/livemigrate/checkpoints"}
	helm("install", &member.Cluster, hostNamespace, append(sets(hostValues...), "--create-namespace")...)

	// The lab has no Service network: the karmada-apiserver reaches the
	// descheduler's webhook at a URL the test serves, with a certificate
	// signed by the CA the host release generated, and verifies it with
	// the caBundle docs/install.md says to pass (the ca.crt of the host
	// release's Secret).
	caSecret := getSecret(ctx, t, member.Client, hostNamespace, deschedulerSecret+"-ca")
	webhook := startAdmissionServer(t, caSecret.Data["tls.crt"], caSecret.Data["tls.key"])
	hostCA := getSecret(ctx, t, member.Client, hostNamespace, deschedulerSecret).Data["ca.crt"]
	karmadaValues := []string{
		"installMode=karmada",
		"descheduler.webhook.url=" + webhook.URL,
		"descheduler.webhook.caBundle=" + base64.StdEncoding.EncodeToString(hostCA),
	}
	helm("install", karmada, hostNamespace, append(sets(karmadaValues...), "--create-namespace")...)
	memberValues := []string{"installMode=member", "deschedulerMemberIdentity.kind=User", "deschedulerMemberIdentity.name=lab-admin"}
	helm("install", &member.Cluster, memberNamespace, append(sets(memberValues...), "--create-namespace")...)

	selectors := map[string]string{}
	for _, w := range workloads {
		selectors[w.name] = waitRolledOut(ctx, t, member.Client, w, w.before)
	}

	// A migration in flight: its LiveMigration (admitted by the webhook)
	// past planning, and the PodCheckpoint it made in the source member.
	lm := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "livemigrate.io/v1alpha1", "kind": "LiveMigration",
		"metadata": map[string]any{"name": "db-to-member2", "namespace": "default"},
		"spec": map[string]any{
			"workloadRef":   map[string]any{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db"},
			"targetCluster": "member2",
		},
	}}
	lm, err = karmada.Dynamic.Resource(liveMigrationGVR).Namespace("default").Create(ctx, lm, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating a LiveMigration through the descheduler's webhook registration: %v", err)
	}
	if webhook.calls.Load() == 0 {
		t.Fatal("the karmada-apiserver admitted a LiveMigration without calling the descheduler's webhook")
	}
	if err := unstructured.SetNestedField(lm.Object, "PreCopy", "status", "phase"); err != nil {
		t.Fatal(err)
	}
	if lm, err = karmada.Dynamic.Resource(liveMigrationGVR).Namespace("default").UpdateStatus(ctx, lm, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("setting the LiveMigration's phase: %v", err)
	}
	pc := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "agent.livemigrate.io/v1alpha1", "kind": "PodCheckpoint",
		"metadata": map[string]any{"name": "db-0-checkpoint", "namespace": "default"},
		"spec": map[string]any{
			"nodeName": member.Nodes[0], "podName": "db-0", "migrationUID": string(lm.GetUID()),
			"destination": map[string]any{"repository": "registry.example.com/livemigrate/checkpoints"},
		},
	}}
	if pc, err = member.Dynamic.Resource(podCheckpointGVR).Namespace("default").Create(ctx, pc, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating a PodCheckpoint: %v", err)
	}

	karmadaCRDUIDs := crdUIDs(ctx, t, karmada.Dynamic, karmadaCRDs)
	memberCRDUIDs := crdUIDs(ctx, t, member.Dynamic, memberCRDs)
	before := map[string]*corev1.Secret{
		deschedulerSecret:         getSecret(ctx, t, member.Client, hostNamespace, deschedulerSecret),
		deschedulerSecret + "-ca": caSecret,
		restoreSecret:             getSecret(ctx, t, member.Client, memberNamespace, restoreSecret),
		restoreSecret + "-ca":     getSecret(ctx, t, member.Client, memberNamespace, restoreSecret+"-ca"),
	}

	// Upgrade every release with changed values.
	helm("upgrade", &member.Cluster, hostNamespace, sets(append(hostValues, "descheduler.maxActiveMigrationsPerCluster=1", "logLevel=4")...)...)
	helm("upgrade", karmada, hostNamespace, sets(append(karmadaValues, "prober.enabled=true", "prober.clusters={member1}")...)...)
	helm("upgrade", &member.Cluster, memberNamespace, sets(append(memberValues, "agent.reportInterval=30s", "logLevel=4")...)...)

	if got := crdUIDs(ctx, t, karmada.Dynamic, karmadaCRDs); !equalMaps(got, karmadaCRDUIDs) {
		t.Errorf("the upgrade replaced Karmada's CRDs: UIDs %v, before %v", got, karmadaCRDUIDs)
	}
	if got := crdUIDs(ctx, t, member.Dynamic, memberCRDs); !equalMaps(got, memberCRDUIDs) {
		t.Errorf("the upgrade replaced member1's CRDs: UIDs %v, before %v", got, memberCRDUIDs)
	}
	checkKept(ctx, t, karmada.Dynamic, liveMigrationGVR, lm, "PreCopy")
	checkKept(ctx, t, member.Dynamic, podCheckpointGVR, pc, "")
	// The upgraded release's objects are there: the probers' RBAC it added.
	if _, err := karmada.Client.RbacV1().ClusterRoles().Get(ctx, "livemigrate-prober-member1", metav1.GetOptions{}); err != nil {
		t.Errorf("the upgraded karmada release has no prober ClusterRole for member1: %v", err)
	}

	for _, w := range workloads {
		waitRolledOut(ctx, t, member.Client, w, w.after)
	}

	// The serving certificates are renewed, their CAs kept, and every
	// registration's caBundle verifies the renewed certificate.
	after := map[string]*corev1.Secret{
		deschedulerSecret:         getSecret(ctx, t, member.Client, hostNamespace, deschedulerSecret),
		deschedulerSecret + "-ca": getSecret(ctx, t, member.Client, hostNamespace, deschedulerSecret+"-ca"),
		restoreSecret:             getSecret(ctx, t, member.Client, memberNamespace, restoreSecret),
		restoreSecret + "-ca":     getSecret(ctx, t, member.Client, memberNamespace, restoreSecret+"-ca"),
	}
	for _, name := range []string{deschedulerSecret, restoreSecret} {
		if bytes.Equal(after[name].Data["tls.crt"], before[name].Data["tls.crt"]) {
			t.Errorf("%s: the upgrade did not renew the serving certificate", name)
		}
		if !bytes.Equal(after[name].Data["ca.crt"], before[name].Data["ca.crt"]) || !bytes.Equal(after[name+"-ca"].Data["tls.crt"], before[name+"-ca"].Data["tls.crt"]) {
			t.Errorf("%s: the upgrade replaced the CA; the registrations' caBundle no longer matches", name)
		}
	}
	descheduler := webhookCABundles(ctx, t, karmada.Dynamic, validatingGVR, "livemigrate-descheduler")
	restore := webhookCABundles(ctx, t, member.Dynamic, mutatingGVR, "livemigrate-restore")
	for _, c := range []struct {
		secret     *corev1.Secret
		bundles    [][]byte
		serverName string
	}{
		{after[deschedulerSecret], descheduler, "livemigrate-descheduler." + hostNamespace + ".svc"},
		{after[restoreSecret], restore, "livemigrate-restore." + memberNamespace + ".svc"},
	} {
		for i, bundle := range c.bundles {
			if err := handshake(c.secret.Data["tls.crt"], c.secret.Data["tls.key"], bundle, c.serverName); err != nil {
				t.Errorf("%s after the upgrade: webhook %d's caBundle does not verify the serving certificate for %s: %v", c.secret.Name, i, c.serverName, err)
			}
		}
	}
	// The karmada-apiserver still admits a change of the migration through
	// the registration's caBundle.
	calls := webhook.calls.Load()
	if err := patchLabel(ctx, karmada.Dynamic, liveMigrationGVR, lm, "upgraded"); err != nil {
		t.Errorf("updating the LiveMigration after the upgrade: %v", err)
	} else if webhook.calls.Load() == calls {
		t.Error("the karmada-apiserver did not call the descheduler's webhook after the upgrade")
	}

	// Uninstall, members first, as docs/install.md says.
	helm("uninstall", &member.Cluster, memberNamespace)
	helm("uninstall", karmada, hostNamespace)
	helm("uninstall", &member.Cluster, hostNamespace)

	checkKept(ctx, t, karmada.Dynamic, liveMigrationGVR, lm, "PreCopy")
	checkKept(ctx, t, member.Dynamic, podCheckpointGVR, pc, "")
	for c, want := range map[*lab.Cluster][]string{karmada: karmadaCRDs, &member.Cluster: memberCRDs} {
		left := leftBehind(ctx, t, c)
		var wantLeft []string
		for _, crd := range want {
			wantLeft = append(wantLeft, "customresourcedefinitions/"+crd)
		}
		if !slices.Equal(left, wantLeft) {
			t.Errorf("%s after helm uninstall: the chart's objects left are %v, want exactly the CRDs %v", c.Name, left, wantLeft)
		}
		secrets, err := c.Client.CoreV1().Secrets("").List(ctx, metav1.ListOptions{FieldSelector: "type=helm.sh/release.v1"})
		if err != nil {
			t.Fatal(err)
		}
		if len(secrets.Items) > 0 {
			t.Errorf("%s after helm uninstall: Helm's release Secrets are left: %v", c.Name, names(secrets.Items))
		}
	}
	// The workloads' pods go with them (the garbage collector).
	for _, w := range workloads {
		waitNoPods(ctx, t, member.Client, w, selectors[w.name])
	}
}

func getSecret(ctx context.Context, t *testing.T, c kubernetes.Interface, ns, name string) *corev1.Secret {
	t.Helper()
	s, err := c.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the chart's Secret %s/%s: %v", ns, name, err)
	}
	return s
}

// deleteCRDs deletes CRDs and waits until they are gone.
func deleteCRDs(ctx context.Context, t *testing.T, dyn dynamic.Interface, crds []string) {
	t.Helper()
	for _, name := range crds {
		if err := dyn.Resource(crdGVR).Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			t.Fatalf("deleting the lab's CRD %s: %v", name, err)
		}
	}
	err := poll(ctx, time.Minute, func() (bool, error) {
		for _, name := range crds {
			if _, err := dyn.Resource(crdGVR).Get(ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				return false, err
			}
		}
		return true, nil
	})
	if err != nil {
		t.Fatalf("the lab's CRDs %v are not gone: %v", crds, err)
	}
}

func crdUIDs(ctx context.Context, t *testing.T, dyn dynamic.Interface, crds []string) map[string]types.UID {
	t.Helper()
	out := map[string]types.UID{}
	for _, name := range crds {
		crd, err := dyn.Resource(crdGVR).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("CRD %s: %v", name, err)
		}
		out[name] = crd.GetUID()
	}
	return out
}

func equalMaps(a, b map[string]types.UID) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// checkKept fails unless the object is still there, the same object (UID),
// with its status phase (when phase is not empty).
func checkKept(ctx context.Context, t *testing.T, dyn dynamic.Interface, gvr schema.GroupVersionResource, want *unstructured.Unstructured, phase string) {
	t.Helper()
	got, err := dyn.Resource(gvr).Namespace(want.GetNamespace()).Get(ctx, want.GetName(), metav1.GetOptions{})
	if err != nil {
		t.Errorf("%s %s/%s is gone: %v", want.GetKind(), want.GetNamespace(), want.GetName(), err)
		return
	}
	if got.GetUID() != want.GetUID() {
		t.Errorf("%s %s/%s was recreated: UID %s, was %s", want.GetKind(), want.GetNamespace(), want.GetName(), got.GetUID(), want.GetUID())
	}
	if phase != "" {
		if p, _, _ := unstructured.NestedString(got.Object, "status", "phase"); p != phase {
			t.Errorf("%s %s/%s: phase %q, want %q (kept)", want.GetKind(), want.GetNamespace(), want.GetName(), p, phase)
		}
	}
}

func patchLabel(ctx context.Context, dyn dynamic.Interface, gvr schema.GroupVersionResource, o *unstructured.Unstructured, value string) error {
	patch := fmt.Sprintf(`{"metadata":{"labels":{"test.livemigrate.io/step":%q}}}`, value)
	_, err := dyn.Resource(gvr).Namespace(o.GetNamespace()).Patch(ctx, o.GetName(), types.MergePatchType, []byte(patch), metav1.PatchOptions{})
	return err
}

// waitRolledOut waits until the workload's template runs flag and its pods
// are exactly the replicas (a Deployment) or one per node (a DaemonSet),
// Running, each with the template's command line, and no other pod of it
// is left.
func waitRolledOut(ctx context.Context, t *testing.T, c kubernetes.Interface, w workload, flag string) (selector string) {
	t.Helper()
	var last string
	err := poll(ctx, 2*time.Minute, func() (bool, error) {
		var (
			want int
			tmpl corev1.PodSpec
			err  error
		)
		selector, want, tmpl, err = template(ctx, c, w)
		if err != nil {
			return false, err
		}
		tmplArgs := containerArgs(tmpl, w.container)
		if !slices.Contains(tmplArgs, flag) {
			last = fmt.Sprintf("the template runs %v, without %s", tmplArgs, flag)
			return false, nil
		}
		pods, err := c.CoreV1().Pods(w.namespace).List(ctx, metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			return false, err
		}
		var states []string
		ok := len(pods.Items) == want
		for _, p := range pods.Items {
			args := containerArgs(p.Spec, w.container)
			current := slices.Equal(args, tmplArgs)
			states = append(states, fmt.Sprintf("%s %s deleting=%t current=%t", p.Name, p.Status.Phase, p.DeletionTimestamp != nil, current))
			if p.Status.Phase != corev1.PodRunning || p.DeletionTimestamp != nil || !current {
				ok = false
			}
		}
		last = fmt.Sprintf("want %d current Running pods, have %v", want, states)
		return ok, nil
	})
	if err != nil {
		t.Fatalf("%s %s/%s did not roll out to %s: %v; last seen: %s", w.kind, w.namespace, w.name, flag, err, last)
	}
	t.Logf("%s %s/%s: every pod runs %s", w.kind, w.namespace, w.name, flag)
	return selector
}

// template returns a workload's pod selector, how many pods it wants and
// its pod template.
func template(ctx context.Context, c kubernetes.Interface, w workload) (string, int, corev1.PodSpec, error) {
	switch w.kind {
	case "Deployment":
		d, err := c.AppsV1().Deployments(w.namespace).Get(ctx, w.name, metav1.GetOptions{})
		if err != nil {
			return "", 0, corev1.PodSpec{}, err
		}
		return labels.SelectorFromSet(d.Spec.Selector.MatchLabels).String(), int(*d.Spec.Replicas), d.Spec.Template.Spec, nil
	case "DaemonSet":
		d, err := c.AppsV1().DaemonSets(w.namespace).Get(ctx, w.name, metav1.GetOptions{})
		if err != nil {
			return "", 0, corev1.PodSpec{}, err
		}
		nodes, err := c.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			return "", 0, corev1.PodSpec{}, err
		}
		return labels.SelectorFromSet(d.Spec.Selector.MatchLabels).String(), len(nodes.Items), d.Spec.Template.Spec, nil
	}
	return "", 0, corev1.PodSpec{}, fmt.Errorf("unknown kind %s", w.kind)
}

func containerArgs(spec corev1.PodSpec, name string) []string {
	for _, c := range spec.Containers {
		if c.Name == name {
			return append(slices.Clone(c.Command), c.Args...)
		}
	}
	return nil
}

// waitNoPods waits until no pod of the (uninstalled) workload is left.
func waitNoPods(ctx context.Context, t *testing.T, c kubernetes.Interface, w workload, selector string) {
	t.Helper()
	var left []string
	err := poll(ctx, 2*time.Minute, func() (bool, error) {
		pods, err := c.CoreV1().Pods(w.namespace).List(ctx, metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			return false, err
		}
		left = names(pods.Items)
		return len(pods.Items) == 0, nil
	})
	if err != nil {
		t.Errorf("pods of %s %s/%s left after helm uninstall: %v (%v)", w.kind, w.namespace, w.name, left, err)
	}
}

func names[T any, P interface {
	*T
	GetName() string
}](items []T) []string {
	var out []string
	for i := range items {
		out = append(out, P(&items[i]).GetName())
	}
	return out
}

// leftBehind lists every object of the cluster labelled as the chart's
// (resource/[namespace/]name), sorted.
func leftBehind(ctx context.Context, t *testing.T, c *lab.Cluster) []string {
	t.Helper()
	dc, err := discovery.NewDiscoveryClientForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	lists, err := discovery.ServerPreferredResources(dc)
	if err != nil && len(lists) == 0 {
		t.Fatalf("discovery of %s: %v", c.Name, err)
	}
	var out []string
	for _, l := range lists {
		gv, err := schema.ParseGroupVersion(l.GroupVersion)
		if err != nil {
			continue
		}
		for _, r := range l.APIResources {
			if !slices.Contains(r.Verbs, "list") || strings.Contains(r.Name, "/") {
				continue
			}
			objs, err := c.Dynamic.Resource(gv.WithResource(r.Name)).List(ctx, metav1.ListOptions{LabelSelector: partOf})
			if err != nil {
				if apierrors.IsNotFound(err) || apierrors.IsMethodNotSupported(err) {
					continue
				}
				t.Fatalf("listing %s in %s: %v", r.Name, c.Name, err)
			}
			for _, o := range objs.Items {
				name := o.GetName()
				if o.GetNamespace() != "" {
					name = o.GetNamespace() + "/" + name
				}
				out = append(out, r.Name+"/"+name)
			}
		}
	}
	slices.Sort(out)
	return out
}

// webhookCABundles returns the caBundle of every webhook of a
// registration.
func webhookCABundles(ctx context.Context, t *testing.T, dyn dynamic.Interface, gvr schema.GroupVersionResource, name string) [][]byte {
	t.Helper()
	o, err := dyn.Resource(gvr).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("%s %s: %v", gvr.Resource, name, err)
	}
	hooks, _, _ := unstructured.NestedSlice(o.Object, "webhooks")
	var out [][]byte
	for i, h := range hooks {
		b64, _, _ := unstructured.NestedString(h.(map[string]any), "clientConfig", "caBundle")
		raw, err := base64.StdEncoding.DecodeString(b64)
		if err != nil || len(raw) == 0 {
			t.Fatalf("%s %s: webhook %d has no caBundle (%v)", gvr.Resource, name, i, err)
		}
		out = append(out, raw)
	}
	if len(out) == 0 {
		t.Fatalf("%s %s has no webhooks", gvr.Resource, name)
	}
	return out
}

// handshake serves the certificate and key on a local port and connects
// to it as an API server calls a webhook: trusting only caBundle, for
// serverName.
func handshake(certPEM, keyPEM, caBundle []byte, serverName string) error {
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return fmt.Errorf("the Secret's tls.crt and tls.key: %w", err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12})
	if err != nil {
		return err
	}
	defer ln.Close()
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		_ = conn.(*tls.Conn).Handshake()
		_ = conn.Close()
	}()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caBundle) {
		return fmt.Errorf("the caBundle holds no PEM certificate")
	}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", ln.Addr().String(), &tls.Config{RootCAs: pool, ServerName: serverName, MinVersion: tls.VersionTLS12})
	if err != nil {
		return err
	}
	return conn.Close()
}

// admissionServer allows every AdmissionReview and counts them.
type admissionServer struct {
	URL   string
	calls atomic.Int64
}

// startAdmissionServer serves on 127.0.0.1 with a certificate for that
// address signed by the given CA.
func startAdmissionServer(t *testing.T, caCertPEM, caKeyPEM []byte) *admissionServer {
	t.Helper()
	ca, err := tls.X509KeyPair(caCertPEM, caKeyPEM)
	if err != nil {
		t.Fatalf("the chart's webhook CA Secret: %v", err)
	}
	caCert, err := x509.ParseCertificate(ca.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, ca.PrivateKey.(crypto.Signer))
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}))
	if err != nil {
		t.Fatal(err)
	}
	s := &admissionServer{}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var review admissionv1.AdmissionReview
		if err := json.NewDecoder(r.Body).Decode(&review); err != nil || review.Request == nil {
			http.Error(w, "not an AdmissionReview", http.StatusBadRequest)
			return
		}
		s.calls.Add(1)
		review.Response = &admissionv1.AdmissionResponse{UID: review.Request.UID, Allowed: true}
		review.Request = nil
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(&review)
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	s.URL = srv.URL
	return s
}

func poll(ctx context.Context, timeout time.Duration, f func() (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var lastErr error
	for {
		ok, err := f()
		if ok {
			return nil
		}
		if err != nil {
			lastErr = err
		}
		select {
		case <-ctx.Done():
			if lastErr != nil {
				return fmt.Errorf("%w (last error: %w)", ctx.Err(), lastErr)
			}
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}
