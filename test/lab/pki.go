package lab

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// pki holds the paths of every certificate and key the lab's components use.
// All of it is made with crypto/x509 in the lab's directory.
type pki struct {
	dir string

	CACert, CAKey                 string // signs serving and client certificates
	ServerCert, ServerKey         string // SANs localhost, 127.0.0.1, kubernetes.default.svc
	AdminCert, AdminKey           string // CN=lab-admin, O=system:masters
	FrontProxyCACert              string // signs the aggregation client certificate
	FrontProxyCert, FrontProxyKey string // CN=front-proxy-client
	SAKey, SAPub                  string // service-account token signing
	TokenFile                     string // static tokens for kube-apiserver --token-auth-file

	// Token is the static bearer token of lab-admin (group system:masters),
	// used to register member clusters with Karmada.
	Token string
	// caPEM is the CA certificate, for caBundle fields and kubeconfigs.
	caPEM []byte
}

type keyPair struct {
	cert *x509.Certificate
	key  crypto.Signer
}

// newPKI writes a complete PKI into dir.
func newPKI(dir string) (*pki, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating %s: %w", dir, err)
	}
	p := &pki{dir: dir}
	path := func(name string) string { return filepath.Join(dir, name) }

	ca, err := selfSignedCA("livemigrate-lab-ca")
	if err != nil {
		return nil, err
	}
	p.CACert, p.CAKey = path("ca.crt"), path("ca.key")
	if err := writePair(ca, p.CACert, p.CAKey); err != nil {
		return nil, err
	}
	p.caPEM = encodeCert(ca.cert)

	server, err := signed(ca, pkix.Name{CommonName: "livemigrate-lab-server"}, true,
		[]string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local",
			// The aggregator checks the name of the APIService's Service.
			"karmada-aggregated-apiserver.karmada-system.svc", "*.karmada-system.svc"},
		[]net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback, net.IPv4(10, 96, 0, 1)})
	if err != nil {
		return nil, err
	}
	p.ServerCert, p.ServerKey = path("server.crt"), path("server.key")
	if err := writePair(server, p.ServerCert, p.ServerKey); err != nil {
		return nil, err
	}

	admin, err := signed(ca, pkix.Name{CommonName: "lab-admin", Organization: []string{"system:masters"}}, false, nil, nil)
	if err != nil {
		return nil, err
	}
	p.AdminCert, p.AdminKey = path("admin.crt"), path("admin.key")
	if err := writePair(admin, p.AdminCert, p.AdminKey); err != nil {
		return nil, err
	}

	fpCA, err := selfSignedCA("livemigrate-lab-front-proxy-ca")
	if err != nil {
		return nil, err
	}
	p.FrontProxyCACert = path("front-proxy-ca.crt")
	if err := writePair(fpCA, p.FrontProxyCACert, path("front-proxy-ca.key")); err != nil {
		return nil, err
	}
	fp, err := signed(fpCA, pkix.Name{CommonName: "front-proxy-client"}, false, nil, nil)
	if err != nil {
		return nil, err
	}
	p.FrontProxyCert, p.FrontProxyKey = path("front-proxy-client.crt"), path("front-proxy-client.key")
	if err := writePair(fp, p.FrontProxyCert, p.FrontProxyKey); err != nil {
		return nil, err
	}

	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating the service-account key: %w", err)
	}
	p.SAKey, p.SAPub = path("sa.key"), path("sa.pub")
	if err := writeKey(saKey, p.SAKey); err != nil {
		return nil, err
	}
	pub, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("encoding the service-account public key: %w", err)
	}
	if err := os.WriteFile(p.SAPub, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o600); err != nil {
		return nil, fmt.Errorf("writing %s: %w", p.SAPub, err)
	}

	tok, err := randomToken()
	if err != nil {
		return nil, err
	}
	p.Token = tok
	p.TokenFile = path("tokens.csv")
	if err := os.WriteFile(p.TokenFile, fmt.Appendf(nil, "%s,lab-admin,lab-admin,\"system:masters\"\n", tok), 0o600); err != nil {
		return nil, fmt.Errorf("writing %s: %w", p.TokenFile, err)
	}
	return p, nil
}

func randomToken() (string, error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generating a token: %w", err)
	}
	return fmt.Sprintf("%x", b), nil
}

func serial() (*big.Int, error) {
	s, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return nil, fmt.Errorf("generating a serial number: %w", err)
	}
	return s, nil
}

func selfSignedCA(cn string) (*keyPair, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating a CA key: %w", err)
	}
	sn, err := serial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("creating the CA certificate %s: %w", cn, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parsing the CA certificate %s: %w", cn, err)
	}
	return &keyPair{cert: cert, key: key}, nil
}

func signed(ca *keyPair, subject pkix.Name, server bool, dns []string, ips []net.IP) (*keyPair, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating a key for %s: %w", subject.CommonName, err)
	}
	sn, err := serial()
	if err != nil {
		return nil, err
	}
	usage := []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	if server {
		usage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	}
	tmpl := &x509.Certificate{
		SerialNumber: sn,
		Subject:      subject,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(10 * 365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  usage,
		DNSNames:     dns,
		IPAddresses:  ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		return nil, fmt.Errorf("signing the certificate of %s: %w", subject.CommonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parsing the certificate of %s: %w", subject.CommonName, err)
	}
	return &keyPair{cert: cert, key: key}, nil
}

func encodeCert(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

func writeKey(key crypto.Signer, path string) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("encoding the key %s: %w", path, err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

func writePair(kp *keyPair, certPath, keyPath string) error {
	if err := os.WriteFile(certPath, encodeCert(kp.cert), 0o600); err != nil {
		return fmt.Errorf("writing %s: %w", certPath, err)
	}
	return writeKey(kp.key, keyPath)
}
