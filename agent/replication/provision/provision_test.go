package provision

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

func claim(name, class, size string) *corev1.PersistentVolumeClaim {
	return &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: "db",
			Labels: map[string]string{"app": "pg"},
			Annotations: map[string]string{
				"pv.kubernetes.io/bind-completed":          "yes",
				"volume.kubernetes.io/storage-provisioner": "x",
				"team": "data",
			},
		},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			StorageClassName: ptr.To(class),
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(size)}},
			VolumeName:       "pv-src",
			Selector:         &metav1.LabelSelector{MatchLabels: map[string]string{"x": "y"}},
		},
	}
}

func localPV(capacity string) *corev1.PersistentVolume {
	return &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: "pv-src"},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(capacity)},
			AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimDelete,
			StorageClassName:              "local",
			PersistentVolumeSource:        corev1.PersistentVolumeSource{Local: &corev1.LocalVolumeSource{Path: "/mnt/disks/pg"}},
		},
	}
}

func csiPV() *corev1.PersistentVolume {
	return &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: "pvc-1234"},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:               corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("10Gi")},
			StorageClassName:       "fast",
			PersistentVolumeSource: corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{Driver: "ebs.csi.aws.com", VolumeHandle: "vol-1"}},
		},
	}
}

func TestBuildDynamic(t *testing.T) {
	opts := Options{MigrationUID: "uid-1", StorageClassMap: map[string]string{"fast": "premium"}}
	gotClaim, gotPV, err := Build(claim("data-pg-0", "fast", "5Gi"), csiPV(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if gotPV != nil {
		t.Errorf("dynamic volume got a static PV: %+v", gotPV)
	}
	want := &corev1.PersistentVolumeClaim{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "PersistentVolumeClaim"},
		ObjectMeta: metav1.ObjectMeta{
			Name: "data-pg-0", Namespace: "db",
			Labels:      map[string]string{"app": "pg", LabelMigrationUID: "uid-1"},
			Annotations: map[string]string{"team": "data", AnnotationSourceVolume: "pvc-1234"},
		},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			// The PV's 10Gi capacity is larger than the 5Gi request.
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("10Gi")}},
			StorageClassName: ptr.To("premium"),
		},
	}
	if diff := cmp.Diff(want, gotClaim); diff != "" {
		t.Errorf("claim (-want +got):\n%s", diff)
	}
}

func TestBuildLocal(t *testing.T) {
	opts := Options{MigrationUID: "uid-1", TargetNodeName: "member2-node1", LocalRoot: "/var/lib/livemigrate/volumes", DefaultStorageClass: "local-target"}
	gotClaim, gotPV, err := Build(claim("data-pg-0", "local", "1Gi"), localPV("2Gi"), opts)
	if err != nil {
		t.Fatal(err)
	}
	name := TargetVolumeName("uid-1", "db", "data-pg-0")
	wantPV := &corev1.PersistentVolume{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "PersistentVolume"},
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Labels:      map[string]string{LabelMigrationUID: "uid-1"},
			Annotations: map[string]string{AnnotationSourceVolume: "pv-src"},
		},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("2Gi")},
			AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimDelete,
			StorageClassName:              "local-target",
			ClaimRef:                      &corev1.ObjectReference{APIVersion: "v1", Kind: "PersistentVolumeClaim", Namespace: "db", Name: "data-pg-0"},
			PersistentVolumeSource:        corev1.PersistentVolumeSource{Local: &corev1.LocalVolumeSource{Path: "/var/lib/livemigrate/volumes/db/" + name}},
			NodeAffinity: &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
				MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "kubernetes.io/hostname", Operator: corev1.NodeSelectorOpIn, Values: []string{"member2-node1"}}},
			}}}},
		},
	}
	if diff := cmp.Diff(wantPV, gotPV); diff != "" {
		t.Errorf("PV (-want +got):\n%s", diff)
	}
	if gotClaim.Spec.VolumeName != name {
		t.Errorf("claim volumeName = %q, want pre-bound to %q", gotClaim.Spec.VolumeName, name)
	}
	if gotClaim.Spec.Selector != nil {
		t.Error("source selector copied to the target claim")
	}
	if got := *gotClaim.Spec.StorageClassName; got != "local-target" {
		t.Errorf("class = %q, want local-target", got)
	}
}

