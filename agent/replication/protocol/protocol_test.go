package protocol

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestReadRequest(t *testing.T) {
	for _, req := range []Request{Rsync, Status, Tar, Manifest, BlockIndex, BlockDelta} {
		var b bytes.Buffer
		if err := WriteRequest(&b, req); err != nil {
			t.Fatal(err)
		}
		b.WriteString("payload")
		got, err := ReadRequest(&b)
		if err != nil || got != req {
			t.Errorf("ReadRequest(%q) = %q, %v; want %q", req.Line(), got, err, req)
		}
		if rest := b.String(); rest != "payload" {
			t.Errorf("after %q the payload reads %q, want it untouched", req, rest)
		}
	}
}

func TestReadRequestRefuses(t *testing.T) {
	for name, in := range map[string]string{
		"other command":    "LIVEMIGRATE-REPLICATION/1 rsync --server --sender . /etc\n",
		"other version":    "LIVEMIGRATE-REPLICATION/2 rsync\n",
		"no line break":    strings.Repeat("x", MaxRequestLen+10),
		"lower-case":       "livemigrate-replication/1 tar\n",
		"request, no line": "LIVEMIGRATE-REPLICATION/1 tar",
	} {
		t.Run(name, func(t *testing.T) {
			got, err := ReadRequest(strings.NewReader(in))
			if err == nil {
				t.Fatalf("ReadRequest(%q) = %q, want an error", in, got)
			}
			if name == "request, no line" {
				if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Errorf("error %v, want the end of the stream", err)
				}
				return
			}
			if !errors.Is(err, ErrUnknownRequest) {
				t.Errorf("error %v, want ErrUnknownRequest", err)
			}
		})
	}
}
