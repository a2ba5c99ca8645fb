package lab

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestPKI(t *testing.T) {
	p, err := newPKI(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(p.caPEM) {
		t.Fatal("CA certificate does not parse")
	}
	tests := []struct {
		name       string
		cert, key  string
		usage      x509.ExtKeyUsage
		dnsName    string
		wantCN     string
		wantGroups []string
	}{
		{name: "server", cert: p.ServerCert, key: p.ServerKey, usage: x509.ExtKeyUsageServerAuth, dnsName: "127.0.0.1", wantCN: "livemigrate-lab-server"},
		{name: "server by name", cert: p.ServerCert, key: p.ServerKey, usage: x509.ExtKeyUsageServerAuth, dnsName: "kubernetes.default.svc", wantCN: "livemigrate-lab-server"},
		{name: "admin", cert: p.AdminCert, key: p.AdminKey, usage: x509.ExtKeyUsageClientAuth, wantCN: "lab-admin", wantGroups: []string{"system:masters"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pair, err := tls.LoadX509KeyPair(tc.cert, tc.key)
			if err != nil {
				t.Fatalf("key pair: %v", err)
			}
			leaf := pair.Leaf
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: tc.dnsName, KeyUsages: []x509.ExtKeyUsage{tc.usage}}); err != nil {
				t.Errorf("verify: %v", err)
			}
			if diff := cmp.Diff(tc.wantCN, leaf.Subject.CommonName); diff != "" {
				t.Errorf("CN (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantGroups, leaf.Subject.Organization); diff != "" {
				t.Errorf("groups (-want +got):\n%s", diff)
			}
		})
	}
	// The front-proxy client certificate is signed by its own CA, not the main one.
	pair, err := tls.LoadX509KeyPair(p.FrontProxyCert, p.FrontProxyKey)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pair.Leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err == nil {
		t.Error("front-proxy client certificate verifies against the main CA")
	}
	fpRoots := x509.NewCertPool()
	raw, err := os.ReadFile(p.FrontProxyCACert)
	if err != nil {
		t.Fatal(err)
	}
	fpRoots.AppendCertsFromPEM(raw)
	if _, err := pair.Leaf.Verify(x509.VerifyOptions{Roots: fpRoots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("front-proxy client certificate: %v", err)
	}
	tokens, err := os.ReadFile(p.TokenFile)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(p.Token+",lab-admin,lab-admin,\"system:masters\"\n", string(tokens)); diff != "" {
		t.Errorf("token file (-want +got):\n%s", diff)
	}
}
