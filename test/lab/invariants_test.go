package lab

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/livemigrate/livemigrate/test/lab/invariant"
)

func TestPodIdentityNamesStatefulSetPodsAcrossMembers(t *testing.T) {
	pod := func(uid, name, ownerKind string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name, UID: types.UID("0a1b2c3d-0000-4000-8000-" + uid),
			OwnerReferences: []metav1.OwnerReference{{Kind: ownerKind, Name: "x"}}}}
	}
	member1 := fake.NewSimpleClientset(pod("00000000000a", "db-0", "StatefulSet"), pod("00000000000c", "web-5d8f-abc", "ReplicaSet"))
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