func TestBuildErrors(t *testing.T) {
	block := claim("c", "fast", "1Gi")
	block.Spec.VolumeMode = ptr.To(corev1.PersistentVolumeBlock)
	noSize := claim("c", "fast", "1Gi")
	noSize.Spec.Resources.Requests = nil
	tests := []struct {
		name  string
		claim *corev1.PersistentVolumeClaim
		pv    *corev1.PersistentVolume
		opts  Options
	}{
		{name: "no uid", claim: claim("c", "fast", "1Gi"), pv: csiPV()},
		{name: "block volume", claim: block, pv: csiPV(), opts: Options{MigrationUID: "u"}},
		{name: "no size", claim: noSize, opts: Options{MigrationUID: "u"}},
		{name: "local without node", claim: claim("c", "local", "1Gi"), pv: localPV("1Gi"), opts: Options{MigrationUID: "u", LocalRoot: "/x"}},
		{name: "local with relative root", claim: claim("c", "local", "1Gi"), pv: localPV("1Gi"), opts: Options{MigrationUID: "u", TargetNodeName: "n", LocalRoot: "x"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, err := Build(tt.claim, tt.pv, tt.opts); err == nil {
				t.Error("Build succeeded, want error")
			}
		})
	}
}

func TestStatefulSetClaimName(t *testing.T) {
	if got := StatefulSetClaimName("data", "pg", 2); got != "data-pg-2" {
		t.Errorf("got %q, want data-pg-2", got)
	}
}

func TestTargetVolumeName(t *testing.T) {
	a := TargetVolumeName("uid-1", "db", "data-pg-0")
	b := TargetVolumeName("uid-2", "db", "data-pg-0")
	if a == b {
		t.Error("names for two migrations collide")
	}
	long := TargetVolumeName("u", "ns", "a-very-long-claim-name-that-goes-on-and-on-and-on-and-on-forever")
	if len(long) > 63 {
		t.Errorf("name %q longer than 63", long)
	}
}

func TestSourcePath(t *testing.T) {
	nfs := csiPV()
	nfs.Spec.CSI = nil
	nfs.Spec.NFS = &corev1.NFSVolumeSource{Server: "s", Path: "/e"}
	host := csiPV()
	host.Spec.CSI = nil
	host.Spec.HostPath = &corev1.HostPathVolumeSource{Path: "/srv/data/"}
	tests := []struct {
		name    string
		pv      *corev1.PersistentVolume
		podUID  string
		want    string
		wantErr bool
	}{
		{name: "local", pv: localPV("1Gi"), want: "/mnt/disks/pg"},
		{name: "hostPath", pv: host, want: "/srv/data"},
		{name: "csi", pv: csiPV(), podUID: "abc-123", want: "/var/lib/kubelet/pods/abc-123/volumes/kubernetes.io~csi/pvc-1234/mount"},
		{name: "nfs", pv: nfs, podUID: "abc-123", want: "/var/lib/kubelet/pods/abc-123/volumes/kubernetes.io~nfs/pvc-1234"},
		{name: "csi without pod", pv: csiPV(), wantErr: true},
		{name: "pod uid with traversal", pv: csiPV(), podUID: "../../etc", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := SourcePath(tt.pv, tt.podUID, "")
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestTargetPath(t *testing.T) {
	if p, err := TargetPath(localPV("1Gi")); err != nil || p != "/mnt/disks/pg" {
		t.Errorf("local: %q, %v", p, err)
	}
	if _, err := TargetPath(csiPV()); !errors.Is(err, ErrNeedsReceiverPod) {
		t.Errorf("csi: err = %v, want ErrNeedsReceiverPod", err)
	}
}
