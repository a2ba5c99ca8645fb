package kubectl

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// CertExpiryWarning is how long before a webhook's serving certificate or
// CA expires the doctor starts to warn about it.
const CertExpiryWarning = 30 * 24 * time.Hour

// defaultDialTimeout bounds the TLS handshake with a webhook endpoint.
const defaultDialTimeout = 5 * time.Second

// certManagerInjectAnnotation is set on a registration whose caBundle
// cert-manager's CA injector writes (the chart's certs.mode=cert-manager).
const certManagerInjectAnnotation = "cert-manager.io/inject-ca-from"

// webhookTarget is one webhook registration the chart installs and where
// its serving certificate lives.
type webhookTarget struct {
	// scope and label name the check line.
	scope, label string
	// annotations of the registration.
	annotations map[string]string
	hooks       []hookClient
	// secret is the Secret (keys tls.crt, ca.crt) the webhook's pods mount,
	// read when the endpoint cannot be dialled from here; secretReader nil
	// means it cannot be read (no access to the cluster that holds it).
	secret       types.NamespacedName
	secretReader client.Reader
	// unreadable says what to do when secretReader is nil.
	unreadable string
	// fix says how this registration's certificates are renewed.
	fix func(certManager bool) string
}

// hookClient is one webhook of a registration: its name and client config.
type hookClient struct {
	name   string
	config admissionregistrationv1.WebhookClientConfig
}

func validatingHooks(c *admissionregistrationv1.ValidatingWebhookConfiguration) []hookClient {
	var out []hookClient
	for _, h := range c.Webhooks {
		out = append(out, hookClient{name: h.Name, config: h.ClientConfig})
	}
	return out
}

func mutatingHooks(c *admissionregistrationv1.MutatingWebhookConfiguration) []hookClient {
	var out []hookClient
	for _, h := range c.Webhooks {
		out = append(out, hookClient{name: h.Name, config: h.ClientConfig})
	}
	return out
}

// certVerdict is the outcome of checking one client config.
type certVerdict struct {
	status Status
	detail string
	// source says where the serving certificate was read.
	source string
	// fix, when set, replaces the registration's.
	fix string
}

// webhookCert checks the certificates of one webhook registration: each
// webhook's caBundle is present and parses, and the serving certificate —
// the one the endpoint presents in a TLS handshake from here, or, when the
// endpoint cannot be dialled from here (a Service, a cluster-internal
// name), the one in the Secret the webhook's pods mount — chains to that
// caBundle, names the host the API server dials, and is valid now and for
// CertExpiryWarning more.
func (d *Doctor) webhookCert(ctx context.Context, t webhookTarget) Check {
	ck := Check{Scope: t.scope, Name: "webhook cert " + t.label}
	certManager := t.annotations[certManagerInjectAnnotation] != ""
	if len(t.hooks) == 0 {
		ck.Status, ck.Detail, ck.Fix = StatusFail, "the registration has no webhooks", t.fix(certManager)
		return ck
	}
	// The webhooks of a registration usually share one endpoint and
	// caBundle: check each distinct pair once.
	type key struct{ endpoint, ca string }
	var order []key
	names := map[key][]string{}
	configs := map[key]admissionregistrationv1.WebhookClientConfig{}
	for _, h := range t.hooks {
		ep, _, _ := endpoint(h.config)
		k := key{ep, string(h.config.CABundle)}
		if _, ok := configs[k]; !ok {
			order = append(order, k)
			configs[k] = h.config
		}
		names[k] = append(names[k], h.name)
	}
	ck.Status = StatusOK
	var details []string
	fix := ""
	for _, k := range order {
		v := d.checkClientConfig(ctx, configs[k], t)
		if rank(v.status) > rank(ck.Status) {
			ck.Status, fix = v.status, v.fix
		}
		detail := v.detail
		if v.source != "" {
			detail = v.source + ": " + detail
		}
		if len(order) > 1 {
			detail = strings.Join(names[k], ",") + ": " + detail
		}
		details = append(details, detail)
	}
	ck.Detail = strings.Join(details, "; ")
	switch {
	case ck.Status == StatusOK:
	case fix != "":
		ck.Fix = fix
	default:
		ck.Fix = t.fix(certManager)
	}
	return ck
}

