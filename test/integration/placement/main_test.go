package placement

import (
	"os"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/livemigrate/livemigrate/test/lab"
)

// testLab is shared by every test of the package.
var testLab *lab.Lab

// Network: users in "eu-users" sit 1ms from the backbone; member1 is close
// and small, member2 farther and larger, member3 far and largest. One-way
// delays add, so the RTTs to eu-users are 4ms, 22ms and 82ms: far enough
// apart that a loaded machine's jitter does not reorder them.
func labOptions() lab.Options {
	capacity := func(cpu, mem string) corev1.ResourceList {
		return corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu), corev1.ResourceMemory: resource.MustParse(mem)}
	}
	delay := func(ms int) lab.NetworkPosition {
		return lab.NetworkPosition{Delay: metav1.Duration{Duration: time.Duration(ms) * time.Millisecond}}
	}
	return lab.Options{
		MemberSpecs: []lab.MemberSpec{
			{Name: "member1", Nodes: 2, NodeCapacity: capacity("4", "16Gi"), Position: delay(1)},
			{Name: "member2", Nodes: 2, NodeCapacity: capacity("8", "32Gi"), Position: delay(10)},
			{Name: "member3", Nodes: 4, NodeCapacity: capacity("16", "64Gi"), Position: delay(40)},
		},
		Origins:        []lab.OriginSpec{{Name: "eu-users", Position: delay(1)}},
		StockScheduler: true,
	}
}

func TestMain(m *testing.M) {
	os.Exit(lab.RunTests(m, labOptions(), func(l *lab.Lab) { testLab = l }))
}
