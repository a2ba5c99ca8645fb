package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"strings"
	"time"
)

// Role is the side of a replication a certificate is issued to.
type Role string

const (
	// RoleSource is the sending agent (client side of the TLS connection).
	RoleSource Role = "source"
	// RoleTarget is the receiving agent (server side of the TLS connection).
	RoleTarget Role = "target"

	// URIScheme is the scheme of the identity URI SAN.
	URIScheme = "livemigrate"

	// DefaultValidity is the lifetime of minted credentials when none is given.
	DefaultValidity = 6 * time.Hour

	// Keys of the Secret data written by SecretData.
	SecretKeyCA         = "ca.crt"
	SecretKeySourceCert = "source.crt"
	SecretKeySourceKey  = "source.key"
	SecretKeyTargetCert = "target.crt"
	SecretKeyTargetKey  = "target.key"

	// LabelMigrationUID and LabelMigrationNamespace mark the Secret of a
	// migration's credentials: its UID and the namespace of its workload
	// (and VolumeReplications). The agent uses a Secret only for the
	// VolumeReplications both labels name.
	LabelMigrationUID       = "livemigrate.io/migration-uid"
	LabelMigrationNamespace = "livemigrate.io/migration-namespace"
)

// Peer returns the opposite role.
func (r Role) Peer() Role {
	if r == RoleSource {
		return RoleTarget
	}
	return RoleSource
}

// Valid reports whether r is a known role.
func (r Role) Valid() bool { return r == RoleSource || r == RoleTarget }

// IdentityURI is the URI SAN naming a migration UID and role.
func IdentityURI(migrationUID string, role Role) *url.URL {
	return &url.URL{Scheme: URIScheme, Host: "migration", Path: "/" + migrationUID + "/" + string(role)}
}

// ParseIdentity extracts the migration UID and role from a certificate's URI SANs.
func ParseIdentity(cert *x509.Certificate) (string, Role, error) {
	for _, u := range cert.URIs {
		if u.Scheme != URIScheme || u.Host != "migration" {
			continue
		}
		parts := strings.Split(strings.TrimPrefix(u.Path, "/"), "/")
		if len(parts) != 2 || parts[0] == "" {
			continue
		}
		role := Role(parts[1])
		if !role.Valid() {
			continue
		}
		return parts[0], role, nil
	}
	return "", "", &IdentityError{Reason: "no livemigrate identity URI SAN in certificate"}
}

// IdentityError is returned when a peer certificate does not carry the
// expected migration identity.
type IdentityError struct {
	Reason string
}

func (e *IdentityError) Error() string { return "peer identity rejected: " + e.Reason }

// IsIdentityError reports whether err is (or wraps) an IdentityError.
func IsIdentityError(err error) bool {
	var ie *IdentityError
	return errors.As(err, &ie)
}

// Bundle is the set of credentials for one migration, PEM encoded.
type Bundle struct {
	MigrationUID string
	CACert       []byte
	SourceCert   []byte
	SourceKey    []byte
	TargetCert   []byte
	TargetKey    []byte
	NotAfter     time.Time
}

// Options configure Mint.
type Options struct {
	// MigrationUID is bound into every certificate. Required.
	MigrationUID string
	// Validity of the CA and leaves; DefaultValidity when zero.
	Validity time.Duration
	// Now is the issuing time; time.Now when zero.
	Now time.Time
	// TargetDNSNames and TargetIPs are added to the server certificate so
	// standard hostname verification works as well; identity checks do
	// not depend on them.
	TargetDNSNames []string
}

// Mint creates a fresh CA and one source and one target certificate bound to
// opts.MigrationUID. The CA key is discarded: nothing else can ever be issued
// from it.
func Mint(opts Options) (*Bundle, error) {
	if opts.MigrationUID == "" || strings.Contains(opts.MigrationUID, "/") {
		return nil, fmt.Errorf("invalid migration UID %q", opts.MigrationUID)
	}
	validity := opts.Validity
	if validity <= 0 {
		validity = DefaultValidity
	}
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	notBefore := now.Add(-1 * time.Minute) // tolerate small clock skew
	notAfter := now.Add(validity)

	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating CA key: %w", err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "livemigrate replication CA " + opts.MigrationUID},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		URIs:                  []*url.URL{{Scheme: URIScheme, Host: "migration", Path: "/" + opts.MigrationUID}},
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("creating CA certificate: %w", err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, fmt.Errorf("parsing CA certificate: %w", err)
	}
	b := &Bundle{MigrationUID: opts.MigrationUID, CACert: pemCert(caDER), NotAfter: notAfter}
	for _, role := range []Role{RoleSource, RoleTarget} {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("generating %s key: %w", role, err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: serial(),
			Subject:      pkix.Name{CommonName: "livemigrate-" + string(role) + " " + opts.MigrationUID},
			NotBefore:    notBefore,
			NotAfter:     notAfter,
			KeyUsage:     x509.KeyUsageDigitalSignature,
			URIs:         []*url.URL{IdentityURI(opts.MigrationUID, role)},
		}
		if role == RoleSource {
			tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
		} else {
			tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
			tmpl.DNSNames = opts.TargetDNSNames
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
		if err != nil {
			return nil, fmt.Errorf("creating %s certificate: %w", role, err)
		}
		keyDER, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			return nil, fmt.Errorf("encoding %s key: %w", role, err)
		}
		keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
		if role == RoleSource {
			b.SourceCert, b.SourceKey = pemCert(der), keyPEM
		} else {
			b.TargetCert, b.TargetKey = pemCert(der), keyPEM
		}
	}
	return b, nil
}

