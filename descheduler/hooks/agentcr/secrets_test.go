package agentcr

import (
	"context"
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/livemigrate/livemigrate/agent/replication/certs"
	"github.com/livemigrate/livemigrate/descheduler/migration"
)

// A Secret of the credentials' name that this migration did not create
// (planted by someone with Secret rights in the namespace, in either
// cluster) is never adopted: the migration fails with
// ReplicationSecretConflict, and the planted Secret is left as it was.
func TestReplicationRefusesPlantedSecret(t *testing.T) {
	for _, side := range []string{"source", "target"} {
		for _, labels := range []map[string]string{nil, {LabelMigrationUID: "another-migration"},
			// The migration's UID, for a namespace that is not the workload's.
			{LabelMigrationUID: "0123456789abcdef", certs.LabelMigrationNamespace: "another-namespace"}} {
			t.Run(side, func(t *testing.T) {
				ctx := context.Background()
				src, dst, h := replicationWorld()
				key := map[string]types.NamespacedName{"source": srcSecret, "target": dstSecret}[side]
				planted := &corev1.Secret{
					ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name, Labels: labels},
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
				if !strings.Contains(sf.Message, key.Name) || !strings.Contains(sf.Message, key.Namespace) {
					t.Errorf("message %q does not name the Secret", sf.Message)
				}
				got := &corev1.Secret{}
				if err := cl.Get(ctx, key, got); err != nil {
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
			key := map[string]types.NamespacedName{"source": srcSecret, "target": dstSecret}[side]
			half := &corev1.Secret{ObjectMeta: secretMeta(mig, key), Data: map[string][]byte{"ca.crt": []byte("an earlier mint")}}
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
			if err := src.Get(ctx, srcSecret, ss); err != nil {
				t.Fatal(err)
			}
			if err := dst.Get(ctx, dstSecret, ts); err != nil {
				t.Fatal(err)
			}
			if string(ss.Data["ca.crt"]) == "an earlier mint" || string(ss.Data["ca.crt"]) != string(ts.Data["ca.crt"]) {
				t.Errorf("the two shares do not hold one new CA")
			}
		})
	}
}

// Cleanup (success or rollback) deletes the migration's own credentials in
// both agent namespaces and never a Secret of that name it did not create.
func TestReplicationCleanupDeletesOnlyItsOwnSecrets(t *testing.T) {
	for _, end := range []string{"complete", "abort"} {
		t.Run(end, func(t *testing.T) {
			ctx := context.Background()
			src, dst, h := replicationWorld()
			if _, err := h.PreCopy(ctx, mig, vol, migration.PreCopyOptions{ConvergenceThresholdBytes: 64 << 20, MaxRounds: 4}); err != nil {
				t.Fatal(err)
			}
			// Someone else's Secret in the target's place.
			if err := dst.Delete(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: dstSecret.Namespace, Name: dstSecret.Name}}); err != nil {
				t.Fatal(err)
			}
			planted := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: dstSecret.Namespace, Name: dstSecret.Name}}
			if err := dst.Create(ctx, planted); err != nil {
				t.Fatal(err)
			}
			for i := 0; ; i++ {
				var done bool
				var err error
				if end == "complete" {
					done, err = h.Complete(ctx, mig, vol)
				} else {
					done, err = h.Abort(ctx, mig, vol, migration.AbortOptions{Force: true})
				}
				if err != nil {
					t.Fatal(err)
				}
				if done {
					break
				}
				if i == 5 {
					t.Fatal("cleanup not done after 5 rounds")
				}
			}
			if err := src.Get(ctx, srcSecret, &corev1.Secret{}); err == nil || !apierrors.IsNotFound(err) {
				t.Errorf("the source's credentials are still there: %v", err)
			}
			if err := dst.Get(ctx, dstSecret, &corev1.Secret{}); err != nil {
				t.Errorf("a Secret the migration did not create was deleted: %v", err)
			}
		})
	}
}
