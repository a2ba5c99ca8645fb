package integration

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// env is the API server the tests share.
type env struct {
	dir    string
	url    string
	token  string
	cfg    *rest.Config
	procs  []*exec.Cmd
	reason string // why the environment is unavailable
}

var shared env

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func binDir() string {
	if d := os.Getenv("LIVEMIGRATE_BIN"); d != "" {
		return d
	}
	d, _ := filepath.Abs("../../bin")
	return d
}

func (e *env) start() error {
	bin := binDir()
	for _, b := range []string{"etcd", "kube-apiserver"} {
		if _, err := os.Stat(filepath.Join(bin, b)); err != nil {
			e.reason = fmt.Sprintf("%s not found in %s (build it with `make lab-binaries`)", b, bin)
			return nil
		}
	}
	dir, err := os.MkdirTemp("", "lm-integration-")
	if err != nil {
		return err
	}
	e.dir = dir
	etcdPort, err := freePort()
	if err != nil {
		return err
	}
	peerPort, err := freePort()
	if err != nil {
		return err
	}
	apiPort, err := freePort()
	if err != nil {
		return err
	}
	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", etcdPort)
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", peerPort)
	if err := e.run(filepath.Join(bin, "etcd"), "--data-dir", filepath.Join(dir, "etcd"),
		"--listen-client-urls", etcdURL, "--advertise-client-urls", etcdURL,
		"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
		"--initial-cluster", "default="+peerURL, "--unsafe-no-fsync"); err != nil {
		return err
	}
	key, pub := filepath.Join(dir, "sa.key"), filepath.Join(dir, "sa.pub")
	if err := writeServiceAccountKey(key, pub); err != nil {
		return err
	}
	e.token = "integration-token"
	tokens := filepath.Join(dir, "tokens.csv")
	if err := os.WriteFile(tokens, []byte(e.token+",admin,admin,system:masters\n"), 0o600); err != nil {
		return err
	}
	if err := e.run(filepath.Join(bin, "kube-apiserver"), "--etcd-servers", etcdURL,
		"--bind-address", "127.0.0.1", fmt.Sprintf("--secure-port=%d", apiPort), "--cert-dir", filepath.Join(dir, "certs"),
		"--service-account-issuer", "https://kubernetes.default.svc", "--service-account-key-file", pub,
		"--service-account-signing-key-file", key, "--authorization-mode", "RBAC", "--token-auth-file", tokens,
		"--service-cluster-ip-range", "10.0.0.0/24", "--disable-admission-plugins", "ServiceAccount",
		"--shutdown-delay-duration=0s", "--shutdown-send-retry-after=false"); err != nil {
		return err
	}
	e.url = fmt.Sprintf("https://127.0.0.1:%d", apiPort)
	e.cfg = &rest.Config{Host: e.url, BearerToken: e.token, TLSClientConfig: rest.TLSClientConfig{Insecure: true}, QPS: 100, Burst: 200}
	return e.waitReady(2 * time.Minute)
}

func (e *env) run(path string, args ...string) error {
	cmd := exec.Command(path, args...)
	logf, err := os.Create(filepath.Join(e.dir, filepath.Base(path)+".log"))
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", path, err)
	}
	e.procs = append(e.procs, cmd)
	return nil
}

func (e *env) waitReady(timeout time.Duration) error {
	hc, err := rest.HTTPClientFor(e.cfg)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		resp, err := hc.Get(e.url + "/readyz")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK && string(body) == "ok" {
				return nil
			}
		}
		time.Sleep(300 * time.Millisecond)
	}
	return fmt.Errorf("kube-apiserver not ready after %s; logs in %s", timeout, e.dir)
}

func (e *env) stop() {
	for i := len(e.procs) - 1; i >= 0; i-- {
		p := e.procs[i]
		_ = p.Process.Kill()
		_, _ = p.Process.Wait()
	}
	if e.dir != "" && os.Getenv("LIVEMIGRATE_KEEP") == "" {
		_ = os.RemoveAll(e.dir)
	}
}

// kubeconfig writes a kubeconfig for the API server and returns its path.
func (e *env) kubeconfig() (string, error) {
	path := filepath.Join(e.dir, "kubeconfig")
	data := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: it
  cluster: {server: %q, insecure-skip-tls-verify: true}
users:
- name: admin
  user: {token: %q}
contexts:
- name: it
  context: {cluster: it, user: admin}
current-context: it
`, e.url, e.token)
	return path, os.WriteFile(path, []byte(data), 0o600)
}

// writeServiceAccountKey writes an RSA key pair for service-account tokens.
func writeServiceAccountKey(keyPath, pubPath string) error {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	pubDER, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		return err
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)}), 0o600); err != nil {
		return err
	}
	return os.WriteFile(pubPath, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), 0o600)
}

// need fails the test, with the reason, when the environment could not
// start (for example: the API server binaries are missing; run make
// lab-binaries). It never skips: a missing environment is a failure.
func need(t *testing.T) {
	t.Helper()
	if shared.cfg == nil {
		t.Fatal("integration environment unavailable: " + shared.reason)
	}
}

// karmadaDir is the Karmada module's directory in the module cache.
func karmadaDir() (string, error) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/karmada-io/karmada").Output()
	if err != nil {
		return "", fmt.Errorf("locating the Karmada module: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// installCRDs creates the CRDs in the files and waits until they are served.
func installCRDs(ctx context.Context, c client.Client, files ...string) error {
	var names []string
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		crd := &apiextensionsv1.CustomResourceDefinition{}
		if err := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096).Decode(crd); err != nil {
			return fmt.Errorf("decoding %s: %w", f, err)
		}
		if err := c.Create(ctx, crd); err != nil {
			return fmt.Errorf("creating CRD %s: %w", crd.Name, err)
		}
		names = append(names, crd.Name)
	}
	return waitEstablished(ctx, c, names...)
}

func waitEstablished(ctx context.Context, c client.Client, names ...string) error {
	deadline := time.Now().Add(time.Minute)
	for _, n := range names {
		for {
			crd := &apiextensionsv1.CustomResourceDefinition{}
			if err := c.Get(ctx, client.ObjectKey{Name: n}, crd); err == nil {
				established := false
				for _, cond := range crd.Status.Conditions {
					if cond.Type == apiextensionsv1.Established && cond.Status == apiextensionsv1.ConditionTrue {
						established = true
					}
				}
				if established {
					break
				}
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("CRD %s not established", n)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return nil
}
