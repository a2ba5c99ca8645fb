package snapshot

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strings"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/livemigrate/livemigrate/agent/replication/provision"
)

// AnnotationDefaultClass marks the default VolumeSnapshotClass of a driver.
const AnnotationDefaultClass = "snapshot.storage.kubernetes.io/is-default-class"

// ErrNotSupported means the claim's storage cannot be snapshotted.
var ErrNotSupported = errors.New("storage class has no CSI snapshot support")

// Manager creates and removes pre-copy bases. Client must know the
// snapshot.storage.k8s.io/v1 types.
type Manager struct {
	Client client.Client
}

// FindClass returns the VolumeSnapshotClass to snapshot claims of
// storageClass with, or ErrNotSupported.
func (m *Manager) FindClass(ctx context.Context, storageClass string) (string, error) {
	if storageClass == "" {
		return "", ErrNotSupported
	}
	sc := &storagev1.StorageClass{}
	if err := m.Client.Get(ctx, types.NamespacedName{Name: storageClass}, sc); err != nil {
		if apierrors.IsNotFound(err) {
			return "", fmt.Errorf("storage class %s: %w", storageClass, ErrNotSupported)
		}
		return "", fmt.Errorf("getting storage class %s: %w", storageClass, err)
	}
	list := &snapv1.VolumeSnapshotClassList{}
	if err := m.Client.List(ctx, list); err != nil {
		if apierrors.IsNotFound(err) || strings.Contains(err.Error(), "no matches for kind") {
			return "", fmt.Errorf("snapshot API not installed: %w", ErrNotSupported)
		}
		return "", fmt.Errorf("listing snapshot classes: %w", err)
	}
	var candidates []snapv1.VolumeSnapshotClass
	for _, c := range list.Items {
		if c.Driver == sc.Provisioner {
			candidates = append(candidates, c)
		}
	}
	if len(candidates) == 0 {
		return "", fmt.Errorf("no VolumeSnapshotClass for driver %s: %w", sc.Provisioner, ErrNotSupported)
	}
	sort.Slice(candidates, func(i, j int) bool {
		di, dj := candidates[i].Annotations[AnnotationDefaultClass] == "true", candidates[j].Annotations[AnnotationDefaultClass] == "true"
		if di != dj {
			return di
		}
		return candidates[i].Name < candidates[j].Name
	})
	return candidates[0].Name, nil
}

// SnapshotName is the name of the base snapshot of a claim in a migration.
func SnapshotName(migrationUID, claim string) string {
	sum := sha256.Sum256([]byte(migrationUID + "/" + claim))
	prefix := "lm-base-" + claim
	if len(prefix) > 200 {
		prefix = prefix[:200]
	}
	return prefix + "-" + hex.EncodeToString(sum[:6])
}

// BuildSnapshot is the VolumeSnapshot of claim for migrationUID.
func BuildSnapshot(claim *corev1.PersistentVolumeClaim, class, migrationUID string) *snapv1.VolumeSnapshot {
	return &snapv1.VolumeSnapshot{
		TypeMeta: metav1.TypeMeta{APIVersion: snapv1.SchemeGroupVersion.String(), Kind: "VolumeSnapshot"},
		ObjectMeta: metav1.ObjectMeta{
			Name:      SnapshotName(migrationUID, claim.Name),
			Namespace: claim.Namespace,
			Labels:    map[string]string{provision.LabelMigrationUID: migrationUID},
		},
		Spec: snapv1.VolumeSnapshotSpec{
			Source:                  snapv1.VolumeSnapshotSource{PersistentVolumeClaimName: ptr.To(claim.Name)},
			VolumeSnapshotClassName: ptr.To(class),
		},
	}
}

// EnsureSnapshot creates the snapshot if it does not exist and returns the
// current object.
func (m *Manager) EnsureSnapshot(ctx context.Context, claim *corev1.PersistentVolumeClaim, class, migrationUID string) (*snapv1.VolumeSnapshot, error) {
	want := BuildSnapshot(claim, class, migrationUID)
	got := &snapv1.VolumeSnapshot{}
	err := m.Client.Get(ctx, client.ObjectKeyFromObject(want), got)
	switch {
	case err == nil:
		if got.Labels[provision.LabelMigrationUID] != migrationUID {
			return nil, fmt.Errorf("snapshot %s exists and belongs to another migration", want.Name)
		}
		return got, nil
	case !apierrors.IsNotFound(err):
		return nil, fmt.Errorf("getting snapshot %s: %w", want.Name, err)
	}
	if err := m.Client.Create(ctx, want); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("creating snapshot %s: %w", want.Name, err)
	}
	return want, nil
}

// Ready reports whether the snapshot can be restored; an error reported by
// the snapshotter is returned as an error.
func Ready(s *snapv1.VolumeSnapshot) (bool, error) {
	if s.Status == nil {
		return false, nil
	}
	if s.Status.Error != nil && s.Status.Error.Message != nil {
		return false, fmt.Errorf("snapshot %s failed: %s", s.Name, *s.Status.Error.Message)
	}
	return s.Status.ReadyToUse != nil && *s.Status.ReadyToUse, nil
}

// BaseClaimName is the name of the claim restored from the base snapshot.
func BaseClaimName(snapshot string) string { return snapshot }

// BuildBaseClaim is a claim restored from the snapshot with the source
// claim's class, size and modes, to be mounted read-only by a reader pod.
func BuildBaseClaim(s *snapv1.VolumeSnapshot, source *corev1.PersistentVolumeClaim) *corev1.PersistentVolumeClaim {
	size := source.Spec.Resources.Requests[corev1.ResourceStorage]
	if s.Status != nil && s.Status.RestoreSize != nil && s.Status.RestoreSize.Cmp(size) > 0 {
		size = *s.Status.RestoreSize
	}
	return &corev1.PersistentVolumeClaim{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "PersistentVolumeClaim"},
		ObjectMeta: metav1.ObjectMeta{
			Name:      BaseClaimName(s.Name),
			Namespace: s.Namespace,
			Labels:    map[string]string{provision.LabelMigrationUID: s.Labels[provision.LabelMigrationUID]},
		},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      append([]corev1.PersistentVolumeAccessMode(nil), source.Spec.AccessModes...),
			StorageClassName: source.Spec.StorageClassName,
			VolumeMode:       source.Spec.VolumeMode,
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: size}},
			DataSource: &corev1.TypedLocalObjectReference{
				APIGroup: ptr.To(snapv1.GroupName),
				Kind:     "VolumeSnapshot",
				Name:     s.Name,
			},
		},
	}
}

// Cleanup deletes the base claim and snapshot of a claim, if present.
func (m *Manager) Cleanup(ctx context.Context, namespace, claim, migrationUID string) error {
	name := SnapshotName(migrationUID, claim)
	var errs []error
	for _, obj := range []client.Object{
		&corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: BaseClaimName(name), Namespace: namespace}},
		&snapv1.VolumeSnapshot{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace}},
	} {
		if err := m.Client.Delete(ctx, obj); err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
