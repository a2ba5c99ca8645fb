package provision

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const (
	// LabelMigrationUID marks objects created for a migration.
	LabelMigrationUID = "livemigrate.io/migration-uid"
	// AnnotationSourceVolume records the source PersistentVolume's name.
	AnnotationSourceVolume = "livemigrate.io/source-volume"
	// DefaultKubeletRoot is the kubelet's root directory.
	DefaultKubeletRoot = "/var/lib/kubelet"
)

// Options parameterise the target objects.
type Options struct {
	// MigrationUID labels every object built.
	MigrationUID string
	// StorageClassMap maps source storage class names to target ones. A
	// class absent from the map keeps its name unless DefaultStorageClass
	// is set.
	StorageClassMap map[string]string
	// DefaultStorageClass is used for classes absent from the map.
	DefaultStorageClass string
	// TargetNodeName is the node a local target volume is created on.
	TargetNodeName string
	// LocalRoot is the directory on the target node under which local
	// target volumes are created (<root>/<namespace>/<claim>-<uid prefix>).
	LocalRoot string
}

// StatefulSetClaimName is the claim name a StatefulSet's pod with the given
// ordinal gets from a volumeClaimTemplate.
func StatefulSetClaimName(template, statefulSet string, ordinal int) string {
	return template + "-" + statefulSet + "-" + strconv.Itoa(ordinal)
}

// MapStorageClass returns the target class for a source class.
func MapStorageClass(class string, opts Options) string {
	if to, ok := opts.StorageClassMap[class]; ok {
		return to
	}
	if opts.DefaultStorageClass != "" {
		return opts.DefaultStorageClass
	}
	return class
}

// IsNodeLocal reports whether the volume's data lives in a directory of one
// node (local or hostPath), so that the agent reads and writes it directly.
func IsNodeLocal(pv *corev1.PersistentVolume) bool {
	return pv != nil && (pv.Spec.Local != nil || pv.Spec.HostPath != nil)
}

// annotations that belong to the source cluster's binding and provisioning.
var droppedAnnotationPrefixes = []string{
	"pv.kubernetes.io/",
	"volume.kubernetes.io/",
	"volume.beta.kubernetes.io/",
	"kubectl.kubernetes.io/last-applied-configuration",
}

// TargetVolumeName is the name of the target PersistentVolume built for a
// node-local source volume: unique per migration and claim, at most 63
// characters.
func TargetVolumeName(migrationUID, namespace, claim string) string {
	sum := sha256.Sum256([]byte(migrationUID + "/" + namespace + "/" + claim))
	prefix := "lm-" + strings.ToLower(claim)
	if len(prefix) > 46 {
		prefix = prefix[:46]
	}
	return strings.TrimRight(prefix, "-.") + "-" + hex.EncodeToString(sum[:8])
}

