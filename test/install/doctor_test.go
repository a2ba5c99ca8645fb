package install

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/livemigrate/livemigrate/test/lab"
)

// doctor runs kubectl livemigrate doctor against the lab's Karmada plane,
// as a user would with the karmada-apiserver's kubeconfig.
func doctor(ctx context.Context, t *testing.T) (string, error) {
	t.Helper()
	root, err := lab.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(ctx, filepath.Join(root, "bin", "kubectl-livemigrate"), "doctor", "--kubeconfig", testLab.Karmada.Kubeconfig).CombinedOutput()
	return string(out), err
}

// waitDoctor runs the doctor until its report matches every line (and it
// fails or passes as wanted), or the context ends.
//
// The reports are not logged when they match: their expected FAIL lines
// would be the first "FAIL" in a CI log, ahead of a real failure.
func waitDoctor(ctx context.Context, t *testing.T, wantFail bool, lines ...*regexp.Regexp) string {
	t.Helper()
	var out string
	var err error
	for {
		out, err = doctor(ctx, t)
		matched := true
		for _, l := range lines {
			matched = matched && l.MatchString(out)
		}
		if (err != nil) == wantFail && matched {
			return out
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the doctor never reported %q with failure=%v; last report (error %v):\n%s", lines, wantFail, err, out)
		case <-time.After(time.Second):
		}
	}
}

