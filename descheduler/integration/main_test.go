package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	certutil "k8s.io/client-go/util/cert"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	agentv1alpha1 "github.com/livemigrate/livemigrate/api/agent/v1alpha1"
	"github.com/livemigrate/livemigrate/descheduler/app"
	"github.com/livemigrate/livemigrate/descheduler/options"
	"github.com/livemigrate/livemigrate/descheduler/webhook"
)

// k is the admin client of the tests (Karmada plane and member at once).
var k client.Client

// webhookBase is the descheduler's webhook server (https://host:port) and
// webhookCA the CA of its certificate.
var (
	webhookBase string
	webhookCA   []byte
)

func TestMain(m *testing.M) {
	code := func() int {
		if err := shared.start(); err != nil {
			fmt.Fprintln(os.Stderr, "integration environment:", err)
			shared.stop()
			return 1
		}
		defer shared.stop()
		if shared.cfg == nil {
			fmt.Println("integration:", shared.reason)
			return m.Run()
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		if err := setup(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "integration setup:", err, "(logs in", shared.dir+")")
			return 1
		}
		go simulate(ctx)
		return m.Run()
	}()
	os.Exit(code)
}

func testScheme() *runtime.Scheme {
	s := app.KarmadaScheme()
	_ = apiextensionsv1.AddToScheme(s)
	_ = agentv1alpha1.AddToScheme(s)
	_ = admissionregistrationv1.AddToScheme(s)
	return s
}

// clusterCRD stands in for Karmada's aggregated Cluster API.
func clusterCRD() *apiextensionsv1.CustomResourceDefinition {
	return &apiextensionsv1.CustomResourceDefinition{
		ObjectMeta: metav1.ObjectMeta{Name: "clusters.cluster.karmada.io"},
		Spec: apiextensionsv1.CustomResourceDefinitionSpec{
			Group: "cluster.karmada.io", Scope: apiextensionsv1.ClusterScoped,
			Names: apiextensionsv1.CustomResourceDefinitionNames{Kind: "Cluster", ListKind: "ClusterList", Plural: "clusters", Singular: "cluster"},
			Versions: []apiextensionsv1.CustomResourceDefinitionVersion{{
				Name: "v1alpha1", Served: true, Storage: true,
				Subresources: &apiextensionsv1.CustomResourceSubresources{Status: &apiextensionsv1.CustomResourceSubresourceStatus{}},
				Schema: &apiextensionsv1.CustomResourceValidation{OpenAPIV3Schema: &apiextensionsv1.JSONSchemaProps{
					Type: "object", XPreserveUnknownFields: ptr.To(true)}},
			}},
		},
	}
}

func setup(ctx context.Context) error {
	var err error
	k, err = client.New(shared.cfg, client.Options{Scheme: testScheme()})
	if err != nil {
		return err
	}
	kd, err := karmadaDir()
	if err != nil {
		return err
	}
	bases := filepath.Join(kd, "charts", "karmada", "_crds", "bases")
	if err := k.Create(ctx, clusterCRD()); err != nil {
		return err
	}
	if err := installCRDs(ctx, k,
		filepath.Join(bases, "work", "work.karmada.io_resourcebindings.yaml"),
		filepath.Join(bases, "policy", "policy.karmada.io_propagationpolicies.yaml"),
		filepath.Join(bases, "policy", "policy.karmada.io_clusterpropagationpolicies.yaml"),
		"../../manifests/crds/livemigrate.io_livemigrations.yaml",
		"../../manifests/crds/livemigrate.io_clusterlatencies.yaml",
		"../../manifests/crds/agent.livemigrate.io_podcheckpoints.yaml",
		"../../manifests/crds/agent.livemigrate.io_podrestores.yaml",
		"../../manifests/crds/agent.livemigrate.io_volumereplications.yaml",
	); err != nil {
		return err
	}
	if err := waitEstablished(ctx, k, "clusters.cluster.karmada.io"); err != nil {
		return err
	}
	if err := registerMembers(ctx); err != nil {
		return err
	}
	if err := applyMemberRBAC(ctx); err != nil {
		return err
	}
	return startDescheduler(ctx)
}

