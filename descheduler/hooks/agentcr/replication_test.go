package agentcr

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/livemigrate/livemigrate/agent/replication/certs"
	agentv1alpha1 "github.com/livemigrate/livemigrate/api/agent/v1alpha1"
	"github.com/livemigrate/livemigrate/descheduler/migration"
)

func node(name string, ready bool, taint bool) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: st}}
	if taint {
		n.Spec.Taints = []corev1.Taint{{Key: "x", Effect: corev1.TaintEffectNoSchedule}}
	}
	return n
}

var vol = migration.Volume{ClaimName: "data-db-0", StorageClass: "local", Pod: "db-0", Node: "src-node"}

func replicationWorld() (client.Client, client.Client, *Replication) {
	pvc := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "data-db-0", Labels: map[string]string{"app": "db"}},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			StorageClassName: ptr.To("local"),
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
		},
	}
	src := member(pvc)
	dst := member(node("a-bad", false, false), node("b-tainted", true, true), node("c-good", true, false), node("d-good", true, false))
	// The agents of the target cluster run in a namespace of their own.
	return src, dst, &Replication{Clients: clients{"a": src, "b": dst}, AgentNamespaceFor: map[string]string{"b": targetAgents}}
}

// targetAgents is the agents' namespace of the target cluster b of
// replicationWorld; a's is the default.
const targetAgents = "lm-agents"

// secretKeys are where the credentials of mig live in the source and the
// target cluster of replicationWorld.
var srcSecret, dstSecret = types.NamespacedName{Namespace: DefaultAgentNamespace, Name: "replication-tls-0123456789abcdef"},
	types.NamespacedName{Namespace: targetAgents, Name: "replication-tls-0123456789abcdef"}

func getVR(t *testing.T, cl client.Client, name string) *agentv1alpha1.VolumeReplication {
	t.Helper()
	vr := &agentv1alpha1.VolumeReplication{}
	if err := cl.Get(context.Background(), types.NamespacedName{Namespace: "ns", Name: name}, vr); err != nil {
		t.Fatalf("VolumeReplication %s: %v", name, err)
	}
	return vr
}

