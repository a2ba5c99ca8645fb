package integration

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
)

// labelMigrationUID marks every object of a migration, its credentials
// included.
const labelMigrationUID = "livemigrate.io/migration-uid"

// credentials lists the Secrets labelled with the migration's UID in every
// namespace, as namespace/name.
func credentials(t *testing.T, ctx context.Context, uid types.UID) []string {
	t.Helper()
	var list corev1.SecretList
	if err := k.List(ctx, &list, client.MatchingLabels{labelMigrationUID: string(uid)}); err != nil {
		t.Fatalf("listing the migration's Secrets: %v", err)
	}
	var out []string
	for _, s := range list.Items {
		out = append(out, s.Namespace+"/"+s.Name)
	}
	return out
}

// TestTenantCannotReachTheReplicationCredentials runs a migration with a
// volume against a kube-apiserver that authorizes with RBAC, the member
// roles as make manifests renders them. A tenant who administers the
// workload's namespace (a Role with every right on the core API there: it
// reads and writes every Secret of the namespace) finds no credentials of
// the migration there, and may neither read nor list nor replace nor
// create them where they are, the agents' namespace. The agent's identity
// reads them there, and no Secret of the tenant's namespace. The rollback
// deletes them.
func TestTenantCannotReachTheReplicationCredentials(t *testing.T) {
	need(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const tenant = "tenant-credentials"
	workload(t, ctx, tenant, withVolume)
	sim.stall(tenant)
	cs, err := kubernetes.NewForConfig(shared.cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range []client.Object{
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: tenant, Name: "namespace-admin"}},
		// Everything of the core group and the livemigrate APIs in its
		// namespace (the built-in ClusterRole admin is aggregated by a
		// controller this API server runs without).
		&rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: tenant, Name: "namespace-admin"}, Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{"", "livemigrate.io", "agent.livemigrate.io"}, Resources: []string{"*"}, Verbs: []string{"*"}}}},
		&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: tenant, Name: "namespace-admin"},
			Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: tenant, Name: "namespace-admin"}},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "namespace-admin"}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: tenant, Name: "db-password"}, StringData: map[string]string{"password": "s3cret"}},
	} {
		if err := k.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	admin := serviceAccountClient(t, ctx, cs, tenant, "namespace-admin", nil)
	// The tenant does have Secret rights in its namespace (RBAC takes a
	// moment to see a new binding).
	for {
		err := admin.Get(ctx, client.ObjectKey{Namespace: tenant, Name: "db-password"}, &corev1.Secret{})
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("the tenant's namespace admin cannot read its own Secret: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}

	if err := k.Create(ctx, migration(tenant, "m", "b")); err != nil {
		t.Fatal(err)
	}
	// Restoring: the volume is replicated, the credentials are in place.
	lm := waitPhase(t, ctx, tenant, "m", lmv1alpha1.PhaseRestoring)
	where := credentials(t, ctx, lm.UID)
	want := agentNamespace + "/replication-tls-" + string(lm.UID)
	if len(where) != 1 || where[0] != want {
		// Both members are this one API server: one Secret serves both sides.
		t.Fatalf("the migration's credentials are %v, want only %s (the agents' namespace)", where, want)
	}
	key := client.ObjectKey{Namespace: agentNamespace, Name: "replication-tls-" + string(lm.UID)}
	var inTenant corev1.SecretList
	if err := admin.List(ctx, &inTenant, client.InNamespace(tenant)); err != nil {
		t.Fatalf("the tenant cannot list its own Secrets: %v", err)
	}
	for _, s := range inTenant.Items {
		if s.Labels[labelMigrationUID] != "" || s.Name == key.Name {
			t.Errorf("the tenant reads Secret %s of the migration in its namespace", s.Name)
		}
	}

	forbidden := func(what string, err error) {
		t.Helper()
		if !apierrors.IsForbidden(err) {
			t.Errorf("the tenant's namespace admin %s: %v, want Forbidden", what, err)
		}
	}
	sec := &corev1.Secret{}
	forbidden("read the migration's credentials", admin.Get(ctx, key, sec))
	if len(sec.Data) > 0 {
		t.Errorf("the tenant read %d keys of the migration's credentials", len(sec.Data))
	}
	forbidden("listed the agents' Secrets", admin.List(ctx, &corev1.SecretList{}, client.InNamespace(agentNamespace)))
	planted := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: agentNamespace, Name: "replication-tls-planted",
		Labels: map[string]string{labelMigrationUID: string(lm.UID)}}, StringData: map[string]string{"ca.crt": "the tenant's CA"}}
	forbidden("created a Secret in the agents' namespace", admin.Create(ctx, planted))
	replaced := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}, StringData: map[string]string{"ca.crt": "the tenant's CA"}}
	forbidden("replaced the migration's credentials", admin.Update(ctx, replaced))
	forbidden("deleted the migration's credentials", admin.Delete(ctx, replaced))

	// The agent's identity (the chart's Role in its namespace) reads the
	// credentials, and not the tenant's Secrets.
	agent := agentClient(t, ctx, cs, nil)
	if err := agent.Get(ctx, key, &corev1.Secret{}); err != nil {
		t.Errorf("the agent cannot read the migration's credentials: %v", err)
	}
	if err := agent.Get(ctx, client.ObjectKey{Namespace: tenant, Name: "db-password"}, &corev1.Secret{}); !apierrors.IsForbidden(err) {
		t.Errorf("the agent reads the tenant's Secret: %v, want Forbidden", err)
	}

	// The rollback deletes the credentials.
	if err := k.Patch(ctx, lm, client.RawPatch(types.MergePatchType, []byte(`{"spec":{"abort":true}}`))); err != nil {
		t.Fatal(err)
	}
	waitPhase(t, ctx, tenant, "m", lmv1alpha1.PhaseFailed)
	if left := credentials(t, ctx, lm.UID); len(left) != 0 {
		t.Errorf("replication credentials left after the rollback: %v", left)
	}
	if err := k.Get(ctx, key, &corev1.Secret{}); !apierrors.IsNotFound(err) {
		t.Errorf("Secret %s after the rollback: %v", key, fmt.Sprint(err))
	}
}
