package agentcr

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	agentv1alpha1 "github.com/livemigrate/livemigrate/api/agent/v1alpha1"
	"github.com/livemigrate/livemigrate/descheduler/migration"
	"github.com/livemigrate/livemigrate/test/builder"
)

// back is the migration of the workload of mig back from b into a.
var back = migration.Migration{
	UID: "fedcba9876543210", Namespace: "ns", Name: "back", Source: "b", Target: "a",
	Workload: mig.Workload,
}

// localVolume is a local volume at path on node, bound to ns/<claim>.
func localVolume(name, path, node, claim string, claimUID types.UID) *corev1.PersistentVolume {
	return &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")},
			AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain,
			StorageClassName:              "local",
			ClaimRef:                      &corev1.ObjectReference{Namespace: "ns", Name: claim, UID: claimUID},
			PersistentVolumeSource:        corev1.PersistentVolumeSource{Local: &corev1.LocalVolumeSource{Path: path}},
			NodeAffinity: &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
				MatchExpressions: []corev1.NodeSelectorRequirement{{Key: corev1.LabelHostname, Operator: corev1.NodeSelectorOpIn, Values: []string{node}}},
			}}}},
		},
	}
}

func boundClaim(name string, uid types.UID, volume string) *corev1.PersistentVolumeClaim {
	return &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, UID: uid, Labels: map[string]string{"app": "db"}},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
			VolumeName:  volume,
		},
	}
}

func getClaim(t *testing.T, cl client.Client, name string) *corev1.PersistentVolumeClaim {
	t.Helper()
	c := &corev1.PersistentVolumeClaim{}
	if err := cl.Get(context.Background(), types.NamespacedName{Namespace: "ns", Name: name}, c); err != nil {
		t.Fatalf("claim %s: %v", name, err)
	}
	return c
}

func settle(t *testing.T, h *SourceClaims, m migration.Migration, policy migration.SourceClaimPolicy) {
	t.Helper()
	done, err := h.Settle(context.Background(), m, vol, migration.SettleOptions{Policy: policy, WorkloadPods: []string{"db-0"}})
	if err != nil || !done {
		t.Fatalf("Settle(%s) = %v, %v; want done", policy, done, err)
	}
}

// TestSettleRetainMarksTheSourceClaim: Retain marks the claim as the copy
// of this workload, this very claim, left by this migration; again is a
// no-op.
func TestSettleRetainMarksTheSourceClaim(t *testing.T) {
	src := member(boundClaim("data-db-0", "claim-uid-1", "src-pv"), localVolume("src-pv", "/disks/db", "n1", "data-db-0", "claim-uid-1"))
	h := &SourceClaims{Clients: clients{"a": src, "b": member()}}
	if p := h.DefaultPolicy(); p != migration.SourceClaimRetain {
		t.Errorf("default policy = %s, want Retain", p)
	}
	settle(t, h, mig, migration.SourceClaimRetain)
	c := getClaim(t, src, "data-db-0")
	want := map[string]string{
		AnnotationRetainedFor:      "StatefulSet.apps/db",
		AnnotationRetainedClaimUID: "claim-uid-1",
		AnnotationRetainedBy:       "ns/mig uid=0123456789abcdef",
	}
	if diff := cmp.Diff(want, c.Annotations); diff != "" {
		t.Errorf("annotations (-want +got):\n%s", diff)
	}
	if c.Labels[LabelRetained] != "true" || c.Labels["app"] != "db" {
		t.Errorf("labels = %v, want %s=true added", c.Labels, LabelRetained)
	}
	rv := c.ResourceVersion
	settle(t, h, mig, migration.SourceClaimRetain)
	if got := getClaim(t, src, "data-db-0").ResourceVersion; got != rv {
		t.Errorf("a second Settle changed the claim (resourceVersion %s → %s)", rv, got)
	}
	if err := src.Get(context.Background(), types.NamespacedName{Name: "src-pv"}, &corev1.PersistentVolume{}); err != nil {
		t.Errorf("retained claim's volume: %v", err)
	}
}

