package integration

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	policyv1alpha1 "github.com/karmada-io/karmada/pkg/apis/policy/v1alpha1"
	workv1alpha2 "github.com/karmada-io/karmada/pkg/apis/work/v1alpha2"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	agentv1alpha1 "github.com/livemigrate/livemigrate/api/agent/v1alpha1"
	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
)

// withVolume adds a claim "data" mounted by the pod.
type option func(*corev1.Pod)

func withVolume(p *corev1.Pod) {
	p.Spec.Volumes = []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{
		PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data"}}}}
}

// workload creates, in a fresh namespace, a Deployment "app" running one
// pod on node-1 and its ResourceBinding placing it on cluster a.
func workload(t *testing.T, ctx context.Context, ns string, opts ...option) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(k.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
	labels := map[string]string{"app": "app"}
	ctr := corev1.Container{Name: "app", Image: "busybox", Resources: corev1.ResourceRequirements{
		Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("32Mi")}}}
	must(k.Create(ctx, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "app"},
		Spec: appsv1.DeploymentSpec{Replicas: ptr.To[int32](1), Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{Containers: []corev1.Container{ctr}}}}}))
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "app-0", Labels: labels},
		Spec: corev1.PodSpec{NodeName: "node-1", Containers: []corev1.Container{ctr}}}
	for _, o := range opts {
		o(pod)
	}
	if len(pod.Spec.Volumes) > 0 {
		must(k.Create(ctx, &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "data"},
			Spec: corev1.PersistentVolumeClaimSpec{AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
				StorageClassName: ptr.To("standard"),
				Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}}}}))
	}
	must(k.Create(ctx, pod))
	pod.Status.Phase = corev1.PodRunning
	must(k.Status().Update(ctx, pod))
	must(k.Create(ctx, &workv1alpha2.ResourceBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "app-deployment"},
		Spec: workv1alpha2.ResourceBindingSpec{
			Resource: workv1alpha2.ObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Namespace: ns, Name: "app"},
			Replicas: 1,
			Placement: &policyv1alpha1.Placement{
				ReplicaScheduling: &policyv1alpha1.ReplicaSchedulingStrategy{ReplicaSchedulingType: policyv1alpha1.ReplicaSchedulingTypeDivided,
					ReplicaDivisionPreference: policyv1alpha1.ReplicaDivisionPreferenceAggregated},
				SpreadConstraints: []policyv1alpha1.SpreadConstraint{{SpreadByField: policyv1alpha1.SpreadByFieldCluster, MaxGroups: 1, MinGroups: 1}},
			},
			Clusters: []workv1alpha2.TargetCluster{{Name: "a", Replicas: 1}},
		},
	}))
}

func migration(ns, name, target string) *lmv1alpha1.LiveMigration {
	return &lmv1alpha1.LiveMigration{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: lmv1alpha1.LiveMigrationSpec{WorkloadRef: lmv1alpha1.WorkloadReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "app"},
			TargetCluster: target}}
}

