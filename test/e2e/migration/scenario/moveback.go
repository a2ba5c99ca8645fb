package scenario

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
)

// The marks of a claim retained in its source cluster after a successful
// migration (descheduler/hooks/agentcr).
const (
	labelRetained         = "livemigrate.io/retained"
	annotationRetainedFor = "livemigrate.io/retained-for"
)

// ClaimName is the claim of the app's first pod.
func (a *App) ClaimName() string { return "data-" + a.Name + "-0" }

// Claim reads the app's claim in a cluster, with its volume (nil when
// unbound or gone).
func (a *App) Claim(ctx context.Context, cluster string) (*corev1.PersistentVolumeClaim, *corev1.PersistentVolume, error) {
	cs := a.Env.Members[cluster].Client.CoreV1()
	c, err := cs.PersistentVolumeClaims(a.Namespace).Get(ctx, a.ClaimName(), metav1.GetOptions{})
	if err != nil {
		return nil, nil, fmt.Errorf("claim %s in %s: %w", a.ClaimName(), cluster, err)
	}
	if c.Spec.VolumeName == "" {
		return c, nil, nil
	}
	pv, err := cs.PersistentVolumes().Get(ctx, c.Spec.VolumeName, metav1.GetOptions{})
	if err != nil {
		return c, nil, nil
	}
	return c, pv, nil
}

// CheckRetained checks that the app's claim in a cluster is the copy a
// successful migration retained for it: marked (label and the workload it
// is a copy of), not being deleted.
func (a *App) CheckRetained(ctx context.Context, cluster string) (*corev1.PersistentVolumeClaim, error) {
	c, _, err := a.Claim(ctx, cluster)
	if err != nil {
		return nil, err
	}
	want := a.Kind + ".apps/" + a.Name
	if c.Labels[labelRetained] != "true" || c.Annotations[annotationRetainedFor] != want || c.DeletionTimestamp != nil {
		return c, fmt.Errorf("claim %s in %s is not retained for %s: labels %v, annotations %v, deleting %v",
			c.Name, cluster, want, c.Labels, c.Annotations, c.DeletionTimestamp != nil)
	}
	return c, nil
}

// CheckDeleted waits until the claim (the one given: its UID) is gone from
// the cluster, and the volume it was bound to when that volume was one a
// migration provisioned (labelled); another volume must still be there.
func (a *App) CheckDeleted(ctx context.Context, cluster string, c *corev1.PersistentVolumeClaim, pv *corev1.PersistentVolume) error {
	cs := a.Env.Members[cluster].Client.CoreV1()
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	return poll(ctx, "claim "+c.Name+" and its volume deleted in "+cluster, func() (bool, string, error) {
		got, err := cs.PersistentVolumeClaims(c.Namespace).Get(ctx, c.Name, metav1.GetOptions{})
		switch {
		case err == nil && got.UID == c.UID:
			return false, fmt.Sprintf("claim still there (deleting: %v)", got.DeletionTimestamp != nil), nil
		case err != nil && !apierrors.IsNotFound(err):
			return false, err.Error(), nil
		}
		if pv == nil {
			return true, "", nil
		}
		_, err = cs.PersistentVolumes().Get(ctx, pv.Name, metav1.GetOptions{})
		ours := pv.Labels[labelMigrationUID] != ""
		switch {
		case ours && err == nil:
			return false, "volume " + pv.Name + " a migration provisioned still there", nil
		case !ours && apierrors.IsNotFound(err):
			return false, "", fmt.Errorf("volume %s, which no migration provisioned, was deleted", pv.Name)
		}
		return true, "", nil
	})
}

// Annotate sets an annotation on the LiveMigration name of the app's
// namespace, waiting for it to be created.
func (a *App) Annotate(ctx context.Context, name, key, value string) error {
	lm := &lmv1alpha1.LiveMigration{}
	if err := poll(ctx, "LiveMigration "+name, func() (bool, string, error) {
		err := a.Env.Karmada.CR.Get(ctx, client.ObjectKey{Namespace: a.Namespace, Name: name}, lm)
		if err != nil {
			return false, err.Error(), nil
		}
		return true, "", nil
	}); err != nil {
		return err
	}
	patch := client.MergeFrom(lm.DeepCopy())
	if lm.Annotations == nil {
		lm.Annotations = map[string]string{}
	}
	lm.Annotations[key] = value
	if err := a.Env.Karmada.CR.Patch(ctx, lm, patch); err != nil {
		return fmt.Errorf("annotating LiveMigration %s: %w", name, err)
	}
	a.Env.Logf("LiveMigration %s annotated %s=%s in phase %q", name, key, value, lm.Status.Phase)
	return nil
}

// CreateUsersClaim creates, in a cluster, a claim of the app's claim name
// as a user would (no volume, no migration's marks).
func (a *App) CreateUsersClaim(ctx context.Context, cluster string) (*corev1.PersistentVolumeClaim, error) {
	c := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: a.Namespace, Name: a.ClaimName()},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			StorageClassName: ptr.To(StorageClass),
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
		},
	}
	m := a.Env.Members[cluster]
	if _, err := m.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: a.Namespace}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, err
	}
	if err := a.Env.ensureStorageClass(ctx, m); err != nil {
		return nil, err
	}
	return m.Client.CoreV1().PersistentVolumeClaims(a.Namespace).Create(ctx, c, metav1.CreateOptions{})
}

// DeleteClaim deletes the app's claim in a cluster and waits until it is
// gone.
func (a *App) DeleteClaim(ctx context.Context, cluster string) error {
	cs := a.Env.Members[cluster].Client.CoreV1()
	if err := cs.PersistentVolumeClaims(a.Namespace).Delete(ctx, a.ClaimName(), metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	return poll(ctx, "claim "+a.ClaimName()+" gone from "+cluster, func() (bool, string, error) {
		_, err := cs.PersistentVolumeClaims(a.Namespace).Get(ctx, a.ClaimName(), metav1.GetOptions{})
		return apierrors.IsNotFound(err), fmt.Sprint(err), nil
	})
}

// VolumeDir is the host directory of the pod's volume (where its log is).
func (p *Pod) VolumeDir() string { return filepath.Dir(p.LogPath()) }

// WriteBallast writes size random bytes to name in dir and returns their
// SHA-256: data the workload never changes, which a migration must carry
// and a pre-copy over a retained copy need not send again.
func WriteBallast(dir, name string, size int64) (string, error) {
	f, err := os.Create(filepath.Join(dir, name))
	if err != nil {
		return "", err
	}
	h := sha256.New()
	_, err = io.CopyN(io.MultiWriter(f, h), rand.Reader, size)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("writing %s: %w", name, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// FileSHA256 is the SHA-256 of a file.
func FileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