// SecretData renders the bundle as Secret data (type Opaque).
func (b *Bundle) SecretData() map[string][]byte {
	return map[string][]byte{
		SecretKeyCA:         b.CACert,
		SecretKeySourceCert: b.SourceCert,
		SecretKeySourceKey:  b.SourceKey,
		SecretKeyTargetCert: b.TargetCert,
		SecretKeyTargetKey:  b.TargetKey,
	}
}

// Credentials are what one side needs: its own key pair and the CA to verify
// the peer with.
type Credentials struct {
	CertPEM []byte
	KeyPEM  []byte
	CAPEM   []byte
}

// CredentialsFromSecretData picks the credentials of role out of Secret data.
// A Secret prepared for one side only may omit the other side's key.
func CredentialsFromSecretData(data map[string][]byte, role Role) (Credentials, error) {
	certKey, keyKey := SecretKeySourceCert, SecretKeySourceKey
	if role == RoleTarget {
		certKey, keyKey = SecretKeyTargetCert, SecretKeyTargetKey
	}
	c := Credentials{CertPEM: data[certKey], KeyPEM: data[keyKey], CAPEM: data[SecretKeyCA]}
	var missing []string
	for k, v := range map[string][]byte{certKey: c.CertPEM, keyKey: c.KeyPEM, SecretKeyCA: c.CAPEM} {
		if len(v) == 0 {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		return Credentials{}, fmt.Errorf("secret data lacks %s", strings.Join(missing, ", "))
	}
	return c, nil
}

// Credentials returns the credentials of one role from the bundle.
func (b *Bundle) Credentials(role Role) Credentials {
	if role == RoleSource {
		return Credentials{CertPEM: b.SourceCert, KeyPEM: b.SourceKey, CAPEM: b.CACert}
	}
	return Credentials{CertPEM: b.TargetCert, KeyPEM: b.TargetKey, CAPEM: b.CACert}
}

// Verifier checks a peer certificate chain: signed by the migration CA, valid
// now, and naming the expected migration UID and role.
type Verifier struct {
	Roots        *x509.CertPool
	MigrationUID string
	// PeerRole is the role the peer must present.
	PeerRole Role
	// Now returns the current time; time.Now when nil.
	Now func() time.Time
}

// Verify is suitable for tls.Config.VerifyPeerCertificate. Go's own chain
// verification is disabled by the TLS configs of this module, so this is the
// single place where peers are authenticated.
func (v *Verifier) Verify(rawCerts [][]byte, _ [][]*x509.Certificate) error {
	if len(rawCerts) == 0 {
		return &IdentityError{Reason: "peer presented no certificate"}
	}
	leaf, err := x509.ParseCertificate(rawCerts[0])
	if err != nil {
		return &IdentityError{Reason: fmt.Sprintf("unparsable certificate: %v", err)}
	}
	inter := x509.NewCertPool()
	for _, raw := range rawCerts[1:] {
		c, err := x509.ParseCertificate(raw)
		if err != nil {
			return &IdentityError{Reason: fmt.Sprintf("unparsable chain certificate: %v", err)}
		}
		inter.AddCert(c)
	}
	now := time.Now
	if v.Now != nil {
		now = v.Now
	}
	usage := x509.ExtKeyUsageServerAuth
	if v.PeerRole == RoleSource {
		usage = x509.ExtKeyUsageClientAuth
	}
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots:         v.Roots,
		Intermediates: inter,
		CurrentTime:   now(),
		KeyUsages:     []x509.ExtKeyUsage{usage},
	}); err != nil {
		return &IdentityError{Reason: fmt.Sprintf("chain verification failed: %v", err)}
	}
	uid, role, err := ParseIdentity(leaf)
	if err != nil {
		return err
	}
	if uid != v.MigrationUID {
		return &IdentityError{Reason: fmt.Sprintf("certificate is for migration %q, expected %q", uid, v.MigrationUID)}
	}
	if role != v.PeerRole {
		return &IdentityError{Reason: fmt.Sprintf("certificate role is %q, expected %q", role, v.PeerRole)}
	}
	return nil
}

// TLSConfig builds the mutual-TLS configuration of one side. The peer is
// authenticated by Verifier (chain, expiry, migration UID and role); Go's
// default hostname check is replaced by that identity check because agents
// reach each other by node IP.
func TLSConfig(creds Credentials, role Role, migrationUID string, now func() time.Time) (*tls.Config, error) {
	pair, err := tls.X509KeyPair(creds.CertPEM, creds.KeyPEM)
	if err != nil {
		return nil, fmt.Errorf("loading key pair: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(creds.CAPEM) {
		return nil, errors.New("no CA certificate in credentials")
	}
	v := &Verifier{Roots: roots, MigrationUID: migrationUID, PeerRole: role.Peer(), Now: now}
	cfg := &tls.Config{
		MinVersion:            tls.VersionTLS13,
		Certificates:          []tls.Certificate{pair},
		InsecureSkipVerify:    true, //nolint:gosec // replaced by VerifyPeerCertificate, which checks chain, expiry and identity
		VerifyPeerCertificate: v.Verify,
		Time:                  now,
	}
	if role == RoleTarget {
		cfg.InsecureSkipVerify = false
		cfg.ClientAuth = tls.RequireAnyClientCert // chain checked by VerifyPeerCertificate
	}
	return cfg, nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	if err != nil {
		panic(fmt.Sprintf("crypto/rand failed: %v", err))
	}
	return n
}

func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}