// waitPhase waits until the migration reaches the phase.
func waitPhase(t *testing.T, ctx context.Context, ns, name string, phase lmv1alpha1.LiveMigrationPhase) *lmv1alpha1.LiveMigration {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	lm := &lmv1alpha1.LiveMigration{}
	for time.Now().Before(deadline) {
		if err := k.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, lm); err == nil {
			if lm.Status.Phase == phase {
				return lm
			}
			if lm.Status.Phase.IsTerminal() {
				t.Fatalf("%s/%s ended %s, want %s; failure: %+v", ns, name, lm.Status.Phase, phase, lm.Status.Failure)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s/%s did not reach %s; status: %+v", ns, name, phase, lm.Status)
	return nil
}

func binding(t *testing.T, ctx context.Context, ns string) *workv1alpha2.ResourceBinding {
	t.Helper()
	rb := &workv1alpha2.ResourceBinding{}
	if err := k.Get(ctx, client.ObjectKey{Namespace: ns, Name: "app-deployment"}, rb); err != nil {
		t.Fatal(err)
	}
	return rb
}

func TestMigrationSucceeds(t *testing.T) {
	need(t)
	ctx := context.Background()
	workload(t, ctx, "succeed")
	if err := k.Create(ctx, migration("succeed", "m", "b")); err != nil {
		t.Fatal(err)
	}
	lm := waitPhase(t, ctx, "succeed", "m", lmv1alpha1.PhaseSucceeded)
	st := lm.Status
	if st.SourceCluster != "a" || st.TargetCluster != "b" {
		t.Errorf("source/target = %s/%s", st.SourceCluster, st.TargetCluster)
	}
	if st.Downtime == nil || st.Downtime.Duration <= 0 || st.Downtime.Duration > 30*time.Second {
		t.Errorf("downtime = %v", st.Downtime)
	}
	if st.Bytes.Memory != 4096 {
		t.Errorf("memory bytes = %d, want 4096", st.Bytes.Memory)
	}
	want := []lmv1alpha1.LiveMigrationPhase{}
	for _, p := range st.PhaseTransitions {
		want = append(want, p.Phase)
	}
	if diff := cmp.Diff([]lmv1alpha1.LiveMigrationPhase{"Pending", "Planning", "PreCopy", "Checkpointing", "Rebinding",
		"FinalSync", "Transfer", "Restoring", "Verifying", "Cleanup", "Succeeded"}, want); diff != "" {
		t.Errorf("phases (-want +got):\n%s", diff)
	}
	rb := binding(t, ctx, "succeed")
	if diff := cmp.Diff([]workv1alpha2.TargetCluster{{Name: "b", Replicas: 1}}, rb.Spec.Clusters); diff != "" {
		t.Errorf("binding clusters (-want +got):\n%s", diff)
	}
	if len(rb.Spec.GracefulEvictionTasks) != 0 {
		t.Errorf("eviction tasks left: %+v", rb.Spec.GracefulEvictionTasks)
	}
	var prs agentv1alpha1.PodRestoreList
	if err := k.List(ctx, &prs, client.InNamespace("succeed")); err != nil || len(prs.Items) != 0 {
		t.Errorf("PodRestores left: %d (%v)", len(prs.Items), err)
	}
	// The finalizer is gone once Succeeded.
	deadline := time.Now().Add(30 * time.Second)
	for len(lm.Finalizers) > 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		_ = k.Get(ctx, client.ObjectKeyFromObject(lm), lm)
	}
	if len(lm.Finalizers) > 0 {
		t.Errorf("finalizers left: %v", lm.Finalizers)
	}
}

func TestMigrationWithVolumeSucceeds(t *testing.T) {
	need(t)
	ctx := context.Background()
	workload(t, ctx, "volume", withVolume)
	if err := k.Create(ctx, migration("volume", "m", "b")); err != nil {
		t.Fatal(err)
	}
	lm := waitPhase(t, ctx, "volume", "m", lmv1alpha1.PhaseSucceeded)
	st := lm.Status
	wantVols := []lmv1alpha1.VolumeMigrationStatus{{ClaimName: "data", StorageClass: "standard", PodName: "app-0", SourceNode: "node-1",
		Rounds: 2, LastDeltaBytes: 2048, PreCopyBytes: 1<<20 + 2048, FinalDeltaBytes: 512, Synced: true}}
	if diff := cmp.Diff(wantVols, st.Volumes); diff != "" {
		t.Errorf("volumes (-want +got):\n%s", diff)
	}
	if st.Bytes.FinalDelta != 512 || st.Bytes.VolumePreCopy == 0 {
		t.Errorf("bytes = %+v", st.Bytes)
	}
	if st.MeasuredBandwidth == nil || st.MeasuredBandwidth.Value() != 50<<20 {
		t.Errorf("measured bandwidth = %v, want 50Mi", st.MeasuredBandwidth)
	}
	var vrs agentv1alpha1.VolumeReplicationList
	if err := k.List(ctx, &vrs, client.InNamespace("volume")); err != nil || len(vrs.Items) != 0 {
		t.Errorf("VolumeReplications left after success: %d (%v)", len(vrs.Items), err)
	}
	if left := credentials(t, ctx, lm.UID); len(left) != 0 {
		t.Errorf("replication credentials left after success: %v", left)
	}
	if err := k.Get(ctx, client.ObjectKey{Namespace: "volume", Name: "data"}, &corev1.PersistentVolumeClaim{}); err != nil {
		t.Errorf("claim gone after success: %v", err)
	}
}

func TestAbortRemovesTargetBeforeThaw(t *testing.T) {
	need(t)
	ctx := context.Background()
	workload(t, ctx, "abort")
	sim.stall("abort")
	if err := k.Create(ctx, migration("abort", "m", "b")); err != nil {
		t.Fatal(err)
	}
	lm := waitPhase(t, ctx, "abort", "m", lmv1alpha1.PhaseRestoring)
	patch := client.RawPatch("application/merge-patch+json", []byte(`{"spec":{"abort":true}}`))
	if err := k.Patch(ctx, lm, patch); err != nil {
		t.Fatal(err)
	}
	lm = waitPhase(t, ctx, "abort", "m", lmv1alpha1.PhaseFailed)
	if f := lm.Status.Failure; f == nil || f.Phase != lmv1alpha1.PhaseRestoring || f.Reason != "Aborted" {
		t.Fatalf("failure = %+v", lm.Status.Failure)
	}
	seen, withWorkload := sim.thawedWithWorkload("abort")
	if !seen || withWorkload {
		t.Errorf("thaw requested = %v, while the target workload still existed = %v; want requested after it was removed", seen, withWorkload)
	}
	rb := binding(t, ctx, "abort")
	if diff := cmp.Diff([]workv1alpha2.TargetCluster{{Name: "a", Replicas: 1}}, rb.Spec.Clusters); diff != "" {
		t.Errorf("binding not reverted (-want +got):\n%s", diff)
	}
	if len(rb.Spec.GracefulEvictionTasks) != 0 {
		t.Errorf("eviction tasks left: %+v", rb.Spec.GracefulEvictionTasks)
	}
}

func TestAbortWithVolumeStopsReplication(t *testing.T) {
	need(t)
	ctx := context.Background()
	workload(t, ctx, "abort-volume", withVolume)
	sim.stall("abort-volume")
	if err := k.Create(ctx, migration("abort-volume", "m", "b")); err != nil {
		t.Fatal(err)
	}
	lm := waitPhase(t, ctx, "abort-volume", "m", lmv1alpha1.PhaseRestoring)
	if err := k.Patch(ctx, lm, client.RawPatch("application/merge-patch+json", []byte(`{"spec":{"abort":true}}`))); err != nil {
		t.Fatal(err)
	}
	lm = waitPhase(t, ctx, "abort-volume", "m", lmv1alpha1.PhaseFailed)
	var vrs agentv1alpha1.VolumeReplicationList
	if err := k.List(ctx, &vrs, client.InNamespace("abort-volume")); err != nil || len(vrs.Items) != 0 {
		t.Errorf("VolumeReplications left after abort: %d (%v)", len(vrs.Items), err)
	}
	if left := credentials(t, ctx, lm.UID); len(left) != 0 {
		t.Errorf("replication credentials left after abort: %v", left)
	}
	// The claim was the source's (same API server), not one the migration
	// created: it stays.
	if err := k.Get(ctx, client.ObjectKey{Namespace: "abort-volume", Name: "data"}, &corev1.PersistentVolumeClaim{}); err != nil {
		t.Errorf("source claim removed by the abort: %v", err)
	}
}

func TestAdmission(t *testing.T) {
	need(t)
	ctx := context.Background()
	workload(t, ctx, "admission")
	sim.stall("admission")
	cases := []struct {
		lm   *lmv1alpha1.LiveMigration
		want string
	}{
		{migration("admission", "to-source", "a"), `spec.targetCluster: Invalid value: "a": Deployment app already runs on a`},
		{migration("admission", "unknown", "zz"), `spec.targetCluster: Invalid value: "zz": is not a member cluster`},
		{func() *lmv1alpha1.LiveMigration {
			m := migration("admission", "kind", "b")
			m.Spec.WorkloadRef.Kind = "DaemonSet"
			return m
		}(),
			`spec.workloadRef.kind: Invalid value: "DaemonSet": must be Deployment or StatefulSet`},
		{func() *lmv1alpha1.LiveMigration {
			m := migration("admission", "day", "b")
			m.Spec.Timeouts = &lmv1alpha1.PhaseTimeouts{Restoring: &metav1.Duration{Duration: 25 * time.Hour}}
			return m
		}(),
			`spec.timeouts.restoring: Invalid value: "25h0m0s": ` + lmv1alpha1.MsgTimeout},
		// The descheduler runs with its feature gates at their defaults.
		{func() *lmv1alpha1.LiveMigration {
			m := migration("admission", "postcopy", "b")
			m.Spec.MemoryTransfer = lmv1alpha1.MemoryTransferPostCopy
			return m
		}(),
			`spec.memoryTransfer: Forbidden: PostCopy needs the feature gate PostCopyMigration, which is off: ` +
				`start the descheduler and the agents with --feature-gates=PostCopyMigration=true, or use StopAndCopy`},
	}
	for _, tc := range cases {
		err := k.Create(ctx, tc.lm)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("create %s: err = %v, want %q", tc.lm.Name, err, tc.want)
		}
	}
	first := migration("admission", "first", "b")
	if err := k.Create(ctx, first); err != nil {
		t.Fatal(err)
	}
	if first.Spec.MemoryTransfer != lmv1alpha1.MemoryTransferStopAndCopy {
		t.Errorf("spec.memoryTransfer = %q as stored, want the default %s", first.Spec.MemoryTransfer, lmv1alpha1.MemoryTransferStopAndCopy)
	}
	err := k.Create(ctx, migration("admission", "second", "b"))
	if err == nil || !strings.Contains(err.Error(), "LiveMigration first is already migrating Deployment app") {
		t.Errorf("second active migration: err = %v", err)
	}
	// CEL: immutable spec, abort cannot be unset.
	for _, p := range []struct{ patch, want string }{
		{`{"spec":{"targetCluster":"a"}}`, "spec.targetCluster is immutable"},
		{`{"spec":{"abort":true}}`, ""},
		{`{"spec":{"abort":false}}`, "spec.abort cannot be unset once set"},
	} {
		err := k.Patch(ctx, first, client.RawPatch("application/merge-patch+json", []byte(p.patch)))
		switch {
		case p.want == "" && err != nil:
			t.Errorf("patch %s: %v", p.patch, err)
		case p.want != "" && (err == nil || !strings.Contains(err.Error(), p.want)):
			t.Errorf("patch %s: err = %v, want %q", p.patch, err, p.want)
		}
	}
	waitPhase(t, ctx, "admission", "first", lmv1alpha1.PhaseFailed)
}
