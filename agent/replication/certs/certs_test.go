package certs

import (
	"crypto/x509"
	"encoding/pem"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func leaf(t *testing.T, pemBytes []byte) *x509.Certificate {
	t.Helper()
	blk, _ := pem.Decode(pemBytes)
	if blk == nil {
		t.Fatal("no PEM block")
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestMintBindsIdentity(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	b, err := Mint(Options{MigrationUID: "uid-1", Validity: time.Hour, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	type id struct {
		UID  string
		Role Role
		URI  string
	}
	var got []id
	for _, p := range [][]byte{b.SourceCert, b.TargetCert} {
		c := leaf(t, p)
		uid, role, err := ParseIdentity(c)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, id{uid, role, c.URIs[0].String()})
		if !c.NotAfter.Equal(now.Add(time.Hour)) {
			t.Errorf("NotAfter = %v, want %v", c.NotAfter, now.Add(time.Hour))
		}
	}
	want := []id{
		{"uid-1", RoleSource, "livemigrate://migration/uid-1/source"},
		{"uid-1", RoleTarget, "livemigrate://migration/uid-1/target"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("identities (-want +got):\n%s", diff)
	}
}

func TestMintRejectsBadUID(t *testing.T) {
	for _, uid := range []string{"", "a/b"} {
		if _, err := Mint(Options{MigrationUID: uid}); err == nil {
			t.Errorf("Mint(%q) succeeded, want error", uid)
		}
	}
}

func TestVerifier(t *testing.T) {
	now := time.Now()
	b, err := Mint(Options{MigrationUID: "m1", Validity: time.Hour, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	other, err := Mint(Options{MigrationUID: "m2", Validity: time.Hour, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(b.CACert)
	der := func(p []byte) [][]byte { return [][]byte{leaf(t, p).Raw} }

	tests := []struct {
		name      string
		uid       string
		peerRole  Role
		roots     *x509.CertPool
		cert      [][]byte
		at        time.Time
		wantError bool
	}{
		{name: "target accepts source", uid: "m1", peerRole: RoleSource, cert: der(b.SourceCert), at: now},
		{name: "source accepts target", uid: "m1", peerRole: RoleTarget, cert: der(b.TargetCert), at: now},
		{name: "wrong role", uid: "m1", peerRole: RoleSource, cert: der(b.TargetCert), at: now, wantError: true},
		{name: "expired", uid: "m1", peerRole: RoleSource, cert: der(b.SourceCert), at: now.Add(2 * time.Hour), wantError: true},
		{name: "not yet valid", uid: "m1", peerRole: RoleSource, cert: der(b.SourceCert), at: now.Add(-time.Hour), wantError: true},
		{name: "other CA", uid: "m1", peerRole: RoleSource, cert: der(other.SourceCert), at: now, wantError: true},
		{name: "replayed for another migration", uid: "m2", peerRole: RoleSource, cert: der(b.SourceCert), at: now, wantError: true},
		{name: "no certificate", uid: "m1", peerRole: RoleSource, at: now, wantError: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := &Verifier{Roots: roots, MigrationUID: tt.uid, PeerRole: tt.peerRole, Now: func() time.Time { return tt.at }}
			err := v.Verify(tt.cert, nil)
			if gotErr := err != nil; gotErr != tt.wantError {
				t.Fatalf("Verify() error = %v, wantError %v", err, tt.wantError)
			}
			if err != nil && !IsIdentityError(err) {
				t.Errorf("error %v is not an IdentityError", err)
			}
		})
	}
}

func TestCredentialsFromSecretData(t *testing.T) {
	b, err := Mint(Options{MigrationUID: "m1"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := CredentialsFromSecretData(b.SecretData(), RoleTarget)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(b.Credentials(RoleTarget), got); diff != "" {
		t.Errorf("credentials (-want +got):\n%s", diff)
	}
	data := b.SecretData()
	delete(data, SecretKeySourceKey)
	if _, err := CredentialsFromSecretData(data, RoleSource); err == nil {
		t.Error("missing source key accepted")
	}
}