// Build returns the target claim and, for node-local source volumes, the
// pre-bound target volume (nil otherwise).
func Build(srcClaim *corev1.PersistentVolumeClaim, srcVolume *corev1.PersistentVolume, opts Options) (*corev1.PersistentVolumeClaim, *corev1.PersistentVolume, error) {
	if srcClaim == nil {
		return nil, nil, errors.New("source claim is required")
	}
	if opts.MigrationUID == "" {
		return nil, nil, errors.New("migration UID is required")
	}
	size := ClaimSize(srcClaim, srcVolume)
	if size.IsZero() {
		return nil, nil, fmt.Errorf("claim %s/%s has no storage request or capacity", srcClaim.Namespace, srcClaim.Name)
	}
	srcClass := ""
	if srcClaim.Spec.StorageClassName != nil {
		srcClass = *srcClaim.Spec.StorageClassName
	} else if srcVolume != nil {
		srcClass = srcVolume.Spec.StorageClassName
	}
	class := MapStorageClass(srcClass, opts)

	claim := &corev1.PersistentVolumeClaim{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "PersistentVolumeClaim"},
		ObjectMeta: metav1.ObjectMeta{
			Name:        srcClaim.Name,
			Namespace:   srcClaim.Namespace,
			Labels:      copyLabels(srcClaim.Labels, opts.MigrationUID),
			Annotations: filterAnnotations(srcClaim.Annotations),
		},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      append([]corev1.PersistentVolumeAccessMode(nil), srcClaim.Spec.AccessModes...),
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: size}},
			StorageClassName: &class,
			VolumeMode:       srcClaim.Spec.VolumeMode,
		},
	}
	if srcVolume != nil {
		if claim.Annotations == nil {
			claim.Annotations = map[string]string{}
		}
		claim.Annotations[AnnotationSourceVolume] = srcVolume.Name
	}
	if len(claim.Spec.AccessModes) == 0 && srcVolume != nil {
		claim.Spec.AccessModes = append(claim.Spec.AccessModes, srcVolume.Spec.AccessModes...)
	}
	if srcClaim.Spec.VolumeMode != nil && *srcClaim.Spec.VolumeMode == corev1.PersistentVolumeBlock {
		return nil, nil, fmt.Errorf("claim %s/%s is a raw block volume; only filesystem volumes are replicated", srcClaim.Namespace, srcClaim.Name)
	}
	if !IsNodeLocal(srcVolume) {
		return claim, nil, nil
	}

	if opts.TargetNodeName == "" || opts.LocalRoot == "" || !filepath.IsAbs(opts.LocalRoot) {
		return nil, nil, fmt.Errorf("a node-local volume needs the target node name and an absolute local root (got %q, %q)", opts.TargetNodeName, opts.LocalRoot)
	}
	name := TargetVolumeName(opts.MigrationUID, srcClaim.Namespace, srcClaim.Name)
	reclaim := srcVolume.Spec.PersistentVolumeReclaimPolicy
	if reclaim == "" || reclaim == corev1.PersistentVolumeReclaimRecycle {
		reclaim = corev1.PersistentVolumeReclaimRetain
	}
	pv := &corev1.PersistentVolume{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "PersistentVolume"},
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Labels:      copyLabels(srcVolume.Labels, opts.MigrationUID),
			Annotations: map[string]string{AnnotationSourceVolume: srcVolume.Name},
		},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: size},
			AccessModes:                   claim.Spec.AccessModes,
			PersistentVolumeReclaimPolicy: reclaim,
			StorageClassName:              class,
			MountOptions:                  append([]string(nil), srcVolume.Spec.MountOptions...),
			VolumeMode:                    srcVolume.Spec.VolumeMode,
			ClaimRef: &corev1.ObjectReference{
				APIVersion: "v1",
				Kind:       "PersistentVolumeClaim",
				Namespace:  srcClaim.Namespace,
				Name:       srcClaim.Name,
			},
			PersistentVolumeSource: corev1.PersistentVolumeSource{
				Local: &corev1.LocalVolumeSource{Path: path.Join(opts.LocalRoot, srcClaim.Namespace, name)},
			},
			NodeAffinity: &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{
				NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{{
					Key: corev1.LabelHostname, Operator: corev1.NodeSelectorOpIn, Values: []string{opts.TargetNodeName},
				}}}},
			}},
		},
	}
	if srcVolume.Spec.Local != nil && srcVolume.Spec.Local.FSType != nil {
		fs := *srcVolume.Spec.Local.FSType
		pv.Spec.Local.FSType = &fs
	}
	claim.Spec.VolumeName = name
	return claim, pv, nil
}

// ClaimSize is the size a target claim gets for a source claim and its
// volume (nil when unbound): the larger of the request and the capacity.
func ClaimSize(c *corev1.PersistentVolumeClaim, pv *corev1.PersistentVolume) resource.Quantity {
	var size resource.Quantity
	if q, ok := c.Spec.Resources.Requests[corev1.ResourceStorage]; ok {
		size = q.DeepCopy()
	}
	if pv != nil {
		if q, ok := pv.Spec.Capacity[corev1.ResourceStorage]; ok && q.Cmp(size) > 0 {
			size = q.DeepCopy()
		}
	}
	return size
}

