package tarstream

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
)

// FuzzExtract feeds arbitrary bytes to the receiver: Extract must refuse
// them or write them, without panicking, and never create or change
// anything outside its target directory. Seeds: a stream Write produced
// (directories, files, a sparse file, symlinks, a hard link) and the
// malicious streams of TestMaliciousStreams; more under
// testdata/fuzz/FuzzExtract.
func FuzzExtract(f *testing.F) {
	src := f.TempDir()
	for _, d := range []string{"a", "a/b"} {
		if err := os.Mkdir(filepath.Join(src, d), 0o755); err != nil {
			f.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(src, "a", "f"), []byte("data"), 0o640); err != nil {
		f.Fatal(err)
	}
	sparse, err := os.Create(filepath.Join(src, "a", "b", "sparse"))
	if err != nil {
		f.Fatal(err)
	}
	if _, err := sparse.WriteAt([]byte("end"), 1<<20); err != nil {
		f.Fatal(err)
	}
	_ = sparse.Close()
	if err := os.Link(filepath.Join(src, "a", "f"), filepath.Join(src, "hard")); err != nil {
		f.Fatal(err)
	}
	if err := os.Symlink("../etc/passwd", filepath.Join(src, "link")); err != nil {
		f.Fatal(err)
	}
	ents, err := Scan(src)
	if err != nil {
		f.Fatal(err)
	}
	var b bytes.Buffer
	if _, err := Write(context.Background(), &b, src, ents, WriteOptions{}); err != nil {
		f.Fatal(err)
	}
	f.Add(b.Bytes())
	reg := func(name, data string) ent {
		return ent{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name}, data: data}
	}
	for _, s := range [][]ent{
		{reg("../outside", "x")},
		{{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: "l", Linkname: "/"}}, reg("l/x", "x")},
		{{hdr: tar.Header{Typeflag: tar.TypeLink, Name: "h", Linkname: "../outside"}}},
		{{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "s", PAXRecords: map[string]string{paxSparseMap: "0,2,1,2", paxSparseSize: "4"}}, data: "abcd"}},
	} {
		f.Add(stream(f, s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		parent := t.TempDir()
		dest := filepath.Join(parent, "dest")
		if err := os.Mkdir(dest, 0o700); err != nil {
			t.Fatal(err)
		}
		_, _ = Extract(context.Background(), dest, bytes.NewReader(data))
		names, err := os.ReadDir(parent)
		if err != nil {
			t.Fatal(err)
		}
		if len(names) != 1 || names[0].Name() != "dest" {
			t.Fatalf("Extract created %v beside its target", names)
		}
	})
}
