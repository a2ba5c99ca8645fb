package lab

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	clusterv1alpha1 "github.com/karmada-io/karmada/pkg/apis/cluster/v1alpha1"
)

const (
	// KarmadaSystemNamespace holds the Karmada plane's own objects.
	KarmadaSystemNamespace = "karmada-system"
	// KarmadaClusterNamespace holds the member clusters' credentials.
	KarmadaClusterNamespace = "karmada-cluster"
	// StockSchedulerName is the scheduler name of the stock karmada-scheduler
	// when Options.StockScheduler is set; PropagationPolicies pick it with
	// spec.schedulerName. livemigrate-scheduler serves "default-scheduler".
	StockSchedulerName = "karmada-stock-scheduler"

	karmadaCRDDir        = "charts/karmada/_crds/bases"
	karmadaWebhookConfig = "artifacts/deploy/webhook-configuration.yaml"
	karmadaWebhookURL    = "https://karmada-webhook.karmada-system.svc:443"
	// karmadaPlaneControllers run in the Karmada plane's kube-controller-manager:
	// without the garbage collector a deleted template leaves its
	// ResourceBinding behind.
	karmadaPlaneControllers = "namespace,garbagecollector,serviceaccount-token,clusterrole-aggregation"
)

var (
	crdGVR        = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	apiServiceGVR = schema.GroupVersionResource{Group: "apiregistration.k8s.io", Version: "v1", Resource: "apiservices"}
)

// startKarmadaPlane installs Karmada's APIs into the Karmada apiserver and
// runs its aggregated apiserver, webhook, controller managers and (stock)
// scheduler.
func (l *Lab) startKarmadaPlane(ctx context.Context) error {
	k := &l.Karmada.Cluster
	karmadaDir, err := moduleDir(l.root, karmadaModule)
	if err != nil {
		return err
	}
	for _, ns := range []string{KarmadaSystemNamespace, KarmadaClusterNamespace} {
		if err := ensureNamespace(ctx, k, ns); err != nil {
			return err
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return l.installKarmadaCRDs(gctx, filepath.Join(karmadaDir, karmadaCRDDir)) })
	g.Go(func() error {
		files, err := l.projectCRDs(false)
		if err != nil {
			return err
		}
		return installCRDs(gctx, k, files)
	})
	g.Go(func() error { return l.startAggregatedAPIServer(gctx) })
	g.Go(func() error { return l.startKarmadaWebhook(gctx, filepath.Join(karmadaDir, karmadaWebhookConfig)) })
	if err := g.Wait(); err != nil {
		return err
	}
	// Started after every API is served: the garbage collector only
	// watches the resources it discovers at start (and every 30s after).
	g, gctx = errgroup.WithContext(ctx)
	g.Go(func() error { return l.startKubeControllerManager(gctx, k, karmadaPlaneControllers) })
	g.Go(func() error { return l.startKarmadaControllerManager(gctx) })
	if l.opts.StockScheduler {
		g.Go(func() error {
			return l.startKarmadaScheduler(gctx, "karmada-scheduler", l.bin("karmada-scheduler"), StockSchedulerName)
		})
	}
	return g.Wait()
}

// yamlFiles lists the .yaml files under dir, recursively.
func yamlFiles(dir string) ([]string, error) {
	var out []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(path, ".yaml") {
			out = append(out, path)
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", dir, err)
	}
	return out, nil
}

// installCRDs creates every CRD of the files in a cluster and waits until
// they are Established.
func installCRDs(ctx context.Context, c *Cluster, files []string) error {
	var names []string
	for _, path := range files {
		objs, err := decodeYAMLFile(path)
		if err != nil {
			return err
		}
		for _, o := range objs {
			if o.GetKind() != "CustomResourceDefinition" {
				continue
			}
			if _, err := c.Dynamic.Resource(crdGVR).Create(ctx, o, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
				return fmt.Errorf("creating CRD %s in %s: %w", o.GetName(), c.Name, err)
			}
			names = append(names, o.GetName())
		}
	}
	if len(names) == 0 {
		return nil
	}
	return poll(ctx, "CRDs of "+c.Name+" to be Established", func(ctx context.Context) (bool, string, error) {
		for _, n := range names {
			crd, err := c.Dynamic.Resource(crdGVR).Get(ctx, n, metav1.GetOptions{})
			if err != nil {
				return false, err.Error(), nil
			}
			if !hasCondition(crd, "Established", "True") {
				return false, n + " not Established", nil
			}
		}
		return true, "", nil
	})
}