func copyLabels(in map[string]string, uid string) map[string]string {
	out := make(map[string]string, len(in)+1)
	for k, v := range in {
		out[k] = v
	}
	out[LabelMigrationUID] = uid
	return out
}

func filterAnnotations(in map[string]string) map[string]string {
	var out map[string]string
	for k, v := range in {
		drop := false
		for _, p := range droppedAnnotationPrefixes {
			if strings.HasPrefix(k, p) {
				drop = true
				break
			}
		}
		if drop {
			continue
		}
		if out == nil {
			out = map[string]string{}
		}
		out[k] = v
	}
	return out
}

// pluginDirs maps in-tree volume sources to the kubelet's plugin directory.
func pluginDir(pv *corev1.PersistentVolume) (string, bool) {
	s := pv.Spec.PersistentVolumeSource
	switch {
	case s.CSI != nil:
		return "kubernetes.io~csi", true
	case s.NFS != nil:
		return "kubernetes.io~nfs", true
	case s.ISCSI != nil:
		return "kubernetes.io~iscsi", true
	case s.FC != nil:
		return "kubernetes.io~fc", true
	case s.RBD != nil:
		return "kubernetes.io~rbd", true
	case s.CephFS != nil:
		return "kubernetes.io~cephfs", true
	case s.AzureFile != nil:
		return "kubernetes.io~azure-file", true
	case s.AzureDisk != nil:
		return "kubernetes.io~azure-disk", true
	case s.AWSElasticBlockStore != nil:
		return "kubernetes.io~aws-ebs", true
	case s.GCEPersistentDisk != nil:
		return "kubernetes.io~gce-pd", true
	}
	return "", false
}

// SourcePath is where the volume's files are on the source node: the
// directory of a local or hostPath volume, otherwise the pod's mount of it
// under kubeletRoot.
func SourcePath(pv *corev1.PersistentVolume, podUID, kubeletRoot string) (string, error) {
	if pv == nil {
		return "", errors.New("no persistent volume")
	}
	if pv.Spec.Local != nil {
		return filepath.Clean(pv.Spec.Local.Path), nil
	}
	if pv.Spec.HostPath != nil {
		return filepath.Clean(pv.Spec.HostPath.Path), nil
	}
	dir, ok := pluginDir(pv)
	if !ok {
		return "", fmt.Errorf("volume %s has an unsupported source", pv.Name)
	}
	if podUID == "" || strings.ContainsAny(podUID, "/.") {
		return "", fmt.Errorf("invalid pod UID %q", podUID)
	}
	if kubeletRoot == "" {
		kubeletRoot = DefaultKubeletRoot
	}
	p := filepath.Join(kubeletRoot, "pods", podUID, "volumes", dir, pv.Name)
	if pv.Spec.CSI != nil {
		p = filepath.Join(p, "mount")
	}
	return p, nil
}

// ErrNeedsReceiverPod is returned by TargetPath for volumes the agent cannot
// reach on the node by itself: they are written by a receiver pod that
// mounts the claim (docs/replication.md, "Receiver pod"; not built yet).
var ErrNeedsReceiverPod = errors.New("target volume is not node-local; it needs a receiver pod")

// TargetPath is where the agent writes a node-local target volume.
func TargetPath(pv *corev1.PersistentVolume) (string, error) {
	if pv == nil {
		return "", errors.New("no persistent volume")
	}
	if pv.Spec.Local != nil {
		return filepath.Clean(pv.Spec.Local.Path), nil
	}
	if pv.Spec.HostPath != nil {
		return filepath.Clean(pv.Spec.HostPath.Path), nil
	}
	return "", ErrNeedsReceiverPod
}