// registerMembers registers the API server twice, as members a and b, with
// push-mode credentials in karmada-cluster, and a Ready node.
func registerMembers(ctx context.Context) error {
	if err := k.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "karmada-cluster"}}); err != nil {
		return err
	}
	for _, name := range []string{"a", "b"} {
		if err := k.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "karmada-cluster", Name: name},
			Data: map[string][]byte{"token": []byte(shared.token)}}); err != nil {
			return err
		}
		c := newUnstructuredCluster(name, shared.url)
		if err := k.Create(ctx, c); err != nil {
			return err
		}
		if err := setClusterReady(ctx, name); err != nil {
			return err
		}
	}
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-1"}}
	if err := k.Create(ctx, n); err != nil {
		return err
	}
	n.Status = corev1.NodeStatus{
		Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "Test",
			LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}},
		NodeInfo: corev1.NodeSystemInfo{Architecture: "amd64", OperatingSystem: "linux", ContainerRuntimeVersion: "cri-o://1.30.0"},
		Capacity: corev1.ResourceList{corev1.ResourcePods: resource.MustParse("110")},
	}
	if err := k.Status().Update(ctx, n); err != nil {
		return err
	}
	// As the node lifecycle controller would once the node is Ready: drop
	// the not-ready taint the API server's admission put on the new node.
	n.Spec.Taints = nil
	return k.Update(ctx, n)
}

// startDescheduler runs the descheduler as its binary does (app.Run), with
// its webhook registered in the API server.
func startDescheduler(ctx context.Context) error {
	kubeconfig, err := shared.kubeconfig()
	if err != nil {
		return err
	}
	certDir := filepath.Join(shared.dir, "webhook")
	if err := os.MkdirAll(certDir, 0o700); err != nil {
		return err
	}
	crt, key, err := certutil.GenerateSelfSignedCertKey("127.0.0.1", nil, nil)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(certDir, "tls.crt"), crt, 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(certDir, "tls.key"), key, 0o600); err != nil {
		return err
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	o := options.New()
	o.Kubeconfig = kubeconfig
	o.MetricsBindAddress, o.HealthProbeBindAddress = "0", "0"
	o.WebhookHost, o.WebhookPort, o.WebhookCertDir = "127.0.0.1", port, certDir
	o.PollInterval = 300 * time.Millisecond
	o.CheckpointRepository = "registry.test:5000/livemigrate"
	if errs := o.Validate(); len(errs) > 0 {
		return errs.ToAggregate()
	}
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx, o) }()

	fail := admissionregistrationv1.Fail
	none := admissionregistrationv1.SideEffectClassNone
	scope := admissionregistrationv1.NamespacedScope
	webhookBase, webhookCA = fmt.Sprintf("https://127.0.0.1:%d", port), crt
	url := webhookBase + webhook.Path
	vwc := &admissionregistrationv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "livemigrate-descheduler"},
		Webhooks: []admissionregistrationv1.ValidatingWebhook{{
			Name: "livemigrations.livemigrate.io", AdmissionReviewVersions: []string{"v1"},
			SideEffects: &none, FailurePolicy: &fail, TimeoutSeconds: ptr.To[int32](10),
			ClientConfig: admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: crt},
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
				Rule: admissionregistrationv1.Rule{APIGroups: []string{"livemigrate.io"}, APIVersions: []string{"v1alpha1"},
					Resources: []string{"livemigrations"}, Scope: &scope},
			}},
		}},
	}
	if err := k.Create(ctx, vwc); err != nil {
		return err
	}
	// Wait until the webhook answers (the descheduler is up).
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-done:
			return fmt.Errorf("descheduler exited: %v", err)
		default:
		}
		if webhookAnswers(ctx) {
			return nil
		}
		time.Sleep(300 * time.Millisecond)
	}
	return fmt.Errorf("the descheduler's webhook did not answer")
}
