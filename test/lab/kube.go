package lab

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
)

// startEtcd starts the single etcd every apiserver of the lab uses, each
// under its own key prefix.
func (l *Lab) startEtcd(ctx context.Context) error {
	client, err := l.port("etcd-client")
	if err != nil {
		return err
	}
	peer, err := l.port("etcd-peer")
	if err != nil {
		return err
	}
	l.etcdURL = fmt.Sprintf("http://127.0.0.1:%d", client)
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", peer)
	args := []string{
		"--name=lab",
		"--data-dir=" + filepath.Join(l.Dir, "etcd"),
		"--listen-client-urls=" + l.etcdURL,
		"--advertise-client-urls=" + l.etcdURL,
		"--listen-peer-urls=" + peerURL,
		"--initial-advertise-peer-urls=" + peerURL,
		"--initial-cluster=lab=" + peerURL,
		// The lab's data is disposable; fsync only costs start-up time.
		"--unsafe-no-fsync=true",
		"--quota-backend-bytes=4294967296",
		"--log-level=warn",
	}
	if _, err := l.sup.start("etcd", l.bin("etcd"), args, nil); err != nil {
		return err
	}
	return waitHTTP(ctx, "etcd", l.etcdURL+"/health", http.DefaultClient)
}

// startAPIServer starts a kube-apiserver for the Karmada plane or a member.
func (l *Lab) startAPIServer(ctx context.Context, c *Cluster) error {
	port, err := l.port("apiserver-" + c.Name)
	if err != nil {
		return err
	}
	c.port = port
	c.URL = fmt.Sprintf("https://127.0.0.1:%d", port)
	p := l.pki
	args := []string{
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		fmt.Sprintf("--secure-port=%d", port),
		"--etcd-servers=" + l.etcdURL,
		"--etcd-prefix=" + c.etcdPrefix,
		"--client-ca-file=" + p.CACert,
		"--tls-cert-file=" + p.ServerCert,
		"--tls-private-key-file=" + p.ServerKey,
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + p.SAPub,
		"--service-account-signing-key-file=" + p.SAKey,
		"--service-cluster-ip-range=10.96.0.0/12",
		"--authorization-mode=Node,RBAC",
		"--token-auth-file=" + p.TokenFile,
		"--allow-privileged=true",
		"--disable-admission-plugins=ServiceAccount,StorageObjectInUseProtection",
		"--requestheader-client-ca-file=" + p.FrontProxyCACert,
		"--requestheader-allowed-names=front-proxy-client",
		"--requestheader-extra-headers-prefix=X-Remote-Extra-",
		"--requestheader-group-headers=X-Remote-Group",
		"--requestheader-username-headers=X-Remote-User",
		"--proxy-client-cert-file=" + p.FrontProxyCert,
		"--proxy-client-key-file=" + p.FrontProxyKey,
		"--enable-aggregator-routing=false",
		"--profiling=false",
		"--v=1",
	}
	if _, err := l.sup.start("kube-apiserver-"+c.Name, l.bin("kube-apiserver"), args, nil); err != nil {
		return err
	}
	if err := l.writeKubeconfig(c); err != nil {
		return err
	}
	return l.waitReadyz(ctx, c)
}

// waitReadyz polls an apiserver's /readyz with the admin credentials.
func (l *Lab) waitReadyz(ctx context.Context, c *Cluster) error {
	tr, err := rest.TransportFor(c.Config)
	if err != nil {
		return fmt.Errorf("building a transport for %s: %w", c.Name, err)
	}
	return waitHTTP(ctx, "kube-apiserver of "+c.Name, c.URL+"/readyz", &http.Client{Transport: tr, Timeout: insecureHTTP.Timeout})
}

// startKubeControllerManager runs a kube-controller-manager for a cluster.
func (l *Lab) startKubeControllerManager(ctx context.Context, c *Cluster, controllers string) error {
	port, err := l.port("kube-controller-manager-" + c.Name)
	if err != nil {
		return err
	}
	p := l.pki
	args := []string{
		"--kubeconfig=" + c.Kubeconfig,
		"--authentication-kubeconfig=" + c.Kubeconfig,
		"--authorization-kubeconfig=" + c.Kubeconfig,
		"--bind-address=127.0.0.1",
		fmt.Sprintf("--secure-port=%d", port),
		"--controllers=" + controllers,
		"--leader-elect=false",
		"--cluster-name=" + c.Name,
		"--service-account-private-key-file=" + p.SAKey,
		"--root-ca-file=" + p.CACert,
		"--cluster-signing-cert-file=" + p.CACert,
		"--cluster-signing-key-file=" + p.CAKey,
		"--service-cluster-ip-range=10.96.0.0/12",
		"--use-service-account-credentials=false",
		// Claims created next to their pre-bound volumes bind within a
		// second even when the binder saw the claim first.
		"--pvclaimbinder-sync-period=1s",
		"--v=1",
	}
	if _, err := l.sup.start("kube-controller-manager-"+c.Name, l.bin("kube-controller-manager"), args, nil); err != nil {
		return err
	}
	return waitHTTP(ctx, "kube-controller-manager of "+c.Name, fmt.Sprintf("https://127.0.0.1:%d/healthz", port), nil)
}

// startKubeScheduler runs a kube-scheduler for a member.
func (l *Lab) startKubeScheduler(ctx context.Context, c *Cluster) error {
	port, err := l.port("kube-scheduler-" + c.Name)
	if err != nil {
		return err
	}
	args := []string{
		"--kubeconfig=" + c.Kubeconfig,
		"--authentication-kubeconfig=" + c.Kubeconfig,
		"--authorization-kubeconfig=" + c.Kubeconfig,
		"--bind-address=127.0.0.1",
		fmt.Sprintf("--secure-port=%d", port),
		"--leader-elect=false",
		"--v=1",
	}
	if _, err := l.sup.start("kube-scheduler-"+c.Name, l.bin("kube-scheduler"), args, nil); err != nil {
		return err
	}
	return waitHTTP(ctx, "kube-scheduler of "+c.Name, fmt.Sprintf("https://127.0.0.1:%d/healthz", port), nil)
}

// ensureNamespace creates a namespace if it does not exist.
func ensureNamespace(ctx context.Context, c *Cluster, name string) error {
	_, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating namespace %s in %s: %w", name, c.Name, err)
	}
	return nil
}

// readFiles concatenates YAML files into one multi-document stream.
func readFiles(paths ...string) ([]byte, error) {
	var b strings.Builder
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", p, err)
		}
		b.WriteString("---\n")
		b.Write(data)
		b.WriteString("\n")
	}
	return []byte(b.String()), nil
}
