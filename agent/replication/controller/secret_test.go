package controller

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/livemigrate/livemigrate/agent/replication/certs"
	"github.com/livemigrate/livemigrate/agent/replication/internal/testharness"
	"github.com/livemigrate/livemigrate/agent/replication/provision"
	agentv1alpha1 "github.com/livemigrate/livemigrate/api/agent/v1alpha1"
)

// TestReceiverUsesOnlyItsMigrationsSecretOfTheAgentsNamespace: a receiver
// starts with the Secret of the agent's namespace labelled for its
// migration; it refuses at once, with a reason saying why, a Secret named
// in another namespace (the workload's, where a tenant can write one), and
// a Secret of its own namespace labelled for another migration, for the
// same migration in another namespace, or not labelled at all. A refused
// Secret never starts a receiver.
func TestReceiverUsesOnlyItsMigrationsSecretOfTheAgentsNamespace(t *testing.T) {
	testharness.RequireRoot(t)
	b, err := certs.Mint(certs.Options{MigrationUID: "mig-a", Validity: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	labelled := func(mig, mns string) *corev1.Secret {
		s := credentials("tls-mig-a", "mig-a", b)
		s.Labels = map[string]string{}
		if mig != "" {
			s.Labels[certs.LabelMigrationUID] = mig
		}
		if mns != "" {
			s.Labels[certs.LabelMigrationNamespace] = mns
		}
		return s
	}
	inWorkload := credentials("tls-mig-a", "mig-a", b)
	inWorkload.Namespace = ns
	for _, tc := range []struct {
		name string
		// secret is the only Secret in the cluster; refNamespace is
		// spec.tlsSecretRef.namespace.
		secret       *corev1.Secret
		refNamespace string
		// wantReason is the refusal, "" when the receiver starts.
		wantReason StartReason
		wantInMsg  []string
	}{
		{name: "own migration, agent's namespace by default", secret: credentials("tls-mig-a", "mig-a", b)},
		{name: "own migration, agent's namespace named", secret: credentials("tls-mig-a", "mig-a", b), refNamespace: agentNS},
		{name: "Secret in the workload's namespace", secret: inWorkload, refNamespace: ns,
			wantReason: ReasonSecretNotAllowed, wantInMsg: []string{"spec.tlsSecretRef.namespace", `"db"`, agentNS}},
		{name: "Secret in kube-system", secret: credentials("tls-mig-a", "mig-a", b), refNamespace: "kube-system",
			wantReason: ReasonSecretNotAllowed, wantInMsg: []string{"spec.tlsSecretRef.namespace", "kube-system"}},
		{name: "another migration's Secret", secret: labelled("mig-other", ns),
			wantReason: ReasonSecretNotForMigration, wantInMsg: []string{"mig-other", "mig-a"}},
		{name: "the same migration UID for another namespace", secret: labelled("mig-a", "other-tenant"),
			wantReason: ReasonSecretNotForMigration, wantInMsg: []string{"other-tenant"}},
		{name: "an unlabelled Secret", secret: labelled("", ""),
			wantReason: ReasonSecretNotForMigration, wantInMsg: []string{`migration "" of namespace ""`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dstRoot := filepath.Join(t.TempDir(), "volumes")
			pvc, pv := localClaim("data-a", "pv-a", filepath.Join(dstRoot, "db", "pv-a"), dstNode, map[string]string{provision.LabelMigrationUID: "mig-a"})
			vr := replicationObj("a", "mig-a", "data-a", agentv1alpha1.ReplicationRoleTarget, dstNode, "")
			vr.Spec.TLSSecretRef.Namespace = tc.refNamespace
			dst := newCluster(t, dstNode, Config{TargetRoots: []string{dstRoot}, ListenHost: "127.0.0.1", AdvertiseHost: "127.0.0.1", Port: freePort(t)},
				tc.secret, pvc, pv, vr)
			failures := since(t, startFailures.WithLabelValues(roleTarget, string(tc.wantReason)))
			reconcileCtx(t, dst, "a")
			got := dst.get(t, "a")
			c := findCondition(got.Status.Conditions, agentv1alpha1.ConditionReceiverReady)
			if tc.wantReason == "" {
				if got.Status.Phase != agentv1alpha1.VolumeReplicationListening || got.Status.Endpoint == "" {
					t.Fatalf("phase %q endpoint %q condition %+v message %q, want Listening", got.Status.Phase, got.Status.Endpoint, c, got.Status.Message)
				}
				return
			}
			if got.Status.Phase != agentv1alpha1.VolumeReplicationFailed || c == nil || c.Reason != string(tc.wantReason) {
				t.Fatalf("phase %q condition %+v message %q, want Failed with reason %s", got.Status.Phase, c, got.Status.Message, tc.wantReason)
			}
			for _, w := range tc.wantInMsg {
				if !strings.Contains(got.Status.Message, w) {
					t.Errorf("message %q does not say %q", got.Status.Message, w)
				}
			}
			if got.Status.Endpoint != "" {
				t.Errorf("a refused Secret started a receiver at %s", got.Status.Endpoint)
			}
			if got := failures(); got != 1 {
				t.Errorf("start failures with reason %s = %v, want 1", tc.wantReason, got)
			}
		})
	}
}

// TestSenderRefusesAnotherMigrationsSecret: a source whose Secret (in the
// agent's namespace, under the name its object gives) is labelled for
// another migration fails with SecretNotForMigration and sends nothing.
func TestSenderRefusesAnotherMigrationsSecret(t *testing.T) {
	src, _, srcDir, _ := setup(t)
	writeFile(t, filepath.Join(srcDir, "f"), 64<<10)
	sec := &corev1.Secret{}
	if err := src.client.Get(context.Background(), client.ObjectKey{Namespace: agentNS, Name: "replication-tls"}, sec); err != nil {
		t.Fatal(err)
	}
	sec.Labels[certs.LabelMigrationUID] = "someone-elses"
	if err := src.client.Update(context.Background(), sec); err != nil {
		t.Fatal(err)
	}
	src.reconcile(t, "data-pg-0")
	vr := src.waitPhase(t, "data-pg-0", agentv1alpha1.VolumeReplicationFailed)
	c := findCondition(vr.Status.Conditions, agentv1alpha1.ConditionSenderReady)
	if c == nil || c.Reason != string(ReasonSecretNotForMigration) || !strings.Contains(vr.Status.Message, "someone-elses") {
		t.Errorf("condition %+v message %q, want SenderReady reason SecretNotForMigration naming the Secret's migration", c, vr.Status.Message)
	}
	if vr.Status.BytesSent != 0 {
		t.Errorf("the sender sent %d bytes with a refused Secret", vr.Status.BytesSent)
	}
}
