package karmada

import (
	"os"
	"testing"

	"github.com/livemigrate/livemigrate/test/lab"
)

// testLab is shared by every test of the package.
var testLab *lab.Lab

func TestMain(m *testing.M) {
	os.Exit(lab.RunTests(m, lab.Options{Members: 2, NodesPerMember: 2}, func(l *lab.Lab) { testLab = l }))
}