func rank(s Status) int {
	switch s {
	case StatusFail:
		return 2
	case StatusWarn:
		return 1
	}
	return 0
}

// endpoint returns the host:port the API server dials for a client config
// and the name it verifies the certificate for.
func endpoint(cc admissionregistrationv1.WebhookClientConfig) (addr, host string, err error) {
	switch {
	case cc.URL != nil:
		u, err := url.Parse(*cc.URL)
		if err != nil {
			return "", "", fmt.Errorf("clientConfig.url %q: %w", *cc.URL, err)
		}
		port := u.Port()
		if port == "" {
			port = "443"
		}
		return net.JoinHostPort(u.Hostname(), port), u.Hostname(), nil
	case cc.Service != nil:
		port := int32(443)
		if cc.Service.Port != nil {
			port = *cc.Service.Port
		}
		host := cc.Service.Name + "." + cc.Service.Namespace + ".svc"
		return net.JoinHostPort(host, strconv.Itoa(int(port))), host, nil
	}
	return "", "", errors.New("clientConfig has neither url nor service")
}

func (d *Doctor) checkClientConfig(ctx context.Context, cc admissionregistrationv1.WebhookClientConfig, t webhookTarget) certVerdict {
	addr, host, err := endpoint(cc)
	if err != nil {
		return certVerdict{status: StatusFail, detail: err.Error()}
	}
	if len(cc.CABundle) == 0 {
		return certVerdict{status: StatusFail, detail: "no caBundle: the API server cannot verify the webhook's certificate"}
	}
	roots, err := parseCerts(cc.CABundle)
	if err != nil {
		return certVerdict{status: StatusFail, detail: "the caBundle does not parse: " + err.Error()}
	}
	chain, dialErr := d.servedChain(ctx, addr, host)
	source := "served at " + addr
	if dialErr != nil {
		if t.secretReader == nil {
			return certVerdict{status: StatusWarn, fix: t.unreadable,
				detail: fmt.Sprintf("caBundle %s; the serving certificate was not checked: %s is not reachable from here (%v)", describeCAs(roots), addr, dialErr)}
		}
		source = fmt.Sprintf("Secret %s (%s is not reachable from here)", t.secret, addr)
		chain, err = readServingSecret(ctx, t.secretReader, t.secret)
		if err != nil {
			status := StatusFail
			if apierrors.IsForbidden(err) {
				status = StatusWarn
			}
			return certVerdict{status: status, source: source, detail: err.Error()}
		}
	}
	status, detail := verifyServing(chain, roots, host, d.Now())
	return certVerdict{status: status, source: source, detail: detail}
}

// servedChain dials addr and returns the certificates the server presents.
// Nothing is sent over the connection: it is verified below, against the
// registration's caBundle rather than this machine's roots.
func (d *Doctor) servedChain(ctx context.Context, addr, host string) ([]*x509.Certificate, error) {
	timeout := d.DialTimeout
	if timeout == 0 {
		timeout = defaultDialTimeout
	}
	dialer := &tls.Dialer{
		NetDialer: &net.Dialer{Timeout: timeout},
		Config:    &tls.Config{ServerName: host, InsecureSkipVerify: true, MinVersion: tls.VersionTLS12},
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	defer func() { _ = conn.Close() }()
	chain := conn.(*tls.Conn).ConnectionState().PeerCertificates
	if len(chain) == 0 {
		return nil, errors.New("the server presented no certificate")
	}
	return chain, nil
}

func readServingSecret(ctx context.Context, r client.Reader, key types.NamespacedName) ([]*x509.Certificate, error) {
	s := &corev1.Secret{}
	if err := r.Get(ctx, key, s); err != nil {
		return nil, fmt.Errorf("reading the serving Secret: %w", err)
	}
	raw := s.Data[corev1.TLSCertKey]
	if len(raw) == 0 {
		return nil, fmt.Errorf("the Secret has no %s", corev1.TLSCertKey)
	}
	chain, err := parseCerts(raw)
	if err != nil {
		return nil, fmt.Errorf("%s of the Secret does not parse: %w", corev1.TLSCertKey, err)
	}
	return chain, nil
}

// parseCerts parses every CERTIFICATE block of a PEM bundle; it fails on
// a bundle with none, or with anything but certificates.
func parseCerts(raw []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	rest := raw
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("a %s block where certificates are expected", b.Type)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("no PEM certificate in it")
	}
	if strings.TrimSpace(string(rest)) != "" {
		return nil, errors.New("trailing data that is not PEM")
	}
	return out, nil
}