// TestSettleDeleteDeletesTheSourceClaim: Delete deletes the claim and the
// local volume an earlier migration provisioned for it, never a volume
// that is not ours (its reclaim policy decides), and leaves a claim that
// another pod mounts.
func TestSettleDeleteDeletesTheSourceClaim(t *testing.T) {
	ctx := context.Background()
	ours := localVolume("lm-data-db-0-1234", "/var/lib/livemigrate/volumes/ns/lm-data-db-0-1234", "n1", "data-db-0", "claim-uid-1")
	ours.Labels = map[string]string{LabelMigrationUID: "older-migration"}
	src := member(boundClaim("data-db-0", "claim-uid-1", ours.Name), ours)
	h := &SourceClaims{Clients: clients{"a": src, "b": member()}, Policy: migration.SourceClaimDelete}
	settle(t, h, mig, h.DefaultPolicy())
	if err := src.Get(ctx, types.NamespacedName{Namespace: "ns", Name: "data-db-0"}, &corev1.PersistentVolumeClaim{}); err == nil {
		t.Error("source claim left by Delete")
	}
	if err := src.Get(ctx, types.NamespacedName{Name: ours.Name}, &corev1.PersistentVolume{}); err == nil {
		t.Error("the volume a migration provisioned left by Delete")
	}
	settle(t, h, mig, migration.SourceClaimDelete) // gone: done

	users := localVolume("users-pv", "/disks/db", "n1", "data-db-0", "claim-uid-2")
	src = member(boundClaim("data-db-0", "claim-uid-2", "users-pv"), users)
	h.Clients = clients{"a": src, "b": member()}
	settle(t, h, mig, migration.SourceClaimDelete)
	if err := src.Get(ctx, types.NamespacedName{Name: "users-pv"}, &corev1.PersistentVolume{}); err != nil {
		t.Errorf("a volume no migration provisioned was deleted: %v", err)
	}

	other := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "backup-job"}, Spec: corev1.PodSpec{
		Volumes: []corev1.Volume{{Name: "d", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data-db-0"}}}}}}
	ownPod := other.DeepCopy()
	ownPod.Name = "db-0"
	src = member(boundClaim("data-db-0", "claim-uid-3", "users-pv"), users, other, ownPod)
	h.Clients = clients{"a": src, "b": member()}
	settle(t, h, mig, migration.SourceClaimDelete)
	settle(t, h, mig, migration.SourceClaimRetain)
	if c := getClaim(t, src, "data-db-0"); c.Labels[LabelRetained] != "" {
		t.Errorf("a claim another pod mounts was marked: %v", c.Labels)
	}
}

// TestOneAPIServerForBothClusters: when both Cluster objects reach the same
// API server, the target's claim is the source claim itself: the
// migration provisions nothing, refuses nothing, and Settle leaves it to
// the workload that runs on it.
func TestOneAPIServerForBothClusters(t *testing.T) {
	ctx := context.Background()
	pv := localVolume("src-pv", "/disks/db", "c-good", "data-db-0", "claim-uid-1")
	one := member(boundClaim("data-db-0", "claim-uid-1", pv.Name), pv, node("c-good", true, false))
	h := &Replication{Clients: clients{"a": one, "b": one}}
	if _, err := h.PreCopy(ctx, mig, vol, migration.PreCopyOptions{MaxRounds: 5}); err != nil {
		t.Fatalf("PreCopy: %v", err)
	}
	var pvs corev1.PersistentVolumeList
	if err := one.List(ctx, &pvs); err != nil || len(pvs.Items) != 1 {
		t.Errorf("volumes: %d, %v; want only the source's", len(pvs.Items), err)
	}
	s := &SourceClaims{Clients: clients{"a": one, "b": one}}
	settle(t, s, mig, migration.SourceClaimDelete)
	if c := getClaim(t, one, "data-db-0"); c.Labels[LabelRetained] != "" {
		t.Errorf("claim marked: %v", c.Labels)
	}
}

// moveBackWorld is cluster b (the source of the move back) running the
// workload on the claim a migration provisioned, and cluster a holding
// the claim a first migration a → b retained, on d-good.
func moveBackWorld(retained *corev1.PersistentVolumeClaim, retainedPV *corev1.PersistentVolume) (src, dst client.Client, h *Replication) {
	srcPV := localVolume("lm-data-db-0-b", "/var/lib/livemigrate/volumes/ns/lm-data-db-0-b", "b-node", "data-db-0", "claim-uid-b")
	srcPV.Labels = map[string]string{LabelMigrationUID: string(mig.UID)}
	src = member(boundClaim("data-db-0", "claim-uid-b", srcPV.Name), srcPV)
	objs := []client.Object{node("a-bad", false, false), node("b-tainted", true, true), node("c-good", true, false), node("d-good", true, false)}
	if retained != nil {
		objs = append(objs, retained)
	}
	if retainedPV != nil {
		objs = append(objs, retainedPV)
	}
	dst = member(objs...)
	return src, dst, &Replication{Clients: clients{"b": src, "a": dst}}
}

// retainedClaim is the claim Settle(Retain) left in a after mig.
func retainedClaim(t *testing.T, c *corev1.PersistentVolumeClaim, pv *corev1.PersistentVolume) *corev1.PersistentVolumeClaim {
	t.Helper()
	cl := member(c.DeepCopy(), pv.DeepCopy())
	settle(t, &SourceClaims{Clients: clients{"a": cl, "b": member()}}, mig, migration.SourceClaimRetain)
	return getClaim(t, cl, c.Name)
}

// TestMoveBackAdoptsTheRetainedClaim: the claim a migration of the same
// workload retained in the target, on a local volume under the agents'
// root, becomes the migration's own (the label the target agent checks;
// the retention marks removed), its node receives the volume, and no other
// claim or volume is provisioned: the delta passes send only what changed.
// An abort of that migration removes it like a claim it provisioned.
func TestMoveBackAdoptsTheRetainedClaim(t *testing.T) {
	ctx := context.Background()
	pv := localVolume("lm-data-db-0-a", "/var/lib/livemigrate/volumes/ns/lm-data-db-0-a", "d-good", "data-db-0", "claim-uid-a")
	pv.Labels = map[string]string{LabelMigrationUID: "first-migration"}
	c := retainedClaim(t, boundClaim("data-db-0", "claim-uid-a", pv.Name), pv)
	_, dst, h := moveBackWorld(c, pv)

	if rs, err := h.PreCopy(ctx, back, vol, migration.PreCopyOptions{MaxRounds: 5}); err != nil {
		t.Fatalf("PreCopy = %+v, %v", rs, err)
	}
	got := getClaim(t, dst, "data-db-0")
	if got.Labels[LabelMigrationUID] != string(back.UID) || got.Labels[LabelRetained] != "" {
		t.Errorf("adopted claim labels = %v, want %s=%s and no %s", got.Labels, LabelMigrationUID, back.UID, LabelRetained)
	}
	for _, k := range []string{AnnotationRetainedFor, AnnotationRetainedClaimUID, AnnotationRetainedBy} {
		if _, ok := got.Annotations[k]; ok {
			t.Errorf("adopted claim keeps %s", k)
		}
	}
	if got.Annotations[AnnotationAdoptedFrom] != "ns/mig uid=0123456789abcdef" || got.Annotations[AnnotationMigration] != "back" {
		t.Errorf("adopted claim annotations = %v", got.Annotations)
	}
	if got.Spec.VolumeName != pv.Name || got.UID != "claim-uid-a" {
		t.Errorf("adopted claim = %s bound to %s, want the retained claim bound to %s", got.UID, got.Spec.VolumeName, pv.Name)
	}
	gpv := &corev1.PersistentVolume{}
	if err := dst.Get(ctx, types.NamespacedName{Name: pv.Name}, gpv); err != nil || gpv.Labels[LabelMigrationUID] != string(back.UID) {
		t.Errorf("adopted volume labels = %v, %v", gpv.Labels, err)
	}
	var pvs corev1.PersistentVolumeList
	if err := dst.List(ctx, &pvs); err != nil || len(pvs.Items) != 1 {
		t.Errorf("volumes in the target: %d, %v; want only the adopted one", len(pvs.Items), err)
	}
	// Its node, not the first Ready one (c-good), receives the volume.
	if n := getVR(t, dst, "data-db-0-target-fedcba98").Spec.NodeName; n != "d-good" {
		t.Errorf("target VolumeReplication on %s, want the adopted volume's node d-good", n)
	}
	// Again (a requeue, a restart): the same answer.
	if _, err := h.PreCopy(ctx, back, vol, migration.PreCopyOptions{MaxRounds: 5}); err != nil {
		t.Fatal(err)
	}

	done := false
	for i := 0; i < 3 && !done; i++ {
		var err error
		if done, err = h.Abort(ctx, back, vol, migration.AbortOptions{Force: true}); err != nil {
			t.Fatal(err)
		}
	}
	if !done {
		t.Fatal("Abort never finished")
	}
	if err := dst.Get(ctx, types.NamespacedName{Namespace: "ns", Name: "data-db-0"}, &corev1.PersistentVolumeClaim{}); err == nil {
		t.Error("adopted claim left after the abort")
	}
	if err := dst.Get(ctx, types.NamespacedName{Name: pv.Name}, &corev1.PersistentVolume{}); err == nil {
		t.Error("adopted volume left after the abort")
	}
}

// TestMoveBackAfterARestartAdoptedTheClaim: a claim adopted before a
// restart, with no target VolumeReplication yet, keeps its volume's node.
func TestMoveBackAfterARestartAdoptedTheClaim(t *testing.T) {
	ctx := context.Background()
	pv := localVolume("lm-data-db-0-a", "/var/lib/livemigrate/volumes/ns/lm-data-db-0-a", "d-good", "data-db-0", "claim-uid-a")
	c := boundClaim("data-db-0", "claim-uid-a", pv.Name)
	c.Labels[LabelMigrationUID] = string(back.UID)
	_, dst, h := moveBackWorld(c, pv)
	if _, err := h.PreCopy(ctx, back, vol, migration.PreCopyOptions{MaxRounds: 5}); err != nil {
		t.Fatal(err)
	}
	if n := getVR(t, dst, "data-db-0-target-fedcba98").Spec.NodeName; n != "d-good" {
		t.Errorf("target VolumeReplication on %s, want the claim's volume's node d-good", n)
	}
}

// TestMoveBackReplacesARetainedClaimItCannotAdopt: a retained copy the
// agents cannot write (the user's own volume, outside their root) or on a
// node that cannot run the pods is deleted — never blocking the move —
// and a claim is provisioned again once it is gone.
func TestMoveBackReplacesARetainedClaimItCannotAdopt(t *testing.T) {
	cases := []struct {
		name string
		pv   *corev1.PersistentVolume
		why  string
	}{
		{name: "outside the root", pv: localVolume("users-pv", "/disks/db", "d-good", "data-db-0", "claim-uid-a"),
			why: "its volume users-pv is not a local volume under /var/lib/livemigrate/volumes"},
		{name: "node not ready", pv: localVolume("lm-x", "/var/lib/livemigrate/volumes/ns/lm-x", "a-bad", "data-db-0", "claim-uid-a"),
			why: "its node a-bad is not Ready"},
		{name: "too small", pv: func() *corev1.PersistentVolume {
			pv := localVolume("lm-x", "/var/lib/livemigrate/volumes/ns/lm-x", "d-good", "data-db-0", "claim-uid-a")
			pv.Spec.Capacity[corev1.ResourceStorage] = resource.MustParse("100Mi")
			return pv
		}(), why: "its volume lm-x holds 100Mi, the source 1Gi"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			c := retainedClaim(t, boundClaim("data-db-0", "claim-uid-a", tc.pv.Name), tc.pv)
			_, dst, h := moveBackWorld(c, tc.pv)
			rs, err := h.PreCopy(ctx, back, vol, migration.PreCopyOptions{MaxRounds: 5})
			if err != nil || !strings.Contains(rs.Message, "replacing claim data-db-0 retained in a") || !strings.Contains(rs.Message, tc.why) {
				t.Fatalf("PreCopy = %+v, %v; want waiting, replacing the retained claim because %s", rs, err, tc.why)
			}
			if err := dst.Get(ctx, types.NamespacedName{Namespace: "ns", Name: "data-db-0"}, &corev1.PersistentVolumeClaim{}); err == nil {
				t.Fatal("the retained claim was not deleted")
			}
			if _, err := h.PreCopy(ctx, back, vol, migration.PreCopyOptions{MaxRounds: 5}); err != nil {
				t.Fatal(err)
			}
			got := getClaim(t, dst, "data-db-0")
			if got.Labels[LabelMigrationUID] != string(back.UID) || got.UID == "claim-uid-a" {
				t.Errorf("target claim after the replacement = %s %v, want a new one of the migration", got.UID, got.Labels)
			}
			userPV := &corev1.PersistentVolume{}
			err = dst.Get(ctx, types.NamespacedName{Name: tc.pv.Name}, userPV)
			if tc.pv.Labels[LabelMigrationUID] == "" && err != nil {
				t.Errorf("a volume no migration provisioned was deleted: %v", err)
			}
		})
	}
}

// TestTargetClaimNotLeftByUsBlocks: a claim of the same name in the target
// that no migration of this workload retained — a user's claim, one left
// before claims were marked, one retained for another workload, one whose
// marks were copied from another claim — is never written to: the
// migration fails at once, and the message says what to do.
func TestTargetClaimNotLeftByUsBlocks(t *testing.T) {
	pv := localVolume("lm-x", "/var/lib/livemigrate/volumes/ns/lm-x", "d-good", "data-db-0", "claim-uid-a")
	marked := func(mutate func(*corev1.PersistentVolumeClaim)) *corev1.PersistentVolumeClaim {
		c := retainedClaim(t, boundClaim("data-db-0", "claim-uid-a", pv.Name), pv)
		mutate(c)
		return c
	}
	cases := []struct {
		name  string
		claim *corev1.PersistentVolumeClaim
		why   string
	}{
		{name: "user's claim", claim: boundClaim("data-db-0", "claim-uid-a", pv.Name),
			why: "it is not a copy a migration of StatefulSet.apps/db left there"},
		{name: "provisioned, not retained", claim: func() *corev1.PersistentVolumeClaim {
			c := boundClaim("data-db-0", "claim-uid-a", pv.Name)
			c.Labels[LabelMigrationUID] = "older-migration"
			return c
		}(), why: "migration older-migration provisioned it and did not retain it"},
		{name: "another workload's copy", claim: marked(func(c *corev1.PersistentVolumeClaim) {
			c.Annotations[AnnotationRetainedFor] = "StatefulSet.apps/other"
		}), why: "it is the retained copy of StatefulSet.apps/other, another workload"},
		{name: "marks copied from another claim", claim: marked(func(c *corev1.PersistentVolumeClaim) {
			c.UID = "claim-uid-restored-from-backup"
		}), why: "its retention marks were made for another claim"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			_, dst, h := moveBackWorld(tc.claim, pv)
			_, err := h.PreCopy(ctx, back, vol, migration.PreCopyOptions{MaxRounds: 5})
			var sf *migration.StepFailedError
			if !errors.As(err, &sf) || sf.Reason != "TargetClaimExists" {
				t.Fatalf("PreCopy error = %v, want StepFailedError TargetClaimExists", err)
			}
			for _, want := range []string{"claim data-db-0 already exists in namespace ns of target cluster a", tc.why,
				"delete it there (kubectl -n ns delete pvc data-db-0) if its data is not needed, or migrate to another cluster"} {
				if !strings.Contains(sf.Message, want) {
					t.Errorf("message %q does not say %q", sf.Message, want)
				}
			}
			got := getClaim(t, dst, "data-db-0")
			if got.Labels[LabelMigrationUID] == string(back.UID) {
				t.Error("the claim was adopted")
			}
			var vrs agentv1alpha1.VolumeReplicationList
			if err := dst.List(ctx, &vrs); err != nil || len(vrs.Items) != 0 {
				t.Errorf("%d VolumeReplications created in the target, want none", len(vrs.Items))
			}
		})
	}
}

