package snapshot

import (
	"context"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/livemigrate/livemigrate/agent/replication/provision"
)

func newClient(t *testing.T, objs ...client.Object) client.Client {
	t.Helper()
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	if err := snapv1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	return fake.NewClientBuilder().WithScheme(s).WithObjects(objs...).Build()
}

func sc(name, provisioner string) *storagev1.StorageClass {
	return &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: name}, Provisioner: provisioner}
}

func vsc(name, driver string, def bool) *snapv1.VolumeSnapshotClass {
	c := &snapv1.VolumeSnapshotClass{ObjectMeta: metav1.ObjectMeta{Name: name}, Driver: driver, DeletionPolicy: snapv1.VolumeSnapshotContentDelete}
	if def {
		c.Annotations = map[string]string{AnnotationDefaultClass: "true"}
	}
	return c
}

func TestFindClass(t *testing.T) {
	tests := []struct {
		name      string
		objs      []client.Object
		class     string
		want      string
		unsupport bool
	}{
		{name: "default class of the driver wins", class: "fast",
			objs: []client.Object{sc("fast", "ebs.csi.aws.com"), vsc("a", "ebs.csi.aws.com", false), vsc("b", "ebs.csi.aws.com", true), vsc("c", "other", true)}, want: "b"},
		{name: "only class of the driver", class: "fast",
			objs: []client.Object{sc("fast", "ebs.csi.aws.com"), vsc("z", "ebs.csi.aws.com", false)}, want: "z"},
		{name: "no class for the driver", class: "local",
			objs: []client.Object{sc("local", "kubernetes.io/no-provisioner"), vsc("b", "ebs.csi.aws.com", true)}, unsupport: true},
		{name: "unknown storage class", class: "missing", unsupport: true},
		{name: "no storage class", class: "", unsupport: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := &Manager{Client: newClient(t, tt.objs...)}
			got, err := m.FindClass(context.Background(), tt.class)
			if tt.unsupport {
				if !errors.Is(err, ErrNotSupported) {
					t.Fatalf("err = %v, want ErrNotSupported", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("class = %q, want %q", got, tt.want)
			}
		})
	}
}

func claim() *corev1.PersistentVolumeClaim {
	return &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: "data-pg-0", Namespace: "db"},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			StorageClassName: ptr.To("fast"),
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("5Gi")}},
		},
	}
}

func TestEnsureSnapshotIdempotent(t *testing.T) {
	c := newClient(t)
	m := &Manager{Client: c}
	ctx := context.Background()
	s1, err := m.EnsureSnapshot(ctx, claim(), "b", "uid-1")
	if err != nil {
		t.Fatal(err)
	}
	s2, err := m.EnsureSnapshot(ctx, claim(), "b", "uid-1")
	if err != nil {
		t.Fatal(err)
	}
	if s1.Name != s2.Name {
		t.Errorf("second call made another snapshot: %s vs %s", s1.Name, s2.Name)
	}
	list := &snapv1.VolumeSnapshotList{}
	if err := c.List(ctx, list); err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 1 {
		t.Fatalf("%d snapshots, want 1", len(list.Items))
	}
	got := list.Items[0]
	if diff := cmp.Diff(snapv1.VolumeSnapshotSpec{
		Source:                  snapv1.VolumeSnapshotSource{PersistentVolumeClaimName: ptr.To("data-pg-0")},
		VolumeSnapshotClassName: ptr.To("b"),
	}, got.Spec); diff != "" {
		t.Errorf("spec (-want +got):\n%s", diff)
	}
	if got.Labels[provision.LabelMigrationUID] != "uid-1" {
		t.Errorf("labels = %v", got.Labels)
	}
	// A snapshot of the same name from another migration is not adopted.
	other := got.DeepCopy()
	other.Labels[provision.LabelMigrationUID] = "uid-2"
	if err := c.Update(ctx, other); err != nil {
		t.Fatal(err)
	}
	if _, err := m.EnsureSnapshot(ctx, claim(), "b", "uid-1"); err == nil {
		t.Error("adopted a snapshot of another migration")
	}
}

func TestReady(t *testing.T) {
	tests := []struct {
		name    string
		status  *snapv1.VolumeSnapshotStatus
		want    bool
		wantErr bool
	}{
		{name: "no status"},
		{name: "not ready", status: &snapv1.VolumeSnapshotStatus{ReadyToUse: ptr.To(false)}},
		{name: "ready", status: &snapv1.VolumeSnapshotStatus{ReadyToUse: ptr.To(true)}, want: true},
		{name: "error", status: &snapv1.VolumeSnapshotStatus{Error: &snapv1.VolumeSnapshotError{Message: ptr.To("quota")}}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Ready(&snapv1.VolumeSnapshot{Status: tt.status})
			if got != tt.want || (err != nil) != tt.wantErr {
				t.Errorf("Ready() = %v, %v; want %v, err %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestBuildBaseClaimAndCleanup(t *testing.T) {
	s := BuildSnapshot(claim(), "b", "uid-1")
	s.Status = &snapv1.VolumeSnapshotStatus{ReadyToUse: ptr.To(true), RestoreSize: ptr.To(resource.MustParse("6Gi"))}
	base := BuildBaseClaim(s, claim())
	want := corev1.PersistentVolumeClaimSpec{
		AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
		StorageClassName: ptr.To("fast"),
		Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("6Gi")}},
		DataSource:       &corev1.TypedLocalObjectReference{APIGroup: ptr.To("snapshot.storage.k8s.io"), Kind: "VolumeSnapshot", Name: s.Name},
	}
	if diff := cmp.Diff(want, base.Spec); diff != "" {
		t.Errorf("base claim spec (-want +got):\n%s", diff)
	}

	c := newClient(t, s, base)
	m := &Manager{Client: c}
	if err := m.Cleanup(context.Background(), "db", "data-pg-0", "uid-1"); err != nil {
		t.Fatal(err)
	}
	if err := m.Cleanup(context.Background(), "db", "data-pg-0", "uid-1"); err != nil {
		t.Fatalf("second cleanup: %v", err)
	}
	snaps := &snapv1.VolumeSnapshotList{}
	claims := &corev1.PersistentVolumeClaimList{}
	_ = c.List(context.Background(), snaps)
	_ = c.List(context.Background(), claims)
	if len(snaps.Items)+len(claims.Items) != 0 {
		t.Errorf("left %d snapshots and %d claims", len(snaps.Items), len(claims.Items))
	}
}
