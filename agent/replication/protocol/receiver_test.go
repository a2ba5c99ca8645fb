package protocol_test

import (
	"context"
	"fmt"
	"testing"
)

// TestUnknownRequestRejected checks that a sender cannot ask the receiver
// for anything but the two fixed requests (e.g. a command line).
func TestUnknownRequestRejected(t *testing.T) {
	requireRoot(t)
	h := startReceiver(t, t.TempDir())
	c, err := h.dial(context.Background())
	must(t, err)
	defer c.Close()
	_, err = fmt.Fprintf(c, "LIVEMIGRATE-REPLICATION/1 rsync --server --sender -vlogDtpre.iLsfxC . /etc\n")
	must(t, err)
	if err := h.lastReceiverError(t); err == nil {
		t.Fatal("receiver accepted a request carrying a command line")
	}
}
