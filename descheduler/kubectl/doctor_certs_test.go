package kubectl

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
)

// testCert is a generated certificate and its key.
type testCert struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

// certSpec describes a certificate to generate: a CA when ca is set,
// otherwise a serving certificate for names (DNS names or IPs).
type certSpec struct {
	cn                  string
	ca                  bool
	names               []string
	notBefore, notAfter time.Time
}

var serial int64 = 1

func genCert(t *testing.T, s certSpec, parent *testCert) *testCert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: s.cn},
		NotBefore: s.notBefore, NotAfter: s.notAfter,
		KeyUsage: x509.KeyUsageDigitalSignature, BasicConstraintsValid: true,
	}
	if s.ca {
		tmpl.IsCA, tmpl.KeyUsage = true, x509.KeyUsageCertSign|x509.KeyUsageDigitalSignature
	} else {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		for _, n := range s.names {
			if ip := net.ParseIP(n); ip != nil {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			} else {
				tmpl.DNSNames = append(tmpl.DNSNames, n)
			}
		}
	}
	signer, signerKey := tmpl, key
	if parent != nil {
		signer, signerKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCert{cert: c, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

func TestVerifyServing(t *testing.T) {
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	year := 365 * 24 * time.Hour
	ca := genCert(t, certSpec{cn: "livemigrate-webhook-ca", ca: true, notBefore: now.Add(-year), notAfter: now.Add(9 * year)}, nil)
	otherCA := genCert(t, certSpec{cn: "another-ca", ca: true, notBefore: now.Add(-year), notAfter: now.Add(9 * year)}, nil)
	shortCA := genCert(t, certSpec{cn: "short-ca", ca: true, notBefore: now.Add(-year), notAfter: now.Add(20 * 24 * time.Hour)}, nil)
	expiredCA := genCert(t, certSpec{cn: "expired-ca", ca: true, notBefore: now.Add(-2 * year), notAfter: now.Add(-time.Hour)}, nil)
	intermediate := genCert(t, certSpec{cn: "intermediate", ca: true, notBefore: now.Add(-year), notAfter: now.Add(5 * year)}, ca)
	const host = "livemigrate-restore.livemigrate-system.svc"
	serving := func(parent *testCert, names []string, notBefore, notAfter time.Time) *testCert {
		return genCert(t, certSpec{cn: host, names: names, notBefore: notBefore, notAfter: notAfter}, parent)
	}
	good := serving(ca, []string{host}, now.Add(-time.Hour), now.Add(year))
	for _, tc := range []struct {
		name   string
		chain  []*testCert
		roots  []*testCert
		host   string
		want   Status
		detail []string
	}{
		{name: "valid", chain: []*testCert{good}, roots: []*testCert{ca}, host: host, want: StatusOK,
			detail: []string{`signed by the caBundle (CA "CN=livemigrate-webhook-ca" until 2035-11-29)`, "covers " + host, "valid until 2027-12-01"}},
		{name: "an IP address", chain: []*testCert{serving(ca, []string{"127.0.0.1"}, now.Add(-time.Hour), now.Add(year))}, roots: []*testCert{ca}, host: "127.0.0.1", want: StatusOK,
			detail: []string{"covers 127.0.0.1"}},
		{name: "through an intermediate", chain: []*testCert{serving(intermediate, []string{host}, now.Add(-time.Hour), now.Add(year)), intermediate}, roots: []*testCert{ca}, host: host, want: StatusOK},
		{name: "one of several CAs in the bundle", chain: []*testCert{good}, roots: []*testCert{otherCA, ca}, host: host, want: StatusOK},
		{name: "expires within 30 days", chain: []*testCert{serving(ca, []string{host}, now.Add(-year), now.Add(10*24*time.Hour))}, roots: []*testCert{ca}, host: host, want: StatusWarn,
			detail: []string{"the serving certificate expires in 10d (at 2026-12-11T10:00:00Z)"}},
		{name: "CA expires within 30 days", chain: []*testCert{serving(shortCA, []string{host}, now.Add(-time.Hour), now.Add(year))}, roots: []*testCert{shortCA}, host: host, want: StatusWarn,
			detail: []string{`the CA "CN=short-ca" expires in 20d`}},
		{name: "expired", chain: []*testCert{serving(ca, []string{host}, now.Add(-year), now.Add(-time.Minute))}, roots: []*testCert{ca}, host: host, want: StatusFail,
			detail: []string{"the serving certificate expired at 2026-12-01T09:59:00Z"}},
		{name: "not yet valid", chain: []*testCert{serving(ca, []string{host}, now.Add(time.Hour), now.Add(year))}, roots: []*testCert{ca}, host: host, want: StatusFail,
			detail: []string{"the serving certificate is not valid before 2026-12-01T11:00:00Z"}},
		{name: "caBundle of another CA", chain: []*testCert{good}, roots: []*testCert{otherCA}, host: host, want: StatusFail,
			detail: []string{`the serving certificate (issuer "CN=livemigrate-webhook-ca") is not signed by the caBundle (CA "CN=another-ca" until`}},
		{name: "expired and of another CA", chain: []*testCert{serving(ca, []string{host}, now.Add(-year), now.Add(-time.Minute))}, roots: []*testCert{otherCA}, host: host, want: StatusFail,
			detail: []string{"expired at", "is not signed by the caBundle"}},
		{name: "another host", chain: []*testCert{serving(ca, []string{"livemigrate-restore.default.svc", "10.0.0.1"}, now.Add(-time.Hour), now.Add(year))}, roots: []*testCert{ca}, host: host, want: StatusFail,
			detail: []string{"the serving certificate does not cover " + host + " (it names 10.0.0.1, livemigrate-restore.default.svc)"}},
		{name: "CA expired", chain: []*testCert{serving(expiredCA, []string{host}, now.Add(-year), now.Add(year))}, roots: []*testCert{expiredCA}, host: host, want: StatusFail,
			detail: []string{"does not verify against the caBundle", "expired"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var chain, roots []*x509.Certificate
			for _, c := range tc.chain {
				chain = append(chain, c.cert)
			}
			for _, c := range tc.roots {
				roots = append(roots, c.cert)
			}
			got, detail := verifyServing(chain, roots, tc.host, now)
			if got != tc.want {
				t.Errorf("status %s, want %s (detail %q)", got, tc.want, detail)
			}
			for _, want := range tc.detail {
				if !strings.Contains(detail, want) {
					t.Errorf("detail %q does not contain %q", detail, want)
				}
			}
		})
	}
}

func TestParseCerts(t *testing.T) {
	now := time.Now()
	ca := genCert(t, certSpec{cn: "ca", ca: true, notBefore: now, notAfter: now.Add(time.Hour)}, nil)
	for _, tc := range []struct {
		name, raw, err string
	}{
		{"one", string(ca.pem), ""},
		{"two", string(ca.pem) + string(ca.pem), ""},
		{"empty", "", "no PEM certificate"},
		{"not PEM", "bGFi", "no PEM certificate"},
		{"a key", string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: []byte{1}})), "a EC PRIVATE KEY block"},
		{"garbled", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1, 2, 3}})), "x509"},
		{"trailing garbage", string(ca.pem) + "xyz", "trailing data"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseCerts([]byte(tc.raw))
			if (err == nil) != (tc.err == "") || err != nil && !strings.Contains(err.Error(), tc.err) {
				t.Errorf("parseCerts: error %v, want %q", err, tc.err)
			}
		})
	}
}