func TestReplicationLifecycle(t *testing.T) {
	ctx := context.Background()
	src, dst, h := replicationWorld()
	m := mig
	m.BandwidthLimit = 100 << 20
	opts := migration.PreCopyOptions{ConvergenceThresholdBytes: 64 << 20, MaxRounds: 4}

	rs, err := h.PreCopy(ctx, m, vol, opts)
	if err != nil || rs.PreCopyDone {
		t.Fatalf("first PreCopy = %+v, %v", rs, err)
	}
	// Credentials: in each cluster's agent namespace, labelled for the
	// migration and its namespace; the source keeps no target key, the
	// target no source key; nothing in the workload's namespace.
	ss, ts := &corev1.Secret{}, &corev1.Secret{}
	if err := src.Get(ctx, srcSecret, ss); err != nil {
		t.Fatal(err)
	}
	if err := dst.Get(ctx, dstSecret, ts); err != nil {
		t.Fatal(err)
	}
	for _, s := range []*corev1.Secret{ss, ts} {
		want := map[string]string{LabelMigrationUID: "0123456789abcdef", certs.LabelMigrationNamespace: "ns"}
		if diff := cmp.Diff(want, s.Labels); diff != "" {
			t.Errorf("labels of Secret %s/%s (-want +got):\n%s", s.Namespace, s.Name, diff)
		}
	}
	for _, c := range []client.Client{src, dst} {
		var inWorkload corev1.SecretList
		if err := c.List(ctx, &inWorkload, client.InNamespace("ns")); err != nil || len(inWorkload.Items) != 0 {
			t.Errorf("Secrets in the workload's namespace: %d (%v)", len(inWorkload.Items), err)
		}
	}
	if _, ok := ss.Data[certs.SecretKeyTargetKey]; ok || len(ss.Data[certs.SecretKeySourceKey]) == 0 {
		t.Errorf("source Secret keys: %v", keys(ss.Data))
	}
	if _, ok := ts.Data[certs.SecretKeySourceKey]; ok || len(ts.Data[certs.SecretKeyTargetKey]) == 0 || !cmp.Equal(ts.Data[certs.SecretKeyCA], ss.Data[certs.SecretKeyCA]) {
		t.Errorf("target Secret keys: %v (same CA: %v)", keys(ts.Data), cmp.Equal(ts.Data[certs.SecretKeyCA], ss.Data[certs.SecretKeyCA]))
	}
	if _, err := certs.CredentialsFromSecretData(ts.Data, certs.RoleTarget); err != nil {
		t.Errorf("target credentials unusable: %v", err)
	}
	// The claim is pre-provisioned in the target.
	tpvc := &corev1.PersistentVolumeClaim{}
	if err := dst.Get(ctx, types.NamespacedName{Namespace: "ns", Name: "data-db-0"}, tpvc); err != nil {
		t.Fatalf("target claim: %v", err)
	}
	if *tpvc.Spec.StorageClassName != "local" || tpvc.Spec.Resources.Requests.Storage().String() != "1Gi" || tpvc.Labels[LabelMigrationUID] == "" {
		t.Errorf("target claim = %+v", tpvc)
	}
	tgt := getVR(t, dst, "data-db-0-target-01234567")
	wantT := agentv1alpha1.VolumeReplicationSpec{MigrationUID: "0123456789abcdef", Role: agentv1alpha1.ReplicationRoleTarget, NodeName: "c-good",
		ClaimName: "data-db-0", TLSSecretRef: corev1.SecretReference{Name: "replication-tls-0123456789abcdef", Namespace: targetAgents},
		BandwidthLimit: resource.NewQuantity(100<<20, resource.BinarySI),
		PreCopy:        agentv1alpha1.ReplicationPreCopy{ConvergenceThreshold: resource.NewQuantity(64<<20, resource.BinarySI), MaxRounds: 4},
		Stage:          agentv1alpha1.ReplicationStagePreCopy}
	if diff := cmp.Diff(wantT, tgt.Spec); diff != "" {
		t.Errorf("target spec (-want +got):\n%s", diff)
	}

	// No source side before the receiver listens.
	if _, err := h.PreCopy(ctx, m, vol, opts); err != nil {
		t.Fatal(err)
	}
	var list agentv1alpha1.VolumeReplicationList
	if err := src.List(ctx, &list); err != nil || len(list.Items) != 0 {
		t.Fatalf("source VolumeReplication created before the receiver listens: %d", len(list.Items))
	}
	tgt.Status.Endpoint = "10.1.0.5:7400"
	if err := dst.Status().Update(ctx, tgt); err != nil {
		t.Fatal(err)
	}
	if _, err := h.PreCopy(ctx, m, vol, opts); err != nil {
		t.Fatal(err)
	}
	sv := getVR(t, src, "data-db-0-source-01234567")
	if sv.Spec.PeerAddress != "10.1.0.5:7400" || sv.Spec.NodeName != "src-node" || sv.Spec.PodName != "db-0" || sv.Spec.Role != agentv1alpha1.ReplicationRoleSource ||
		sv.Spec.TLSSecretRef != (corev1.SecretReference{Name: srcSecret.Name, Namespace: srcSecret.Namespace}) {
		t.Errorf("source spec = %+v", sv.Spec)
	}

	sv.Status = agentv1alpha1.VolumeReplicationStatus{Phase: agentv1alpha1.VolumeReplicationPreCopying, Round: 1, BytesSent: 900, LastDeltaBytes: 900, RateBytesPerSecond: 50}
	if err := src.Status().Update(ctx, sv); err != nil {
		t.Fatal(err)
	}
	rs, err = h.PreCopy(ctx, m, vol, opts)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(migration.ReplicationState{Rounds: 1, LastDeltaBytes: 900, PreCopyBytes: 900, BytesPerSecond: 50, PendingBytes: 900}, rs); diff != "" {
		t.Errorf("pre-copying (-want +got):\n%s", diff)
	}
	sv.Status.Phase, sv.Status.Round, sv.Status.LastDeltaBytes, sv.Status.BytesSent = agentv1alpha1.VolumeReplicationPreCopied, 3, 10, 1000
	if err := src.Status().Update(ctx, sv); err != nil {
		t.Fatal(err)
	}
	if rs, err = h.PreCopy(ctx, m, vol, opts); err != nil || !rs.PreCopyDone || rs.PendingBytes != 10 {
		t.Fatalf("pre-copied = %+v, %v", rs, err)
	}

	// Final sync: both sides move to Final; synced only once verified.
	rs, err = h.FinalSync(ctx, m, vol)
	if err != nil || rs.Synced {
		t.Fatalf("FinalSync = %+v, %v", rs, err)
	}
	if s, d := getVR(t, src, sv.Name).Spec.Stage, getVR(t, dst, tgt.Name).Spec.Stage; s != agentv1alpha1.ReplicationStageFinal || d != agentv1alpha1.ReplicationStageFinal {
		t.Errorf("stages = %s/%s, want Final", s, d)
	}
	sv = getVR(t, src, sv.Name)
	sv.Status.Phase, sv.Status.LastDeltaBytes, sv.Status.Checksum = agentv1alpha1.VolumeReplicationCompleted, 7, agentv1alpha1.ChecksumPending
	if err := src.Status().Update(ctx, sv); err != nil {
		t.Fatal(err)
	}
	if rs, _ = h.FinalSync(ctx, m, vol); rs.Synced {
		t.Errorf("synced before verification")
	}
	sv.Status.Checksum = agentv1alpha1.ChecksumMatch
	if err := src.Status().Update(ctx, sv); err != nil {
		t.Fatal(err)
	}
	if rs, err = h.FinalSync(ctx, m, vol); err != nil || !rs.Synced || rs.FinalDeltaBytes != 7 {
		t.Fatalf("verified = %+v, %v", rs, err)
	}

	// The restore pins the pods to the node that received the volume.
	if err := (&Restore{Clients: clients{"b": dst}}).Prepare(ctx, m, []migration.PodCheckpoint{{Pod: migration.Pod{Name: "db-0"}, Images: map[string]string{"db": "i"}}}); err != nil {
		t.Fatal(err)
	}
	pr := &agentv1alpha1.PodRestore{}
	if err := dst.Get(ctx, types.NamespacedName{Namespace: "ns", Name: "db-01234567"}, pr); err != nil || pr.Spec.NodeName != "c-good" {
		t.Errorf("PodRestore node = %q (%v), want c-good", pr.Spec.NodeName, err)
	}

	for i := 0; i < 3; i++ {
		done, err := h.Complete(ctx, m, vol)
		if err != nil {
			t.Fatal(err)
		}
		if done {
			break
		}
	}
	for _, c := range []client.Client{src, dst} {
		var vrs agentv1alpha1.VolumeReplicationList
		var secrets corev1.SecretList
		_ = c.List(ctx, &vrs)
		_ = c.List(ctx, &secrets)
		if len(vrs.Items)+len(secrets.Items) != 0 {
			t.Errorf("left after Complete: %d VolumeReplications, %d Secrets", len(vrs.Items), len(secrets.Items))
		}
	}
	if err := dst.Get(ctx, types.NamespacedName{Namespace: "ns", Name: "data-db-0"}, tpvc); err != nil {
		t.Errorf("target claim removed on success: %v", err)
	}
}

