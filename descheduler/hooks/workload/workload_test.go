package workload

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
	"github.com/livemigrate/livemigrate/descheduler/migration"
	"github.com/livemigrate/livemigrate/test/builder"
)

type clients map[string]client.Client

func (c clients) Get(_ context.Context, name string) (client.Client, error) { return c[name], nil }

var sts = lmv1alpha1.WorkloadReference{APIVersion: "apps/v1", Kind: "StatefulSet", Name: "db"}

func statefulSet(replicas, ready int32) *appsv1.StatefulSet {
	return &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "db", Generation: 2},
		Spec:       appsv1.StatefulSetSpec{Replicas: ptr.To(replicas), Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}}},
		Status:     appsv1.StatefulSetStatus{ObservedGeneration: 2, ReadyReplicas: ready},
	}
}

func pod(name string, phase corev1.PodPhase, claim string) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, Labels: map[string]string{"app": "db"}},
		Spec:       corev1.PodSpec{NodeName: "n-" + name, Containers: []corev1.Container{{Name: "db"}, {Name: "exporter"}}},
		Status:     corev1.PodStatus{Phase: phase},
	}
	if claim != "" {
		p.Spec.Volumes = []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: claim}}}}
	}
	return p
}

func TestInspect(t *testing.T) {
	other := pod("web-0", corev1.PodRunning, "")
	other.Labels = map[string]string{"app": "web"}
	pvc := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "data-db-0"},
		Spec: corev1.PersistentVolumeClaimSpec{StorageClassName: ptr.To("fast")}}
	cl := fake.NewClientBuilder().WithScheme(builder.Scheme()).WithObjects(
		statefulSet(2, 2), pod("db-1", corev1.PodRunning, ""), pod("db-0", corev1.PodRunning, "data-db-0"),
		pod("db-2", corev1.PodPending, ""), other, pvc).Build()
	h := &Hook{Clients: clients{"a": cl}}
	got, err := h.Inspect(context.Background(), "a", "ns", sts)
	if err != nil {
		t.Fatal(err)
	}
	want := migration.WorkloadInfo{
		Pods: []migration.Pod{
			{Name: "db-0", Node: "n-db-0", Containers: []string{"db", "exporter"}},
			{Name: "db-1", Node: "n-db-1", Containers: []string{"db", "exporter"}},
		},
		Volumes: []migration.Volume{{ClaimName: "data-db-0", StorageClass: "fast", Pod: "db-0", Node: "n-db-0"}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Inspect (-want +got):\n%s", diff)
	}
	if _, err := h.Inspect(context.Background(), "a", "ns", lmv1alpha1.WorkloadReference{Kind: "StatefulSet", Name: "nope"}); !migration.IsStepFailed(err) {
		t.Errorf("missing workload: err = %v, want StepFailedError", err)
	}
	if _, err := h.Inspect(context.Background(), "a", "ns", lmv1alpha1.WorkloadReference{Kind: "DaemonSet", Name: "db"}); !migration.IsStepFailed(err) {
		t.Errorf("unsupported kind: err = %v, want StepFailedError", err)
	}
}

func TestReady(t *testing.T) {
	cases := map[string]struct {
		obj  client.Object
		ref  lmv1alpha1.WorkloadReference
		want bool
	}{
		"statefulset ready":     {statefulSet(2, 2), sts, true},
		"statefulset not ready": {statefulSet(2, 1), sts, false},
		"deployment ready": {&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "db", Generation: 1},
			Spec:   appsv1.DeploymentSpec{Replicas: ptr.To[int32](1)},
			Status: appsv1.DeploymentStatus{ObservedGeneration: 1, ReadyReplicas: 1, UpdatedReplicas: 1}},
			lmv1alpha1.WorkloadReference{Kind: "Deployment", Name: "db"}, true},
		"deployment stale generation": {&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "db", Generation: 2},
			Spec:   appsv1.DeploymentSpec{Replicas: ptr.To[int32](1)},
			Status: appsv1.DeploymentStatus{ObservedGeneration: 1, ReadyReplicas: 1, UpdatedReplicas: 1}},
			lmv1alpha1.WorkloadReference{Kind: "Deployment", Name: "db"}, false},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			cl := fake.NewClientBuilder().WithScheme(builder.Scheme()).WithObjects(tc.obj).Build()
			got, err := (&Hook{Clients: clients{"b": cl}}).Ready(context.Background(), "b", "ns", tc.ref)
			if err != nil || got != tc.want {
				t.Errorf("Ready = %v, %v; want %v", got, err, tc.want)
			}
		})
	}
	cl := fake.NewClientBuilder().WithScheme(builder.Scheme()).Build()
	if got, err := (&Hook{Clients: clients{"b": cl}}).Ready(context.Background(), "b", "ns", sts); got || err != nil {
		t.Errorf("absent workload: Ready = %v, %v; want false, nil", got, err)
	}
}

func TestRemove(t *testing.T) {
	cl := fake.NewClientBuilder().WithScheme(builder.Scheme()).WithObjects(statefulSet(1, 1)).Build()
	h := &Hook{Clients: clients{"b": cl}}
	gone, err := h.Remove(context.Background(), "b", "ns", sts)
	if err != nil || gone {
		t.Fatalf("first Remove = %v, %v; want deletion requested, not gone yet", gone, err)
	}
	gone, err = h.Remove(context.Background(), "b", "ns", sts)
	if err != nil || !gone {
		t.Fatalf("second Remove = %v, %v; want gone", gone, err)
	}
}

// A workload deleted in the background (as Karmada does when its Work
// goes) is not gone while its pods or ReplicaSets are left: they may run.
func TestRemoveWaitsForPodsLeftByABackgroundDeletion(t *testing.T) {
	owned := func(o client.Object, kind, name string) client.Object {
		o.SetOwnerReferences([]metav1.OwnerReference{{APIVersion: "apps/v1", Kind: kind, Name: name, UID: types.UID("u-" + name)}})
		return o
	}
	dep := lmv1alpha1.WorkloadReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "web"}
	cases := []struct {
		name string
		ref  lmv1alpha1.WorkloadReference
		objs []client.Object
		gone bool
	}{
		{"statefulset pod left", sts, []client.Object{owned(pod("db-0", corev1.PodRunning, ""), "StatefulSet", "db")}, false},
		{"deployment pod left", dep, []client.Object{owned(pod("web-7d9f8b-x2x", corev1.PodRunning, ""), "ReplicaSet", "web-7d9f8b")}, false},
		{"deployment replicaset left", dep, []client.Object{owned(&appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web-7d9f8b"}}, "Deployment", "web")}, false},
		{"other workloads' pods only", dep, []client.Object{
			owned(pod("web-api-5c4-aa", corev1.PodRunning, ""), "ReplicaSet", "web-api-5c4"),
			owned(pod("db-0", corev1.PodRunning, ""), "StatefulSet", "db"),
		}, true},
		{"nothing left", sts, nil, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cl := fake.NewClientBuilder().WithScheme(builder.Scheme()).WithObjects(tc.objs...).Build()
			h := &Hook{Clients: clients{"b": cl}}
			gone, err := h.Remove(context.Background(), "b", "ns", tc.ref)
			if err != nil {
				t.Fatal(err)
			}
			if gone != tc.gone {
				t.Errorf("gone = %v, want %v", gone, tc.gone)
			}
		})
	}
}