// TestDoctor checks the installation the chart made: every check passes;
// an agent killed on one node, that node's kubelet checkpoint API gone,
// the checkpoint registry stopped and the descheduler killed each make it
// fail with that check and what to fix, and pass again once restarted.
func TestDoctor(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// The lab's kwok nodes report a runtime the doctor does not know to
	// checkpoint: a WARN, which does not fail the doctor.
	healthy := regexp.MustCompile(`(?m)^WARN\s+member2\s+agent member2-node-2\s+runtime kwok-[^,]+, kernel .+, (amd64|arm64), freezer v1, checkpoint API ok, registries \S+ reachable: unknown runtime`)
	// The probers write their first ClusterLatency a round after the lab is up.
	probed := regexp.MustCompile(`(?m)^OK\s+member1\s+prober\s+ClusterLatency written[^\n]*\n(?s:.*)^OK\s+member2\s+prober\s+ClusterLatency written`)
	out := waitDoctor(ctx, t, false, healthy, probed)
	for _, want := range []string{
		`(?m)^OK\s+karmada\s+crd livemigrations.livemigrate.io\s+Established, v1alpha1`,
		`(?m)^OK\s+karmada\s+descheduler webhook\s+answers a dry-run LiveMigration`,
		`(?m)^OK\s+karmada\s+livemigrate-descheduler\s+Lease karmada-system/livemigrate-descheduler`,
		`(?m)^OK\s+karmada\s+livemigrate-scheduler\s+Lease karmada-system/`,
		`(?m)^OK\s+member1\s+prober\s+ClusterLatency written`,
		`(?m)^OK\s+member1\s+crd podcheckpoints.agent.livemigrate.io`,
		`(?m)^OK\s+member1\s+restore webhook\s+Lease livemigrate-system/livemigrate-agent-restore`,
		`(?m)^WARN\s+member1\s+agent member1-node-1\s+runtime .*, kernel .+, (amd64|arm64)`,
		// The lab registers every webhook by URL on 127.0.0.1 with its CA:
		// the doctor checks the certificate each one serves.
		`(?m)^OK\s+karmada\s+webhook cert validating/livemigrate-descheduler\s+served at 127\.0\.0\.1:\d+: signed by the caBundle \(CA "CN=livemigrate-lab-ca" until [0-9-]+\), covers 127\.0\.0\.1, valid until`,
		`(?m)^OK\s+karmada\s+webhook cert mutating/livemigrate-descheduler\s+served at 127\.0\.0\.1:\d+: signed by the caBundle`,
		`(?m)^OK\s+member1\s+webhook cert mutating/livemigrate-restore\s+served at 127\.0\.0\.1:\d+: signed by the caBundle`,
		`(?m)^OK\s+member2\s+webhook cert mutating/livemigrate-restore\s+served at 127\.0\.0\.1:\d+: signed by the caBundle`,
	} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("the healthy report has no line matching %s", want)
		}
	}
	if strings.Contains(out, "FAIL") {
		t.Errorf("a check fails on the healthy installation:\n%s", out)
	}

	// An agent down.
	agent := testLab.Instance("livemigrate-agent-member2-node-2")
	if agent == nil {
		t.Fatal("no agent on member2-node-2")
	}
	if err := testLab.Kill(agent); err != nil {
		t.Fatal(err)
	}
	out = waitDoctor(ctx, t, true, regexp.MustCompile(`(?m)^FAIL\s+member2\s+agent member2-node-2\s+the agent is not running: its report held by "member2-node-2", last renewed \d+s ago[^\n]*\n\s+→ kubectl -n livemigrate-system get pods -l app.kubernetes.io/name=livemigrate-agent --field-selector spec.nodeName=member2-node-2`))
	if n := strings.Count(out, "FAIL"); n != 1 {
		t.Errorf("%d failing checks with one agent down, want 1:\n%s", n, out)
	}
	if err := testLab.Restart(ctx, agent); err != nil {
		t.Fatal(err)
	}
	waitDoctor(ctx, t, false, healthy)

	// The node's kubelet checkpoint API down (the lab node runtime serves it).
	kubeletAPI := testLab.Instance("labnode-member2-node-2")
	if kubeletAPI == nil {
		t.Fatal("no node runtime on member2-node-2")
	}
	if err := testLab.Kill(kubeletAPI); err != nil {
		t.Fatal(err)
	}
	waitDoctor(ctx, t, true, regexp.MustCompile(`(?m)^FAIL\s+member2\s+agent member2-node-2\s+runtime [^\n]*freezer v1: the kubelet's checkpoint API did not answer: [^\n]*\n\s+→ the agent calls POST /checkpoint/`))
	if err := testLab.Restart(ctx, kubeletAPI); err != nil {
		t.Fatal(err)
	}
	// The lab node runtime serves with a new self-signed certificate after
	// its restart, which the agent reads when it starts (as after a
	// kubelet's regenerated self-signed certificate): the doctor keeps
	// failing the node until the agent restarts too.
	waitDoctor(ctx, t, true, regexp.MustCompile(`(?m)^FAIL\s+member2\s+agent member2-node-2\s+[^\n]*checkpoint API did not answer: [^\n]*x509`))
	if err := testLab.Kill(agent); err != nil {
		t.Fatal(err)
	}
	if err := testLab.Restart(ctx, agent); err != nil {
		t.Fatal(err)
	}
	waitDoctor(ctx, t, false, healthy)

	// The checkpoint registry down: every node reports it unreachable.
	reg := testLab.Instances("lab-registry")
	if len(reg) != 1 {
		t.Fatalf("%d lab registries, want 1", len(reg))
	}
	if err := testLab.Kill(reg[0]); err != nil {
		t.Fatal(err)
	}
	waitDoctor(ctx, t, true, regexp.MustCompile(`(?m)^FAIL\s+member1\s+agent member1-node-1\s+runtime [^\n]*checkpoint API ok: registry \S+ unreachable: [^\n]*\n\s+→ the node pushes checkpoint images to and pulls them from these registries: make them reachable from member1-node-1`))
	if err := testLab.Restart(ctx, reg[0]); err != nil {
		t.Fatal(err)
	}
	waitDoctor(ctx, t, false, healthy)

	// The descheduler down: its webhook no longer answers.
	desch := testLab.Instance("livemigrate-descheduler")
	if err := testLab.Kill(desch); err != nil {
		t.Fatal(err)
	}
	// The report is not logged: its expected FAIL line would come first
	// in a CI log.
	out = waitDoctor(ctx, t, true, regexp.MustCompile(`(?m)^FAIL\s+karmada\s+descheduler webhook\s+.*failed calling webhook[^\n]*\n\s+→ the descheduler is not running`))
	// Its serving certificate cannot be read then: only the caBundle is
	// checked, and the doctor says where the certificate could be read.
	if re := regexp.MustCompile(`(?m)^WARN\s+karmada\s+webhook cert validating/livemigrate-descheduler\s+caBundle CA "CN=livemigrate-lab-ca" [^\n]*; the serving certificate was not checked: 127\.0\.0\.1:\d+ is not reachable from here[^\n]*\n\s+→ the Secret karmada-system/livemigrate-descheduler-webhook-cert is in the cluster that runs the Karmada control plane: pass --host-kubeconfig`); !re.MatchString(out) {
		t.Errorf("with the descheduler down, no line matching %s in the report:\n%s", re, out)
	}
	if err := testLab.Restart(ctx, desch); err != nil {
		t.Fatal(err)
	}
	waitDoctor(ctx, t, false, regexp.MustCompile(`(?m)^OK\s+karmada\s+descheduler webhook`))
}

