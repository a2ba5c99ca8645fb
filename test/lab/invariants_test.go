package lab

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"

	agentv1alpha1 "github.com/livemigrate/livemigrate/api/agent/v1alpha1"
	"github.com/livemigrate/livemigrate/test/lab/invariant"
)

func TestPodIdentityNamesStatefulSetPodsAcrossMembers(t *testing.T) {
	pod := func(uid, name, ownerKind string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name, UID: types.UID("0a1b2c3d-0000-4000-8000-" + uid),
			OwnerReferences: []metav1.OwnerReference{{Kind: ownerKind, Name: "x"}}}}
	}
	member1 := fake.NewSimpleClientset(pod("00000000000a", "db-0", "StatefulSet"), pod("00000000000c", "report-28411-abc", "Job"))
	member2 := fake.NewSimpleClientset(pod("00000000000b", "db-0", "StatefulSet"))
	id := PodIdentity([]kubernetes.Interface{member1, member2})
	proc := func(uid string) invariant.Process {
		return invariant.Process{Cgroup: "/livemigrate-lab/member1-node-0/kubepods/burstable/pod0a1b2c3d_0000_4000_8000_" + uid}
	}
	for uid, want := range map[string]string{"00000000000a": "shop/db-0", "00000000000b": "shop/db-0", "00000000000c": ""} {
		if got := id(proc(uid)); got != want {
			t.Errorf("identity of pod %s = %q, want %q", uid, got, want)
		}
	}
	cgroupfs := invariant.Process{Cgroup: "/livemigrate-lab/member2-node-0/kubepods/burstable/pod0a1b2c3d-0000-4000-8000-00000000000b"}
	if got := id(cgroupfs); got != "shop/db-0" {
		t.Errorf("identity of a cgroupfs-layout pod = %q, want shop/db-0", got)
	}
	if got := id(invariant.Process{Cgroup: "/user.slice"}); got != "" {
		t.Errorf("identity of a process outside any pod = %q, want none", got)
	}
}

// TestPodIdentityFollowsDeploymentReplicaLineage: a Deployment replica's
// identity is its checkpoint lineage: a pod restored from a checkpoint
// (its restore-checkpoint annotation naming the source pod) is the same
// replica as its source, across members and migrations, also once the
// source is gone; another replica, or a pod of the same Deployment started
// afresh, is not. The monitor then sees a restored replica and its source
// running unfrozen at once as two live copies.
func TestPodIdentityFollowsDeploymentReplicaLineage(t *testing.T) {
	replica := func(uid, name, restoredFrom string) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name, UID: types.UID("0a1b2c3d-0000-4000-8000-" + uid),
			OwnerReferences: []metav1.OwnerReference{{Kind: "ReplicaSet", Name: "web-5d8f"}}}}
		if restoredFrom != "" {
			p.Annotations = map[string]string{agentv1alpha1.AnnotationRestoreCheckpoint: restoredFrom}
		}
		return p
	}
	proc := func(uid string) invariant.Process {
		return invariant.Process{Cgroup: "/livemigrate-lab/member1-node-0/kubepods/burstable/pod0a1b2c3d-0000-4000-8000-" + uid}
	}
	// web-5d8f-aaaaa and web-5d8f-bbbbb run in member1; web-5d8f-ccccc in
	// member2 was restored from aaaaa's checkpoint, web-5d8f-ddddd from
	// bbbbb's; web-5d8f-eeeee started afresh.
	member1 := fake.NewSimpleClientset(replica("00000000000a", "web-5d8f-aaaaa", ""), replica("00000000000b", "web-5d8f-bbbbb", ""))
	member2 := fake.NewSimpleClientset(replica("00000000000c", "web-5d8f-ccccc", "web-5d8f-aaaaa"), replica("00000000000d", "web-5d8f-ddddd", "web-5d8f-bbbbb"),
		replica("00000000000e", "web-5d8f-eeeee", ""))
	x := newPodIndex([]kubernetes.Interface{member1, member2})
	id := x.identity
	a, b, c, d, e := id(proc("00000000000a")), id(proc("00000000000b")), id(proc("00000000000c")), id(proc("00000000000d")), id(proc("00000000000e"))
	if a == "" || b == "" || e == "" {
		t.Fatalf("identities %q, %q, %q: want every Deployment replica named", a, b, e)
	}
	if c != a || d != b {
		t.Errorf("restored replicas: %q (from %q), %q (from %q); want each its source's identity", c, a, d, b)
	}
	if a == b || e == a || e == b {
		t.Errorf("distinct replicas share an identity: %q, %q, %q", a, b, e)
	}

	// Back to member1, restored from ccccc's checkpoint, once aaaaa and
	// ccccc are gone: still the lineage of aaaaa.
	for _, n := range []string{"web-5d8f-aaaaa"} {
		if err := member1.CoreV1().Pods("shop").Delete(context.Background(), n, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := member2.CoreV1().Pods("shop").Delete(context.Background(), "web-5d8f-ccccc", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := member1.CoreV1().Pods("shop").Create(context.Background(), replica("00000000000f", "web-5d8f-fffff", "web-5d8f-ccccc"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	x.mu.Lock()
	x.listed = time.Time{} // list again now, not in a second
	x.mu.Unlock()
	if f := id(proc("00000000000f")); f != a {
		t.Errorf("replica restored back from a restored one, its sources gone: %q, want %q", f, a)
	}

	// The monitor reports a source and its restored replica both running.
	dir := t.TempDir()
	for _, p := range []struct{ pid, uid string }{{"101", "00000000000b"}, {"102", "00000000000d"}} {
		pd := filepath.Join(dir, "proc", p.pid)
		cg := "/livemigrate-lab/member1-node-0/kubepods/burstable/pod0a1b2c3d-0000-4000-8000-" + p.uid
		for f, v := range map[string]string{"cmdline": "labapp\x00run\x00", "stat": p.pid + " (labapp) S 1 1 1 0 -1 0", "status": "SigPnd:\t0000000000000000\nShdPnd:\t0000000000000000\n", "cgroup": "7:freezer:" + cg + "\n"} {
			if err := os.MkdirAll(pd, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(pd, f), []byte(v), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.MkdirAll(filepath.Join(dir, "freezer", cg), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "freezer", cg, "freezer.state"), []byte("THAWED\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mon := &invariant.Monitor{ProcRoot: filepath.Join(dir, "proc"), FreezerMount: filepath.Join(dir, "freezer"), UnifiedMount: filepath.Join(dir, "unified"), Identity: id}
	mon.Sample()
	if v, _ := mon.Violations(); len(v) != 1 || !strings.Contains(v[0].Message, "two live copies of "+b) {
		t.Errorf("violations %v, want two live copies of %s", v, b)
	}
}
