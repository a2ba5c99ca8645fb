package selftest

import (
	"os"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/livemigrate/livemigrate/test/lab"
)

// testLab is shared by every test of the package.
var testLab *lab.Lab

func TestMain(m *testing.M) {
	if dir := os.Getenv(childEnv); dir != "" {
		// Re-executed by TestKilledTestBinaryLeavesNothing.
		os.Exit(runChild(dir))
	}
	opts := lab.Options{
		MemberSpecs: []lab.MemberSpec{
			{Name: "member1", Nodes: 2, Position: lab.NetworkPosition{Delay: metav1.Duration{Duration: 5 * time.Millisecond}}},
			{Name: "member2", Nodes: 2, Position: lab.NetworkPosition{Delay: metav1.Duration{Duration: 10 * time.Millisecond}}},
		},
		StockScheduler: true,
	}
	os.Exit(lab.RunTests(m, opts, func(l *lab.Lab) { testLab = l }))
}