// installKarmadaCRDs installs Karmada's CRDs, read from the Karmada module.
func (l *Lab) installKarmadaCRDs(ctx context.Context, dir string) error {
	files, err := yamlFiles(dir)
	if err != nil {
		return err
	}
	if len(files) == 0 {
		return fmt.Errorf("installing Karmada CRDs: none found in %s", dir)
	}
	return installCRDs(ctx, &l.Karmada.Cluster, files)
}

// projectCRDs returns the project's CRD files from manifests/crds: those of
// the agent.livemigrate.io group belong in member clusters, the others in
// the Karmada plane.
func (l *Lab) projectCRDs(member bool) ([]string, error) {
	dir := filepath.Join(l.root, "manifests", "crds")
	if _, err := os.Stat(dir); os.IsNotExist(err) {
		return nil, nil
	}
	files, err := yamlFiles(dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, f := range files {
		if strings.HasPrefix(filepath.Base(f), "agent.livemigrate.io_") == member {
			out = append(out, f)
		}
	}
	return out, nil
}

// startAggregatedAPIServer runs karmada-aggregated-apiserver (it serves the
// Cluster API) and registers it with an APIService whose Service is an
// ExternalName to localhost: the aggregator follows it without kube-proxy.
func (l *Lab) startAggregatedAPIServer(ctx context.Context) error {
	k := &l.Karmada.Cluster
	port, err := l.port("karmada-aggregated-apiserver")
	if err != nil {
		return err
	}
	p := l.pki
	args := []string{
		"--kubeconfig=" + k.Kubeconfig,
		"--authentication-kubeconfig=" + k.Kubeconfig,
		"--authorization-kubeconfig=" + k.Kubeconfig,
		"--etcd-servers=" + l.etcdURL,
		"--etcd-prefix=/karmada-aggregated",
		"--bind-address=127.0.0.1",
		fmt.Sprintf("--secure-port=%d", port),
		"--tls-cert-file=" + p.ServerCert,
		"--tls-private-key-file=" + p.ServerKey,
		"--audit-log-path=-",
		"--audit-log-maxage=0",
		"--audit-log-maxbackup=0",
		"--v=1",
	}
	if _, err := l.sup.start("karmada-aggregated-apiserver", l.bin("karmada-aggregated-apiserver"), args, nil); err != nil {
		return err
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "karmada-aggregated-apiserver", Namespace: KarmadaSystemNamespace},
		Spec: corev1.ServiceSpec{
			Type:         corev1.ServiceTypeExternalName,
			ExternalName: "localhost",
			Ports:        []corev1.ServicePort{{Name: "https", Port: int32(port), Protocol: corev1.ProtocolTCP}},
		},
	}
	if _, err := k.Client.CoreV1().Services(KarmadaSystemNamespace).Create(ctx, svc, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating the aggregated apiserver's Service: %w", err)
	}
	apiService := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apiregistration.k8s.io/v1",
		"kind":       "APIService",
		"metadata":   map[string]any{"name": "v1alpha1.cluster.karmada.io"},
		"spec": map[string]any{
			"caBundle":             base64.StdEncoding.EncodeToString(p.caPEM),
			"group":                "cluster.karmada.io",
			"groupPriorityMinimum": int64(2000),
			"version":              "v1alpha1",
			"versionPriority":      int64(10),
			"service": map[string]any{
				"name":      "karmada-aggregated-apiserver",
				"namespace": KarmadaSystemNamespace,
				"port":      int64(port),
			},
		},
	}}
	if _, err := k.Dynamic.Resource(apiServiceGVR).Create(ctx, apiService, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating the APIService v1alpha1.cluster.karmada.io: %w", err)
	}
	return poll(ctx, "APIService v1alpha1.cluster.karmada.io to be Available", func(ctx context.Context) (bool, string, error) {
		o, err := k.Dynamic.Resource(apiServiceGVR).Get(ctx, "v1alpha1.cluster.karmada.io", metav1.GetOptions{})
		if err != nil {
			return false, err.Error(), nil
		}
		if !hasCondition(o, "Available", "True") {
			return false, conditionMessage(o, "Available"), nil
		}
		// The aggregator may report Available before discovery has it.
		if _, err := l.Karmada.Karmada.ClusterV1alpha1().Clusters().List(ctx, metav1.ListOptions{Limit: 1}); err != nil {
			return false, err.Error(), nil
		}
		return true, "", nil
	})
}