// preCopying is a replication whose target listens and whose source was
// asked to pre-copy.
func preCopying(t *testing.T) (src, dst client.Client, h *Replication) {
	t.Helper()
	ctx := context.Background()
	src, dst, h = replicationWorld()
	opts := migration.PreCopyOptions{MaxRounds: 5}
	if _, err := h.PreCopy(ctx, mig, vol, opts); err != nil {
		t.Fatal(err)
	}
	tgt := getVR(t, dst, "data-db-0-target-01234567")
	tgt.Status.Endpoint = "x:1"
	tgt.Status.Phase = agentv1alpha1.VolumeReplicationListening
	if err := dst.Status().Update(ctx, tgt); err != nil {
		t.Fatal(err)
	}
	if _, err := h.PreCopy(ctx, mig, vol, opts); err != nil {
		t.Fatal(err)
	}
	return src, dst, h
}

func TestReplicationAbortRemovesTargetData(t *testing.T) {
	ctx := context.Background()
	src, dst, h := preCopying(t)
	done, err := h.Abort(ctx, mig, vol, migration.AbortOptions{})
	if err != nil || done {
		t.Fatalf("Abort = %v, %v; want requested", done, err)
	}
	if !getVR(t, src, "data-db-0-source-01234567").Spec.Abort {
		t.Fatalf("source not asked to abort")
	}
	for i := 0; i < 6 && !done; i++ {
		for _, p := range []struct {
			cl   client.Client
			name string
		}{{src, "data-db-0-source-01234567"}, {dst, "data-db-0-target-01234567"}} {
			vr := &agentv1alpha1.VolumeReplication{}
			if err := p.cl.Get(ctx, types.NamespacedName{Namespace: "ns", Name: p.name}, vr); err == nil && vr.Spec.Abort {
				vr.Status.Phase = agentv1alpha1.VolumeReplicationAborted
				_ = p.cl.Status().Update(ctx, vr)
			}
		}
		if done, err = h.Abort(ctx, mig, vol, migration.AbortOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if !done {
		t.Fatal("Abort never finished")
	}
	if err := dst.Get(ctx, types.NamespacedName{Namespace: "ns", Name: "data-db-0"}, &corev1.PersistentVolumeClaim{}); err == nil {
		t.Errorf("pre-provisioned target claim left after abort")
	}
	if err := src.Get(ctx, types.NamespacedName{Namespace: "ns", Name: "data-db-0"}, &corev1.PersistentVolumeClaim{}); err != nil {
		t.Errorf("source claim touched by abort: %v", err)
	}
}

func TestReplicationFailureIsPermanent(t *testing.T) {
	ctx := context.Background()
	_, dst, h := replicationWorld()
	if _, err := h.PreCopy(ctx, mig, vol, migration.PreCopyOptions{MaxRounds: 1}); err != nil {
		t.Fatal(err)
	}
	tgt := getVR(t, dst, "data-db-0-target-01234567")
	tgt.Status.Phase, tgt.Status.Message = agentv1alpha1.VolumeReplicationFailed, "disk full"
	if err := dst.Status().Update(ctx, tgt); err != nil {
		t.Fatal(err)
	}
	if _, err := h.PreCopy(ctx, mig, vol, migration.PreCopyOptions{MaxRounds: 1}); !migration.IsStepFailed(err) {
		t.Fatalf("err = %v, want StepFailedError", err)
	}
}

// TestReplicationTargetTooSmallKeepsItsReason: a replication that failed
// because the target volume has no room fails the step with reason
// TargetVolumeTooSmall (what the LiveMigration shows), other failures with
// ReplicationFailed, whatever reason the agent wrote.
func TestReplicationTargetTooSmallKeepsItsReason(t *testing.T) {
	for _, tc := range []struct{ agentReason, want string }{
		{agentv1alpha1.ReasonTargetVolumeTooSmall, agentv1alpha1.ReasonTargetVolumeTooSmall},
		{agentv1alpha1.ReasonError, "ReplicationFailed"},
		{"SomethingElse", "ReplicationFailed"},
	} {
		t.Run(tc.agentReason, func(t *testing.T) {
			ctx := context.Background()
			_, dst, h := replicationWorld()
			if _, err := h.PreCopy(ctx, mig, vol, migration.PreCopyOptions{MaxRounds: 1}); err != nil {
				t.Fatal(err)
			}
			sv := getVR(t, dst, "data-db-0-target-01234567")
			sv.Status.Phase, sv.Status.Message = agentv1alpha1.VolumeReplicationFailed, "target volume too small: the source's data needs 3.0 GiB"
			sv.Status.Conditions = []metav1.Condition{{Type: agentv1alpha1.ConditionFailed, Status: metav1.ConditionTrue, Reason: tc.agentReason,
				Message: sv.Status.Message, LastTransitionTime: metav1.Now()}}
			if err := dst.Status().Update(ctx, sv); err != nil {
				t.Fatal(err)
			}
			_, err := h.PreCopy(ctx, mig, vol, migration.PreCopyOptions{MaxRounds: 1})
			var sf *migration.StepFailedError
			if !errors.As(err, &sf) || sf.Reason != tc.want || !strings.Contains(sf.Message, "3.0 GiB") {
				t.Fatalf("err = %#v, want a step failure with reason %s carrying the agent's message", err, tc.want)
			}
		})
	}
}

func keys(m map[string][]byte) []string {
	var k []string
	for n := range m {
		k = append(k, n)
	}
	return k
}

// A local source volume gets a local volume on the target node, under the
// configured root, pre-bound to the target claim; an abort removes both.
func TestReplicationLocalVolumeIsPreBoundOnTargetNode(t *testing.T) {
	ctx := context.Background()
	src, dst, h := replicationWorld()
	h.LocalRoot = "/srv/lm-volumes"
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: "src-pv"},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:               corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")},
			AccessModes:            []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			StorageClassName:       "local",
			PersistentVolumeSource: corev1.PersistentVolumeSource{Local: &corev1.LocalVolumeSource{Path: "/disks/db"}},
		},
	}
	if err := src.Create(ctx, pv); err != nil {
		t.Fatal(err)
	}
	pvc := &corev1.PersistentVolumeClaim{}
	if err := src.Get(ctx, types.NamespacedName{Namespace: "ns", Name: "data-db-0"}, pvc); err != nil {
		t.Fatal(err)
	}
	pvc.Spec.VolumeName = "src-pv"
	if err := src.Update(ctx, pvc); err != nil {
		t.Fatal(err)
	}
	if _, err := h.PreCopy(ctx, mig, vol, migration.PreCopyOptions{MaxRounds: 5}); err != nil {
		t.Fatal(err)
	}
	tpvc := &corev1.PersistentVolumeClaim{}
	if err := dst.Get(ctx, types.NamespacedName{Namespace: "ns", Name: "data-db-0"}, tpvc); err != nil {
		t.Fatalf("target claim: %v", err)
	}
	var pvs corev1.PersistentVolumeList
	if err := dst.List(ctx, &pvs); err != nil || len(pvs.Items) != 1 {
		t.Fatalf("target volumes: %d, %v; want 1", len(pvs.Items), err)
	}
	tpv := pvs.Items[0]
	if tpv.Spec.Local == nil || !strings.HasPrefix(tpv.Spec.Local.Path, "/srv/lm-volumes/ns/") {
		t.Errorf("target volume source = %+v, want a local path under /srv/lm-volumes/ns/", tpv.Spec.PersistentVolumeSource)
	}
	if tpv.Spec.ClaimRef == nil || tpv.Spec.ClaimRef.Name != "data-db-0" || tpv.Spec.ClaimRef.Namespace != "ns" {
		t.Errorf("target volume claimRef = %+v, want ns/data-db-0", tpv.Spec.ClaimRef)
	}
	if tpvc.Spec.VolumeName != tpv.Name {
		t.Errorf("target claim volumeName = %q, want the target volume %s", tpvc.Spec.VolumeName, tpv.Name)
	}
	terms := tpv.Spec.NodeAffinity.Required.NodeSelectorTerms
	if got := terms[0].MatchExpressions[0].Values; !cmp.Equal(got, []string{"c-good"}) {
		t.Errorf("target volume node affinity = %v, want the target node c-good", got)
	}
	if tpv.Labels[LabelMigrationUID] != string(mig.UID) || tpvc.Labels[LabelMigrationUID] != string(mig.UID) {
		t.Errorf("migration label: volume %q, claim %q", tpv.Labels[LabelMigrationUID], tpvc.Labels[LabelMigrationUID])
	}

	// Abort: the agents report Aborted, then claim and volume are deleted.
	done := false
	for i := 0; i < 6 && !done; i++ {
		var err error
		if done, err = h.Abort(ctx, mig, vol, migration.AbortOptions{}); err != nil {
			t.Fatal(err)
		}
		for _, cl := range []client.Client{src, dst} {
			var vrs agentv1alpha1.VolumeReplicationList
			_ = cl.List(ctx, &vrs)
			for _, vr := range vrs.Items {
				if vr.Spec.Abort {
					vr.Status.Phase = agentv1alpha1.VolumeReplicationAborted
					_ = cl.Status().Update(ctx, &vr)
				}
			}
		}
	}
	if !done {
		t.Fatal("Abort never finished")
	}
	if err := dst.Get(ctx, types.NamespacedName{Name: tpv.Name}, &corev1.PersistentVolume{}); err == nil {
		t.Errorf("target volume %s left after abort", tpv.Name)
	}
	if err := src.Get(ctx, types.NamespacedName{Name: "src-pv"}, &corev1.PersistentVolume{}); err != nil {
		t.Errorf("source volume touched by abort: %v", err)
	}
}

