package agentcr

import (
	"context"
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/livemigrate/livemigrate/descheduler/migration"
)

// A Secret of the credentials' name that this migration did not create
// (planted by someone with Secret rights in the namespace, in either
// cluster) is never adopted: the migration fails with
// ReplicationSecretConflict, and the planted Secret is left as it was.
func TestReplicationRefusesPlantedSecret(t *testing.T) {
	for _, side := range []string{"source", "target"} {
		for _, labels := range []map[string]string{nil, {LabelMigrationUID: "another-migration"}} {
			t.Run(side, func(t *testing.T) {
				ctx := context.Background()
				src, dst, h := replicationWorld()
				planted := &corev1.Secret{
					ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "replication-tls-01234567", Labels: labels},
					Data:       map[string][]byte{"ca.crt": []byte("the planter's CA")},
				}
				cl := map[string]client.Client{"source": src, "target": dst}[side]
				if err := cl.Create(ctx, planted); err != nil {
					t.Fatal(err)
				}
				_, err := h.PreCopy(ctx, mig, vol, migration.PreCopyOptions{ConvergenceThresholdBytes: 64 << 20, MaxRounds: 4})
				var sf *migration.StepFailedError
				if !errors.As(err, &sf) || sf.Reason != "ReplicationSecretConflict" {
					t.Fatalf("PreCopy error = %v, want StepFailedError ReplicationSecretConflict", err)
				}
				if !strings.Contains(sf.Message, "replication-tls-01234567") {
					t.Errorf("message %q does not name the Secret", sf.Message)
				}
				got := &corev1.Secret{}
				if err := cl.Get(ctx, types.NamespacedName{Namespace: "ns", Name: planted.Name}, got); err != nil {
					t.Fatal(err)
				}
				if string(got.Data["ca.crt"]) != "the planter's CA" || len(got.Data) != 1 {
					t.Errorf("the planted Secret was changed: %v", keys(got.Data))
				}
			})
		}
	}
}

// The migration's own Secret left alone in one cluster (a crash between
// the two creates, or a target share of an earlier mint) is replaced: both
// shares are minted again and hold the same CA.
func TestReplicationMintsAgainOverItsOwnHalfSecret(t *testing.T) {
	for _, side := range []string{"source", "target"} {
		t.Run(side, func(t *testing.T) {
			ctx := context.Background()
			src, dst, h := replicationWorld()
			key := types.NamespacedName{Namespace: "ns", Name: "replication-tls-01234567"}
			half := &corev1.Secret{ObjectMeta: objectMeta(mig, key), Data: map[string][]byte{"ca.crt": []byte("an earlier mint")}}
			cl := map[string]client.Client{"source": src, "target": dst}[side]
			if err := cl.Create(ctx, half); err != nil {
				t.Fatal(err)
			}
			opts := migration.PreCopyOptions{ConvergenceThresholdBytes: 64 << 20, MaxRounds: 4}
			// At most one retry.
			_, err := h.PreCopy(ctx, mig, vol, opts)
			if migration.IsStepFailed(err) {
				t.Fatalf("first PreCopy failed the migration: %v", err)
			}
			if err != nil {
				if _, err := h.PreCopy(ctx, mig, vol, opts); err != nil {
					t.Fatalf("second PreCopy: %v", err)
				}
			}
			ss, ts := &corev1.Secret{}, &corev1.Secret{}
			if err := src.Get(ctx, key, ss); err != nil {
				t.Fatal(err)
			}
			if err := dst.Get(ctx, key, ts); err != nil {
				t.Fatal(err)
			}
			if string(ss.Data["ca.crt"]) == "an earlier mint" || string(ss.Data["ca.crt"]) != string(ts.Data["ca.crt"]) {
				t.Errorf("the two shares do not hold one new CA")
			}
		})
	}
}