// startKarmadaWebhook runs karmada-webhook and installs Karmada's webhook
// configuration with its URLs pointed at it. Without it the scheduler
// ignores every ResourceBinding (the webhook stamps the policy's permanent ID).
func (l *Lab) startKarmadaWebhook(ctx context.Context, configPath string) error {
	k := &l.Karmada.Cluster
	port, err := l.port("karmada-webhook")
	if err != nil {
		return err
	}
	health, err := l.port("karmada-webhook-health")
	if err != nil {
		return err
	}
	args := []string{
		"--kubeconfig=" + k.Kubeconfig,
		"--bind-address=127.0.0.1",
		fmt.Sprintf("--secure-port=%d", port),
		"--cert-dir=" + filepath.Dir(l.pki.ServerCert),
		"--tls-cert-file-name=" + filepath.Base(l.pki.ServerCert),
		"--tls-private-key-file-name=" + filepath.Base(l.pki.ServerKey),
		"--metrics-bind-address=0",
		fmt.Sprintf("--health-probe-bind-address=127.0.0.1:%d", health),
		"--v=1",
	}
	if _, err := l.sup.start("karmada-webhook", l.bin("karmada-webhook"), args, nil); err != nil {
		return err
	}
	// karmada-webhook answers readiness on its TLS port only (/readyz/).
	if err := waitHTTP(ctx, "karmada-webhook", fmt.Sprintf("https://127.0.0.1:%d/readyz/", port), nil); err != nil {
		return err
	}
	raw, err := os.ReadFile(configPath)
	if err != nil {
		return fmt.Errorf("reading Karmada's webhook configuration: %w", err)
	}
	raw = bytes.ReplaceAll(raw, []byte(karmadaWebhookURL), fmt.Appendf(nil, "https://127.0.0.1:%d", port))
	raw = bytes.ReplaceAll(raw, []byte("{{caBundle}}"), []byte(base64.StdEncoding.EncodeToString(l.pki.caPEM)))
	objs, err := decodeYAML(raw)
	if err != nil {
		return fmt.Errorf("decoding Karmada's webhook configuration: %w", err)
	}
	for _, o := range objs {
		gvr := schema.GroupVersionResource{Group: "admissionregistration.k8s.io", Version: "v1"}
		switch o.GetKind() {
		case "MutatingWebhookConfiguration":
			gvr.Resource = "mutatingwebhookconfigurations"
		case "ValidatingWebhookConfiguration":
			gvr.Resource = "validatingwebhookconfigurations"
		default:
			continue
		}
		if _, err := k.Dynamic.Resource(gvr).Create(ctx, o, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating %s %s: %w", o.GetKind(), o.GetName(), err)
		}
	}
	return nil
}

// startKarmadaControllerManager runs karmada-controller-manager with every
// controller.
func (l *Lab) startKarmadaControllerManager(ctx context.Context) error {
	health, err := l.port("karmada-controller-manager-health")
	if err != nil {
		return err
	}
	args := []string{
		"--kubeconfig=" + l.Karmada.Kubeconfig,
		"--controllers=*",
		"--leader-elect=false",
		"--cluster-status-update-frequency=5s",
		"--metrics-bind-address=0",
		fmt.Sprintf("--health-probe-bind-address=127.0.0.1:%d", health),
		"--v=1",
	}
	args = append(args, l.opts.KarmadaControllerManagerArgs...)
	if _, err := l.sup.start("karmada-controller-manager", l.bin("karmada-controller-manager"), args, nil); err != nil {
		return err
	}
	return waitHTTP(ctx, "karmada-controller-manager", fmt.Sprintf("http://127.0.0.1:%d/healthz", health), nil)
}

// karmadaSchedulerArgs are the flags every Karmada scheduler of the lab
// gets, stock or ours.
func (l *Lab) karmadaSchedulerArgs(healthPort int, schedulerName string) []string {
	return []string{
		"--kubeconfig=" + l.Karmada.Kubeconfig,
		"--leader-elect=false",
		"--enable-scheduler-estimator=false",
		"--scheduler-name=" + schedulerName,
		"--metrics-bind-address=0",
		fmt.Sprintf("--health-probe-bind-address=127.0.0.1:%d", healthPort),
		"--v=1",
	}
}

