package tarstream

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The workload keeps running between Scan and Write: it may replace a
// scanned directory with a symlink, out of the volume or to another
// directory of it. Write must then send nothing it did not scan: not the
// host's files, not another file of the volume under the scanned name.
func TestWriteSendsOnlyTheScannedInodes(t *testing.T) {
	const hostSecret, otherFile = "host secret", "another file of the volume"
	tests := []struct {
		name   string
		target func(src, outside string) string
	}{
		{name: "directory swapped for a symlink out of the volume", target: func(_, outside string) string { return outside }},
		{name: "directory swapped for a relative symlink out of the volume", target: func(src, outside string) string {
			rel, err := filepath.Rel(src, outside)
			if err != nil {
				t.Fatal(err)
			}
			return rel
		}},
		{name: "directory swapped for a symlink inside the volume", target: func(src, _ string) string { return "b" }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			outside := t.TempDir()
			if err := os.WriteFile(filepath.Join(outside, "secret"), []byte(hostSecret), 0o600); err != nil {
				t.Fatal(err)
			}
			src := t.TempDir()
			for _, d := range []string{"a", "b"} {
				if err := os.Mkdir(filepath.Join(src, d), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.WriteFile(filepath.Join(src, "a", "secret"), []byte("tenant data"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(src, "b", "secret"), []byte(otherFile), 0o644); err != nil {
				t.Fatal(err)
			}
			entries, err := Scan(src)
			if err != nil {
				t.Fatal(err)
			}
			// The workload's move, after the scan.
			if err := os.Rename(filepath.Join(src, "a"), filepath.Join(src, "a.old")); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(tc.target(src, outside), filepath.Join(src, "a")); err != nil {
				t.Fatal(err)
			}
			var b bytes.Buffer
			if _, err := Write(context.Background(), &b, src, entries, WriteOptions{}); err != nil {
				t.Fatalf("Write: %v", err)
			}
			got := map[string]string{}
			tr := tar.NewReader(&b)
			for {
				hdr, err := tr.Next()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				data, err := io.ReadAll(tr)
				if err != nil {
					t.Fatal(err)
				}
				got[hdr.Name] = string(data)
			}
			for name, data := range got {
				if strings.Contains(data, hostSecret) {
					t.Errorf("the stream carries the host's file as %q", name)
				}
			}
			if data, ok := got["a/secret"]; ok && data != "tenant data" {
				t.Errorf("a/secret carries %q, not the scanned file's data", data)
			}
			if got["b/secret"] != otherFile {
				t.Errorf("b/secret = %q, want %q", got["b/secret"], otherFile)
			}
		})
	}
}