// serveTLS starts an HTTPS server presenting cert (signed by ca) on
// 127.0.0.1 and returns its URL.
func serveTLS(t *testing.T, cert *testCert, chain ...*testCert) string {
	t.Helper()
	tc := tls.Certificate{Certificate: [][]byte{cert.cert.Raw}, PrivateKey: cert.key, Leaf: cert.cert}
	for _, c := range chain {
		tc.Certificate = append(tc.Certificate, c.cert.Raw)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{tc}, MinVersion: tls.VersionTLS12}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestDoctorWebhookCert checks registrations end to end: the certificate a
// webhook serves over TLS, or the one in its Secret when its Service cannot
// be dialled, each judged against the registration's caBundle, with what
// to fix.
func TestDoctorWebhookCert(t *testing.T) {
	now := time.Now()
	year := 365 * 24 * time.Hour
	ca := genCert(t, certSpec{cn: "livemigrate-webhook-ca", ca: true, notBefore: now.Add(-year), notAfter: now.Add(9 * year)}, nil)
	otherCA := genCert(t, certSpec{cn: "another-ca", ca: true, notBefore: now.Add(-year), notAfter: now.Add(9 * year)}, nil)
	svcHost := "livemigrate-restore.livemigrate-system.svc"
	local := genCert(t, certSpec{cn: "local", names: []string{"127.0.0.1"}, notBefore: now.Add(-time.Hour), notAfter: now.Add(year)}, ca)
	localSoon := genCert(t, certSpec{cn: "local", names: []string{"127.0.0.1"}, notBefore: now.Add(-year), notAfter: now.Add(3 * 24 * time.Hour)}, ca)
	inSecret := genCert(t, certSpec{cn: svcHost, names: []string{svcHost}, notBefore: now.Add(-time.Hour), notAfter: now.Add(year)}, ca)
	expiredInSecret := genCert(t, certSpec{cn: svcHost, names: []string{svcHost}, notBefore: now.Add(-year), notAfter: now.Add(-time.Hour)}, ca)
	okURL, soonURL := serveTLS(t, local), serveTLS(t, localSoon)
	// A port nothing listens on.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedURL := "https://" + l.Addr().String()
	_ = l.Close()

	byURL := func(u string, ca []byte) admissionregistrationv1.WebhookClientConfig {
		return admissionregistrationv1.WebhookClientConfig{URL: ptr.To(u + "/validate"), CABundle: ca}
	}
	byService := func(ca []byte) admissionregistrationv1.WebhookClientConfig {
		return admissionregistrationv1.WebhookClientConfig{
			Service:  &admissionregistrationv1.ServiceReference{Namespace: "livemigrate-system", Name: "livemigrate-restore", Path: ptr.To("/mutate"), Port: ptr.To[int32](443)},
			CABundle: ca,
		}
	}
	secret := func(cert *testCert) client.Reader {
		return fake.NewClientBuilder().WithScheme(DoctorScheme()).WithObjects(&corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: "livemigrate-system", Name: restoreCertSecret},
			Data:       map[string][]byte{corev1.TLSCertKey: cert.pem, "ca.crt": ca.pem},
		}).Build()
	}
	noSecret := fake.NewClientBuilder().WithScheme(DoctorScheme()).Build()
	d := &Doctor{Now: time.Now, AgentNamespace: "livemigrate-system", KarmadaNamespace: "karmada-system", DialTimeout: 2 * time.Second}
	restoreFix := func(cm bool) string {
		return d.restoreTarget("member1", &admissionregistrationv1.MutatingWebhookConfiguration{}, nil).fix(cm)
	}

	for _, tc := range []struct {
		name        string
		hooks       []admissionregistrationv1.WebhookClientConfig
		reader      client.Reader
		certManager bool
		want        Status
		detail      []string
		fix         string
	}{
		{name: "served, valid", hooks: []admissionregistrationv1.WebhookClientConfig{byURL(okURL, ca.pem)}, want: StatusOK,
			detail: []string{"served at " + strings.TrimPrefix(okURL, "https://") + ": signed by the caBundle", "covers 127.0.0.1"}},
		{name: "served, two webhooks on one endpoint are checked once", hooks: []admissionregistrationv1.WebhookClientConfig{byURL(okURL, ca.pem), byURL(okURL, ca.pem)}, want: StatusOK},
		{name: "served, expiring soon", hooks: []admissionregistrationv1.WebhookClientConfig{byURL(soonURL, ca.pem)}, want: StatusWarn,
			detail: []string{"the serving certificate expires in 2d"}, fix: restoreFix(false)},
		{name: "served, caBundle of another CA", hooks: []admissionregistrationv1.WebhookClientConfig{byURL(okURL, otherCA.pem)}, want: StatusFail,
			detail: []string{`is not signed by the caBundle (CA "CN=another-ca"`}, fix: restoreFix(false)},
		{name: "served, caBundle of another CA, cert-manager", hooks: []admissionregistrationv1.WebhookClientConfig{byURL(okURL, otherCA.pem)}, certManager: true, want: StatusFail,
			detail: []string{"is not signed by the caBundle"}, fix: restoreFix(true)},
		{name: "one webhook of two with a wrong caBundle", hooks: []admissionregistrationv1.WebhookClientConfig{byURL(okURL, ca.pem), byURL(okURL, otherCA.pem)}, want: StatusFail,
			detail: []string{"a: served at", "b: served at", "is not signed by the caBundle"}},
		{name: "no caBundle", hooks: []admissionregistrationv1.WebhookClientConfig{byURL(okURL, nil)}, want: StatusFail,
			detail: []string{"no caBundle"}, fix: restoreFix(false)},
		{name: "caBundle not PEM", hooks: []admissionregistrationv1.WebhookClientConfig{byURL(okURL, []byte("lab"))}, want: StatusFail,
			detail: []string{"the caBundle does not parse: no PEM certificate in it"}},
		{name: "service, Secret valid", hooks: []admissionregistrationv1.WebhookClientConfig{byService(ca.pem)}, reader: secret(inSecret), want: StatusOK,
			detail: []string{"Secret livemigrate-system/livemigrate-restore-webhook-tls (" + svcHost + ":443 is not reachable from here): signed by the caBundle", "covers " + svcHost}},
		{name: "service, Secret expired", hooks: []admissionregistrationv1.WebhookClientConfig{byService(ca.pem)}, reader: secret(expiredInSecret), want: StatusFail,
			detail: []string{"the serving certificate expired at"}, fix: restoreFix(false)},
		{name: "service, Secret of another CA", hooks: []admissionregistrationv1.WebhookClientConfig{byService(otherCA.pem)}, reader: secret(inSecret), want: StatusFail,
			detail: []string{"is not signed by the caBundle"}},
		{name: "service, no Secret", hooks: []admissionregistrationv1.WebhookClientConfig{byService(ca.pem)}, reader: noSecret, want: StatusFail,
			detail: []string{"reading the serving Secret", "not found"}},
		{name: "not reachable, Secret not readable from here", hooks: []admissionregistrationv1.WebhookClientConfig{byURL(closedURL, ca.pem)}, want: StatusWarn,
			detail: []string{`caBundle CA "CN=livemigrate-webhook-ca"`, "the serving certificate was not checked: " + strings.TrimPrefix(closedURL, "https://") + " is not reachable from here", "connection refused"},
			fix:    "pass --host-kubeconfig"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var hooks []hookClient
			for i, cc := range tc.hooks {
				hooks = append(hooks, hookClient{name: string(rune('a' + i)), config: cc})
			}
			target := d.restoreTarget("member1", &admissionregistrationv1.MutatingWebhookConfiguration{}, tc.reader)
			target.hooks = hooks
			if tc.certManager {
				target.annotations = map[string]string{certManagerInjectAnnotation: "livemigrate-system/livemigrate-restore-webhook-tls"}
			}
			if tc.reader == nil {
				target.secretReader = nil
				target.unreadable = "pass --host-kubeconfig to check the certificate there"
			}
			got := d.webhookCert(context.Background(), target)
			if got.Status != tc.want {
				t.Errorf("status %s, want %s: %+v", got.Status, tc.want, got)
			}
			for _, want := range tc.detail {
				if !strings.Contains(got.Detail, want) {
					t.Errorf("detail %q does not contain %q", got.Detail, want)
				}
			}
			if !strings.Contains(got.Fix, tc.fix) || (tc.want == StatusOK) != (got.Fix == "") {
				t.Errorf("fix %q, want one containing %q (none when OK)", got.Fix, tc.fix)
			}
		})
	}
}

