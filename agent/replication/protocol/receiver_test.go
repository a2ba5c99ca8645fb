package protocol_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/livemigrate/livemigrate/agent/replication/protocol"
)

// TestUnknownRequestRejected checks that a sender cannot ask the receiver
// for anything but the two fixed requests (e.g. a command line).
func TestUnknownRequestRejected(t *testing.T) {
	requireRoot(t)
	h := startReceiver(t, t.TempDir())
	c, err := h.Dial(context.Background())
	must(t, err)
	defer c.Close()
	_, err = fmt.Fprintf(c, "LIVEMIGRATE-REPLICATION/1 rsync --server --sender -vlogDtpre.iLsfxC . /etc\n")
	must(t, err)
	if err := h.LastError(t); err == nil {
		t.Fatal("receiver accepted a request carrying a command line")
	}
}

// TestReceiverWithoutRsyncServerRefusesRsync: a receiver given no rsync
// server refuses the rsync request and writes nothing.
func TestReceiverWithoutRsyncServerRefusesRsync(t *testing.T) {
	requireRoot(t)
	dst := t.TempDir()
	recv := &protocol.Receiver{DestDir: dst}
	client, server := net.Pipe()
	defer client.Close()
	errs := make(chan error, 1)
	go func() { errs <- recv.ServeConn(context.Background(), server) }()
	must(t, protocol.WriteRequest(client, protocol.Rsync))
	select {
	case err := <-errs:
		if err == nil || !strings.Contains(err.Error(), "no rsync") {
			t.Fatalf("ServeConn = %v, want the rsync request refused", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("receiver did not answer the rsync request")
	}
	if ents, _ := os.ReadDir(dst); len(ents) != 0 {
		t.Errorf("target written: %v", ents)
	}
}