// startKarmadaScheduler runs a Karmada scheduler binary under a scheduler name.
func (l *Lab) startKarmadaScheduler(ctx context.Context, name, binary, schedulerName string) error {
	health, err := l.port(name + "-health")
	if err != nil {
		return err
	}
	if _, err := l.sup.start(name, binary, l.karmadaSchedulerArgs(health, schedulerName), nil); err != nil {
		return err
	}
	return waitHTTP(ctx, name, fmt.Sprintf("http://127.0.0.1:%d/healthz", health), nil)
}

// registerMembers registers every member with Karmada in Push mode and
// waits until all of them are Ready.
func (l *Lab) registerMembers(ctx context.Context) error {
	k := l.Karmada
	for _, m := range l.Members {
		for _, name := range []string{m.Name, m.Name + "-impersonator"} {
			secret := &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: KarmadaClusterNamespace},
				Data: map[string][]byte{
					"token":    []byte(l.pki.Token),
					"caBundle": l.pki.caPEM,
				},
			}
			if _, err := k.Client.CoreV1().Secrets(KarmadaClusterNamespace).Create(ctx, secret, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
				return fmt.Errorf("creating the credentials of %s: %w", m.Name, err)
			}
		}
		cluster := &clusterv1alpha1.Cluster{
			ObjectMeta: metav1.ObjectMeta{Name: m.Name, Labels: m.Spec.Labels},
			Spec: clusterv1alpha1.ClusterSpec{
				SyncMode:              clusterv1alpha1.Push,
				APIEndpoint:           m.URL,
				SecretRef:             &clusterv1alpha1.LocalSecretReference{Namespace: KarmadaClusterNamespace, Name: m.Name},
				ImpersonatorSecretRef: &clusterv1alpha1.LocalSecretReference{Namespace: KarmadaClusterNamespace, Name: m.Name + "-impersonator"},
			},
		}
		if _, err := k.Karmada.ClusterV1alpha1().Clusters().Create(ctx, cluster, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("registering member %s: %w", m.Name, err)
		}
	}
	return poll(ctx, "member clusters to be Ready in Karmada", func(ctx context.Context) (bool, string, error) {
		for _, m := range l.Members {
			c, err := k.Karmada.ClusterV1alpha1().Clusters().Get(ctx, m.Name, metav1.GetOptions{})
			if err != nil {
				return false, err.Error(), nil
			}
			if !clusterReady(c) {
				return false, m.Name + " not Ready", nil
			}
			if c.Status.ResourceSummary == nil || len(c.Status.ResourceSummary.Allocatable) == 0 {
				return false, m.Name + " has no resource summary yet", nil
			}
		}
		return true, "", nil
	})
}

func clusterReady(c *clusterv1alpha1.Cluster) bool {
	for _, cond := range c.Status.Conditions {
		if cond.Type == clusterv1alpha1.ClusterConditionReady {
			return cond.Status == metav1.ConditionTrue
		}
	}
	return false
}

func decodeYAMLFile(path string) ([]*unstructured.Unstructured, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	objs, err := decodeYAML(raw)
	if err != nil {
		return nil, fmt.Errorf("decoding %s: %w", path, err)
	}
	return objs, nil
}

func decodeYAML(raw []byte) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(raw), 4096)
	var out []*unstructured.Unstructured
	for {
		var obj map[string]any
		if err := dec.Decode(&obj); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return nil, err
		}
		if len(obj) == 0 {
			continue
		}
		out = append(out, &unstructured.Unstructured{Object: obj})
	}
}

func hasCondition(o *unstructured.Unstructured, condType, status string) bool {
	conds, _, _ := unstructured.NestedSlice(o.Object, "status", "conditions")
	for _, c := range conds {
		m, ok := c.(map[string]any)
		if ok && m["type"] == condType {
			return m["status"] == status
		}
	}
	return false
}

func conditionMessage(o *unstructured.Unstructured, condType string) string {
	conds, _, _ := unstructured.NestedSlice(o.Object, "status", "conditions")
	for _, c := range conds {
		m, ok := c.(map[string]any)
		if ok && m["type"] == condType {
			return fmt.Sprintf("%s=%v: %v", condType, m["status"], m["message"])
		}
	}
	return condType + " not reported"
}
