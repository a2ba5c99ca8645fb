package protocol_test

import (
	"testing"

	"github.com/livemigrate/livemigrate/agent/replication/internal/testharness"
	"github.com/livemigrate/livemigrate/agent/replication/internal/testtree"
)

func requireRoot(t *testing.T) {
	t.Helper()
	testharness.RequireRoot(t)
}

// startReceiver serves dest for migration "mig-test" through a real
// receiver behind a real mutual-TLS listener on loopback
// (testharness.StartReceiver).
func startReceiver(t *testing.T, dest string) *testharness.Receiver {
	t.Helper()
	return testharness.StartReceiver(t, "mig-test", dest)
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// The volume trees of these tests (internal/testtree).
var (
	genTree     = testtree.Gen
	setupTrees  = testtree.Setup
	mustCompare = testtree.MustEqual
	writeRandom = testtree.WriteRandom
)