// TestReplicationForcedAbortDoesNotWaitForAgents: an agent that never
// reports the abort (its node is down) keeps a plain Abort waiting; a forced
// one deletes the objects and the claim created in the target anyway.
func TestReplicationForcedAbortDoesNotWaitForAgents(t *testing.T) {
	ctx := context.Background()
	src, dst, h := preCopying(t)
	// The source agent reports the abort; the target agent never does.
	for i := 0; i < 4; i++ {
		if done, err := h.Abort(ctx, mig, vol, migration.AbortOptions{}); err != nil || done {
			t.Fatalf("Abort = %v, %v; want waiting for the target agent", done, err)
		}
		vr := &agentv1alpha1.VolumeReplication{}
		if err := src.Get(ctx, types.NamespacedName{Namespace: "ns", Name: "data-db-0-source-01234567"}, vr); err == nil && vr.Spec.Abort {
			vr.Status.Phase = agentv1alpha1.VolumeReplicationAborted
			_ = src.Status().Update(ctx, vr)
		}
	}
	done := false
	for i := 0; i < 3 && !done; i++ {
		var err error
		if done, err = h.Abort(ctx, mig, vol, migration.AbortOptions{Force: true}); err != nil {
			t.Fatal(err)
		}
	}
	if !done {
		t.Fatal("forced Abort did not finish")
	}
	if err := dst.Get(ctx, types.NamespacedName{Namespace: "ns", Name: "data-db-0-target-01234567"}, &agentv1alpha1.VolumeReplication{}); err == nil {
		t.Error("target VolumeReplication left after a forced abort")
	}
	if err := dst.Get(ctx, types.NamespacedName{Namespace: "ns", Name: "data-db-0"}, &corev1.PersistentVolumeClaim{}); err == nil {
		t.Error("pre-provisioned target claim left after a forced abort")
	}
	if err := src.Get(ctx, types.NamespacedName{Namespace: "ns", Name: "data-db-0"}, &corev1.PersistentVolumeClaim{}); err != nil {
		t.Errorf("source claim touched by abort: %v", err)
	}
}