// TestSettleRetainForAWhile: with a retention the mark says until when.
func TestSettleRetainForAWhile(t *testing.T) {
	src := member(boundClaim("data-db-0", "claim-uid-1", "src-pv"))
	clk := clocktesting.NewFakePassiveClock(time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC))
	h := &SourceClaims{Clients: clients{"a": src, "b": member()}, Retention: 72 * time.Hour, Clock: clk}
	settle(t, h, mig, migration.SourceClaimRetain)
	if got := getClaim(t, src, "data-db-0").Annotations[AnnotationRetainedUntil]; got != "2026-03-07T05:06:07Z" {
		t.Errorf("%s = %q, want 72h after the migration", AnnotationRetainedUntil, got)
	}
	// A later Settle of the same migration does not push it back.
	clk.SetTime(clk.Now().Add(time.Hour))
	settle(t, h, mig, migration.SourceClaimRetain)
	if got := getClaim(t, src, "data-db-0").Annotations[AnnotationRetainedUntil]; got != "2026-03-07T05:06:07Z" {
		t.Errorf("%s = %q after a second Settle, want unchanged", AnnotationRetainedUntil, got)
	}
}

// TestRetentionSweeperDeletesExpiredClaims: a retained claim whose
// retention ended is deleted with the volume a migration provisioned for
// it; one still retained, one without a deadline, one a pod mounts and
// another cluster's unreachable state do not stop the rest.
func TestRetentionSweeperDeletesExpiredClaims(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	retained := func(name, until, pv string) *corev1.PersistentVolumeClaim {
		c := boundClaim(name, types.UID("uid-"+name), pv)
		c.Labels[LabelRetained] = "true"
		c.Annotations = map[string]string{AnnotationRetainedFor: "StatefulSet.apps/db", AnnotationRetainedClaimUID: "uid-" + name}
		if until != "" {
			c.Annotations[AnnotationRetainedUntil] = until
		}
		return c
	}
	ours := localVolume("lm-expired", "/var/lib/livemigrate/volumes/ns/lm-expired", "n1", "expired", "uid-expired")
	ours.Labels = map[string]string{LabelMigrationUID: "m1"}
	users := localVolume("users-pv", "/disks/x", "n1", "expired-users", "uid-expired-users")
	mounted := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "restored-by-hand"}, Spec: corev1.PodSpec{
		Volumes: []corev1.Volume{{Name: "d", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "expired-mounted"}}}}}}
	a := member(ours, users, mounted,
		retained("expired", "2026-03-04T05:00:00Z", ours.Name),
		retained("expired-users", "2026-03-04T05:06:07Z", users.Name),
		retained("expired-mounted", "2026-03-01T00:00:00Z", ""),
		retained("later", "2026-03-04T06:00:00Z", ""),
		retained("forever", "", ""),
		retained("garbled", "tomorrow", ""),
	)
	karmada := fake.NewClientBuilder().WithScheme(builder.Scheme()).WithObjects(
		builder.MakeCluster("a").Obj(), builder.MakeCluster("gone").Obj()).Build()
	s := &RetentionSweeper{Clients: clients{"a": a}, Clusters: karmada, Clock: clocktesting.NewFakePassiveClock(now)}
	n, err := s.Sweep(ctx)
	if n != 2 {
		t.Errorf("Sweep deleted %d claims, want 2", n)
	}
	if err == nil || !strings.Contains(err.Error(), "gone") {
		t.Errorf("Sweep error = %v, want the unreachable cluster named", err)
	}
	var left corev1.PersistentVolumeClaimList
	if err := a.List(ctx, &left); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range left.Items {
		names = append(names, c.Name)
	}
	if diff := cmp.Diff([]string{"expired-mounted", "forever", "garbled", "later"}, names); diff != "" {
		t.Errorf("claims left (-want +got):\n%s", diff)
	}
	if err := a.Get(ctx, types.NamespacedName{Name: ours.Name}, &corev1.PersistentVolume{}); err == nil {
		t.Error("the volume a migration provisioned for an expired claim is left")
	}
	if err := a.Get(ctx, types.NamespacedName{Name: users.Name}, &corev1.PersistentVolume{}); err != nil {
		t.Errorf("a volume no migration provisioned was deleted: %v", err)
	}
}