// verifyServing judges a serving chain (leaf first) against the caBundle's
// certificates for host at now: every problem is listed, a Fail for each
// one that makes the API server's call fail, a Warn when the leaf or the CA
// that signed it expires within CertExpiryWarning.
func verifyServing(chain, roots []*x509.Certificate, host string, now time.Time) (Status, string) {
	leaf := chain[0]
	pool, inter := x509.NewCertPool(), x509.NewCertPool()
	for _, c := range roots {
		pool.AddCert(c)
	}
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	var problems []string
	switch {
	case now.Before(leaf.NotBefore):
		problems = append(problems, "the serving certificate is not valid before "+leaf.NotBefore.UTC().Format(time.RFC3339))
	case now.After(leaf.NotAfter):
		problems = append(problems, "the serving certificate expired at "+leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	// The chain is verified at a time the leaf is valid, so that an
	// expired leaf does not hide a mismatch; the CAs' own validity is
	// checked at now below.
	at := now
	if now.Before(leaf.NotBefore) || now.After(leaf.NotAfter) {
		at = leaf.NotBefore.Add(leaf.NotAfter.Sub(leaf.NotBefore) / 2)
	}
	chains, err := leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, CurrentTime: at, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	if err != nil {
		var unknown x509.UnknownAuthorityError
		if errors.As(err, &unknown) {
			problems = append(problems, fmt.Sprintf("the serving certificate (issuer %q) is not signed by the caBundle (%s)", leaf.Issuer.String(), describeCAs(roots)))
		} else {
			problems = append(problems, "the serving certificate does not verify against the caBundle: "+err.Error())
		}
	}
	if err := leaf.VerifyHostname(host); err != nil {
		problems = append(problems, fmt.Sprintf("the serving certificate does not cover %s (it names %s)", host, certNames(leaf)))
	}
	// The earliest expiry on the verified chain (leaf and CA).
	expiry, what := leaf.NotAfter, "the serving certificate"
	if len(chains) > 0 {
		for _, c := range chains[0][1:] {
			if now.Before(c.NotBefore) {
				problems = append(problems, fmt.Sprintf("the CA %q is not valid before %s", c.Subject.String(), c.NotBefore.UTC().Format(time.RFC3339)))
			} else if now.After(c.NotAfter) {
				problems = append(problems, fmt.Sprintf("the CA %q expired at %s", c.Subject.String(), c.NotAfter.UTC().Format(time.RFC3339)))
			}
			if c.NotAfter.Before(expiry) {
				expiry, what = c.NotAfter, fmt.Sprintf("the CA %q", c.Subject.String())
			}
		}
	}
	if len(problems) > 0 {
		return StatusFail, strings.Join(problems, "; ")
	}
	left := expiry.Sub(now)
	ok := fmt.Sprintf("signed by the caBundle (%s), covers %s, valid until %s", describeCAs(roots), host, leaf.NotAfter.UTC().Format(time.DateOnly))
	if left < CertExpiryWarning {
		return StatusWarn, fmt.Sprintf("%s: %s expires in %s (at %s)", ok, what, days(left), expiry.UTC().Format(time.RFC3339))
	}
	return StatusOK, ok
}

func describeCAs(cas []*x509.Certificate) string {
	var names []string
	for _, c := range cas {
		names = append(names, fmt.Sprintf("%q until %s", c.Subject.String(), c.NotAfter.UTC().Format(time.DateOnly)))
	}
	return "CA " + strings.Join(names, ", ")
}

func certNames(c *x509.Certificate) string {
	var names []string
	names = append(names, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		names = append(names, ip.String())
	}
	if len(names) == 0 {
		return "no DNS or IP names"
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}

func days(d time.Duration) string {
	if d < 24*time.Hour {
		return d.Round(time.Minute).String()
	}
	return fmt.Sprintf("%dd", int(d/(24*time.Hour)))
}

// Secrets holding the webhooks' serving certificates (charts/livemigrate:
// the host release's descheduler, each member release's restore webhook).
const (
	deschedulerCertSecret = "livemigrate-descheduler-webhook-cert"
	restoreCertSecret     = "livemigrate-restore-webhook-tls"
)

// deschedulerCerts checks the certificates of the descheduler's validating
// and mutating registrations in the karmada-apiserver. A missing
// validating registration is the descheduler webhook check's failure.
func (d *Doctor) deschedulerCerts(ctx context.Context) []Check {
	secret := types.NamespacedName{Namespace: d.KarmadaNamespace, Name: deschedulerCertSecret}
	caBundle := `kubectl -n ` + d.KarmadaNamespace + ` get secret ` + deschedulerCertSecret + ` -o jsonpath='{.data.ca\.crt}'`
	fix := func(bool) string {
		return "the host release renews the descheduler's serving certificate on helm upgrade (certs.mode=auto; with cert-manager: kubectl -n " + d.KarmadaNamespace +
			" describe certificate " + deschedulerCertSecret + " in the host cluster); the karmada release's caBundle must be the ca.crt of the Secret " + secret.String() +
			": helm upgrade livemigrate charts/livemigrate -n " + d.KarmadaNamespace + " --kubeconfig <karmada-apiserver> --reuse-values --set descheduler.webhook.caBundle=$(" + caBundle + ")"
	}
	target := func(label string, annotations map[string]string, hooks []hookClient) webhookTarget {
		t := webhookTarget{scope: "karmada", label: label, annotations: annotations, hooks: hooks, secret: secret, fix: fix,
			unreadable: "the Secret " + secret.String() + " is in the cluster that runs the Karmada control plane: pass --host-kubeconfig to check the certificate there"}
		if d.Host != nil {
			t.secretReader = d.Host
		}
		return t
	}
	var out []Check
	vwc := &admissionregistrationv1.ValidatingWebhookConfiguration{}
	if err := d.Karmada.Get(ctx, types.NamespacedName{Name: "livemigrate-descheduler"}, vwc); err == nil {
		out = append(out, d.webhookCert(ctx, target("validating/livemigrate-descheduler", vwc.Annotations, validatingHooks(vwc))))
	}
	mwc := &admissionregistrationv1.MutatingWebhookConfiguration{}
	if err := d.Karmada.Get(ctx, types.NamespacedName{Name: "livemigrate-descheduler"}, mwc); err != nil {
		out = append(out, Check{Scope: "karmada", Name: "webhook cert mutating/livemigrate-descheduler", Status: StatusFail, Detail: err.Error(),
			Fix: "install the chart with installMode=karmada into the karmada-apiserver"})
	} else {
		out = append(out, d.webhookCert(ctx, target("mutating/livemigrate-descheduler", mwc.Annotations, mutatingHooks(mwc))))
	}
	return out
}

// restoreTarget is a member's restore webhook registration; its serving
// Secret is read with the member's push-mode credentials.
func (d *Doctor) restoreTarget(scope string, mwc *admissionregistrationv1.MutatingWebhookConfiguration, mc client.Reader) webhookTarget {
	secret := types.NamespacedName{Namespace: d.AgentNamespace, Name: restoreCertSecret}
	return webhookTarget{
		scope: scope, label: "mutating/livemigrate-restore", annotations: mwc.Annotations, hooks: mutatingHooks(mwc),
		secret: secret, secretReader: mc,
		fix: func(certManager bool) string {
			if certManager {
				return "cert-manager issues the serving certificate and its CA injector writes the caBundle: kubectl -n " + d.AgentNamespace + " describe certificate " + restoreCertSecret +
					" in " + scope + ", and check that cert-manager's cainjector runs there"
			}
			return "helm upgrade livemigrate charts/livemigrate -n " + d.AgentNamespace + " --kubeconfig <" + scope + "> --reuse-values renews the serving certificate (certs.mode=auto) and writes the caBundle of the CA in the Secret " +
				restoreCertSecret + "-ca; with certs.mode=custom, " + secret.String() + " must hold a certificate for livemigrate-restore." + d.AgentNamespace + ".svc signed by its ca.crt, and the registration's caBundle must be that ca.crt"
		},
	}
}
