package upgrade

import (
	"os"
	"testing"

	"github.com/livemigrate/livemigrate/test/lab"
)

var testLab *lab.Lab

// TestMain starts a lab without the project's components: the chart's
// workloads run as kwok pods of member1, which is all a release needs.
func TestMain(m *testing.M) {
	opts := lab.Options{Members: 1, NodesPerMember: 2, Components: []string{}}
	os.Exit(lab.RunTests(m, opts, func(l *lab.Lab) { testLab = l }))
}