// TestMoveBackRefusesARetainedClaimAPodMounts: a retained copy someone
// mounted (to inspect or restore from it) is neither adopted nor deleted:
// the migration fails with TargetClaimInUse naming the pod.
func TestMoveBackRefusesARetainedClaimAPodMounts(t *testing.T) {
	ctx := context.Background()
	pv := localVolume("lm-data-db-0-a", "/var/lib/livemigrate/volumes/ns/lm-data-db-0-a", "d-good", "data-db-0", "claim-uid-a")
	c := retainedClaim(t, boundClaim("data-db-0", "claim-uid-a", pv.Name), pv)
	_, dst, h := moveBackWorld(c, pv)
	inspect := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "inspect"}, Spec: corev1.PodSpec{
		Volumes: []corev1.Volume{{Name: "d", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data-db-0"}}}}}}
	if err := dst.Create(ctx, inspect); err != nil {
		t.Fatal(err)
	}
	_, err := h.PreCopy(ctx, back, vol, migration.PreCopyOptions{MaxRounds: 5})
	var sf *migration.StepFailedError
	want := "claim data-db-0 in namespace ns of target cluster a is mounted by pod inspect: delete that pod (or wait for it to end), then migrate again"
	if !errors.As(err, &sf) || sf.Reason != "TargetClaimInUse" || sf.Message != want {
		t.Fatalf("PreCopy error = %v, want TargetClaimInUse: %s", err, want)
	}
	got := getClaim(t, dst, "data-db-0")
	if got.Labels[LabelMigrationUID] == string(back.UID) || got.Labels[LabelRetained] != "true" {
		t.Errorf("the mounted retained claim was adopted: %v", got.Labels)
	}
}