// The descheduler's registrations live in the karmada-apiserver: a missing
// mutating one fails, and without --host-kubeconfig a webhook that cannot be
// dialled from here is a Warn saying to pass it; with it, the host
// cluster's Secret is judged.
func TestDoctorDeschedulerCerts(t *testing.T) {
	now := time.Now()
	year := 365 * 24 * time.Hour
	ca := genCert(t, certSpec{cn: "livemigrate-webhook-ca", ca: true, notBefore: now.Add(-year), notAfter: now.Add(9 * year)}, nil)
	const host = "livemigrate-descheduler.karmada-system.svc"
	serving := genCert(t, certSpec{cn: host, names: []string{host}, notBefore: now.Add(-time.Hour), notAfter: now.Add(year)}, ca)
	u := "https://" + host + ":443/validate-livemigrate-io-v1alpha1-livemigration"
	cc := admissionregistrationv1.WebhookClientConfig{URL: &u, CABundle: ca.pem}
	vwc := &admissionregistrationv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "livemigrate-descheduler"},
		Webhooks: []admissionregistrationv1.ValidatingWebhook{{Name: "livemigrations.livemigrate.io", ClientConfig: cc}}}
	mwc := &admissionregistrationv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "livemigrate-descheduler"},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{Name: "placement.livemigrate.io", ClientConfig: cc}}}
	hostCluster := fake.NewClientBuilder().WithScheme(DoctorScheme()).WithObjects(&corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: "karmada-system", Name: deschedulerCertSecret},
		Data:       map[string][]byte{corev1.TLSCertKey: serving.pem, "ca.crt": ca.pem},
	}).Build()

	for _, tc := range []struct {
		name    string
		objects []client.Object
		host    client.Reader
		want    []string
	}{
		{name: "no mutating registration", objects: []client.Object{vwc}, host: hostCluster, want: []string{
			"OK validating/livemigrate-descheduler Secret karmada-system/livemigrate-descheduler-webhook-cert (" + host + ":443 is not reachable from here): signed by the caBundle",
			"FAIL mutating/livemigrate-descheduler",
		}},
		{name: "without the host cluster", objects: []client.Object{vwc, mwc}, want: []string{
			"WARN validating/livemigrate-descheduler caBundle CA",
			"WARN mutating/livemigrate-descheduler caBundle CA",
			"pass --host-kubeconfig",
		}},
		{name: "with the host cluster", objects: []client.Object{vwc, mwc}, host: hostCluster, want: []string{
			"OK validating/livemigrate-descheduler Secret karmada-system/livemigrate-descheduler-webhook-cert",
			"OK mutating/livemigrate-descheduler Secret karmada-system/livemigrate-descheduler-webhook-cert",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := &Doctor{
				Karmada: fake.NewClientBuilder().WithScheme(DoctorScheme()).WithObjects(tc.objects...).Build(),
				Now:     time.Now, KarmadaNamespace: "karmada-system", DialTimeout: 2 * time.Second, Host: tc.host,
			}
			var lines []string
			for _, c := range d.deschedulerCerts(context.Background()) {
				lines = append(lines, strings.Join([]string{string(c.Status), strings.TrimPrefix(c.Name, "webhook cert "), c.Detail, c.Fix}, " "))
			}
			got := strings.Join(lines, "\n")
			for _, want := range tc.want {
				if !strings.Contains(got, want) {
					t.Errorf("no %q in\n%s", want, got)
				}
			}
		})
	}
}