// TestDoctorWebhookCertificate: member1's restore webhook registration
// patched to trust another CA makes the doctor fail that registration's
// certificate check, saying what to fix, and pass again once the caBundle
// is restored.
func TestDoctorWebhookCertificate(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	restoreCert := regexp.MustCompile(`(?m)^OK\s+member1\s+webhook cert mutating/livemigrate-restore\s+served at 127\.0\.0\.1:\d+: signed by the caBundle`)
	waitDoctor(ctx, t, false, restoreCert)

	m := testLab.Member("member1")
	if m == nil {
		t.Fatal("no member1")
	}
	mwcs := m.Client.AdmissionregistrationV1().MutatingWebhookConfigurations()
	mwc, err := mwcs.Get(ctx, "livemigrate-restore", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(mwc.Webhooks) != 1 {
		t.Fatalf("livemigrate-restore has %d webhooks, want 1", len(mwc.Webhooks))
	}
	patchCABundle := func(ctx context.Context, ca []byte) error {
		patch, err := json.Marshal([]map[string]any{{"op": "replace", "path": "/webhooks/0/clientConfig/caBundle", "value": ca}})
		if err != nil {
			return err
		}
		_, err = mwcs.Patch(ctx, "livemigrate-restore", types.JSONPatchType, patch, metav1.PatchOptions{})
		return err
	}
	original := mwc.Webhooks[0].ClientConfig.CABundle
	restored := false
	t.Cleanup(func() {
		if restored {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := patchCABundle(ctx, original); err != nil {
			t.Errorf("restoring the caBundle of livemigrate-restore in member1: %v", err)
		}
	})
	if err := patchCABundle(ctx, otherCA(t)); err != nil {
		t.Fatal(err)
	}
	out := waitDoctor(ctx, t, true, regexp.MustCompile(`(?m)^FAIL\s+member1\s+webhook cert mutating/livemigrate-restore\s+served at 127\.0\.0\.1:\d+: the serving certificate \(issuer "CN=livemigrate-lab-ca"\) is not signed by the caBundle \(CA "CN=livemigrate-other-ca" until [0-9-]+\)\n\s+→ helm upgrade livemigrate charts/livemigrate -n livemigrate-system --kubeconfig <member1> --reuse-values renews the serving certificate`))
	if n := strings.Count(out, "FAIL"); n != 1 {
		t.Errorf("%d failing checks with one caBundle replaced, want 1:\n%s", n, out)
	}
	if err := patchCABundle(ctx, original); err != nil {
		t.Fatal(err)
	}
	restored = true
	waitDoctor(ctx, t, false, restoreCert)
}

// otherCA is a CA certificate (PEM) that signed none of the lab's.
func otherCA(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "livemigrate-other-ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}
