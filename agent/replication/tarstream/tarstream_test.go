package tarstream

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

type ent struct {
	hdr  tar.Header
	data string
}

func stream(t testing.TB, ents []ent) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range ents {
		h := e.hdr
		h.Format = tar.FormatPAX
		if h.Typeflag == tar.TypeReg && h.Size == 0 {
			h.Size = int64(len(e.data))
		}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if e.data != "" {
			if _, err := io.WriteString(tw, e.data); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// snapshot lists every path under dir with its size, to show that nothing
// outside the target changed.
func snapshot(t *testing.T, dir string) string {
	t.Helper()
	var out []string
	err := filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		out = append(out, rel+" "+info.Mode().String()+" "+info.ModTime().String())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(out, "\n")
}

func TestMaliciousStreams(t *testing.T) {
	reg := func(name, data string) ent {
		return ent{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name}, data: data}
	}
	dir := func(name string) ent { return ent{hdr: tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o755}} }
	sym := func(name, target string) ent {
		return ent{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target}}
	}
	link := func(name, target string) ent {
		return ent{hdr: tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target}}
	}
	tests := []struct {
		name  string
		ents  func(outside string) []ent
		raw   func(t *testing.T, outside string) []byte
		wants string
	}{
		{name: "absolute path", ents: func(o string) []ent { return []ent{reg(filepath.Join(o, "pwned"), "x")} }, wants: "absolute path refused"},
		{name: "dot-dot", ents: func(string) []ent { return []ent{reg("../outside/pwned", "x")} }, wants: "escapes the volume"},
		{name: "dot-dot inside", ents: func(string) []ent { return []ent{dir("a/"), reg("a/../../outside/pwned", "x")} }, wants: "escapes the volume"},
		{name: "symlink then a file through it", ents: func(o string) []ent { return []ent{sym("l", o), reg("l/pwned", "x")} }, wants: "not a directory created by this stream"},
		{name: "symlink inside the volume then a file through it", ents: func(string) []ent {
			return []ent{dir("d/"), sym("l", "d"), reg("l/x", "x")}
		}, wants: "not a directory created by this stream"},
		{name: "symlink replacing a file", ents: func(o string) []ent { return []ent{sym("f", o+"/pwned"), reg("f", "x")} }, wants: "named twice"},
		{name: "hard link to outside", ents: func(o string) []ent { return []ent{link("h", filepath.Join(o, "secret"))} }, wants: "hard link"},
		{name: "hard link dot-dot", ents: func(string) []ent { return []ent{link("h", "../outside/secret")} }, wants: "hard link"},
		{name: "hard link to a symlink", ents: func(o string) []ent { return []ent{sym("s", o+"/secret"), link("h", "s")} }, wants: "hard link"},
		{name: "device node", ents: func(string) []ent {
			return []ent{{hdr: tar.Header{Typeflag: tar.TypeChar, Name: "null", Devmajor: 1, Devminor: 3}}}
		}, wants: "refused"},
		{name: "fifo", ents: func(string) []ent { return []ent{{hdr: tar.Header{Typeflag: tar.TypeFifo, Name: "p"}}} }, wants: "refused"},
		{name: "missing parent", ents: func(string) []ent { return []ent{reg("nodir/x", "x")} }, wants: "not a directory created by this stream"},
		{name: "sparse map beyond size", ents: func(string) []ent {
			e := reg("s", "abcd")
			e.hdr.PAXRecords = map[string]string{paxSparseMap: "100,4", paxSparseSize: "10"}
			return []ent{e}
		}, wants: "sparse map"},
		{name: "oversized header", raw: func(t *testing.T, _ string) []byte {
			// A PAX extended header (type 'x') of 2 MiB: more than
			// archive/tar accepts (1 MiB).
			rec := "2097152 LIVEMIGRATE.pad="
			rec += strings.Repeat("x", 2<<20-len(rec)-1) + "\n"
			b := stream(t, []ent{reg("PaxHeaders/big", rec)})
			b = b[:512+len(rec)+(512-len(rec)%512)%512]
			b[156] = tar.TypeXHeader
			copy(b[148:156], "        ")
			sum := 0
			for _, c := range b[:512] {
				sum += int(c)
			}
			copy(b[148:156], fmt.Sprintf("%06o\x00 ", sum))
			return append(b, stream(t, []ent{reg("after", "x")})...)
		}, wants: "a header is limited to 1 MiB"},
		{name: "truncated stream", raw: func(t *testing.T, _ string) []byte {
			b := stream(t, []ent{reg("f", strings.Repeat("y", 5000))})
			return b[:512+3000]
		}, wants: "truncated"},
		{name: "long name", ents: func(string) []ent { return []ent{reg(strings.Repeat("a", MaxPath+1), "x")} }, wants: "longer than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := t.TempDir()
			dest, outside := filepath.Join(base, "dest"), filepath.Join(base, "outside")
			for _, d := range []string{dest, outside} {
				if err := os.Mkdir(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("outside"), 0o600); err != nil {
				t.Fatal(err)
			}
			before := snapshot(t, outside)
			var data []byte
			if tt.raw != nil {
				data = tt.raw(t, outside)
			} else {
				data = stream(t, tt.ents(outside))
			}
			_, err := Extract(context.Background(), dest, bytes.NewReader(data))
			if err == nil {
				t.Fatal("malicious stream accepted")
			}
			t.Logf("refused: %v", err)
			if !strings.Contains(err.Error(), tt.wants) {
				t.Errorf("error %q does not say %q", err, tt.wants)
			}
			var xe *ExtractError
			if !errors.As(err, &xe) {
				t.Errorf("error %T is not an *ExtractError", err)
			}
			if after := snapshot(t, outside); after != before {
				t.Errorf("the stream wrote outside the target:\nbefore:\n%s\nafter:\n%s", before, after)
			}
			if _, err := os.Lstat(filepath.Join(base, "pwned")); err == nil {
				t.Error("a file was created next to the target")
			}
		})
	}
}

func TestExtractRefusesNonEmptyTarget(t *testing.T) {
	dest := t.TempDir()
	if err := os.WriteFile(filepath.Join(dest, "existing"), []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Extract(context.Background(), dest, bytes.NewReader(stream(t, []ent{{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "existing"}, data: "new"}})))
	if err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("extract into a non-empty target: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dest, "existing")); string(b) != "keep" {
		t.Errorf("existing file changed to %q", b)
	}
}

func TestWriteExtractRoundTrip(t *testing.T) {
	base := t.TempDir()
	src, dest := filepath.Join(base, "src"), filepath.Join(base, "dest")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(src, "a", "b"), 0o750))
	must(os.MkdirAll(dest, 0o755))
	must(os.WriteFile(filepath.Join(src, "a", "f"), bytes.Repeat([]byte("z"), 3<<20+17), 0o640))
	must(os.Link(filepath.Join(src, "a", "f"), filepath.Join(src, "a", "b", "g")))
	must(os.Symlink("../../etc/passwd", filepath.Join(src, "a", "l")))
	f, err := os.Create(filepath.Join(src, "sparse"))
	must(err)
	_, err = f.WriteAt([]byte("head"), 0)
	must(err)
	_, err = f.WriteAt([]byte("tail"), 32<<20)
	must(err)
	must(f.Close())
	past := time.Date(2021, 1, 2, 3, 4, 5, 987654321, time.UTC)
	must(os.Chtimes(filepath.Join(src, "a", "b"), past, past))
	must(os.Chmod(filepath.Join(src, "a"), os.ModeSetgid|0o751))
	ents, err := Scan(src)
	must(err)
	var b bytes.Buffer
	ws, err := Write(context.Background(), &b, src, ents, WriteOptions{})
	must(err)
	xs, err := Extract(context.Background(), dest, &b)
	must(err)
	if ws.Files != 2 || xs.Files != 2 {
		t.Errorf("files written %d, extracted %d, want 2 (the hard link is a link)", ws.Files, xs.Files)
	}
	if ws.Data > 3<<20+17+2*4096*2 {
		t.Errorf("stream carried %d bytes of data: the sparse file's hole was sent", ws.Data)
	}
	var st1, st2 os.FileInfo
	st1, err = os.Stat(filepath.Join(dest, "a", "f"))
	must(err)
	st2, err = os.Stat(filepath.Join(dest, "a", "b", "g"))
	must(err)
	if !os.SameFile(st1, st2) {
		t.Error("hard link not preserved")
	}
	if l, _ := os.Readlink(filepath.Join(dest, "a", "l")); l != "../../etc/passwd" {
		t.Errorf("symlink target %q", l)
	}
	st, err := os.Stat(filepath.Join(dest, "a", "b"))
	must(err)
	if !st.ModTime().Equal(past) {
		t.Errorf("directory mtime %v, want %v (set after its content)", st.ModTime(), past)
	}
	st, err = os.Stat(filepath.Join(dest, "a"))
	must(err)
	if st.Mode()&os.ModeSetgid == 0 || st.Mode().Perm() != 0o751 {
		t.Errorf("directory mode %v, want setgid 0751", st.Mode())
	}
	sp, err := os.ReadFile(filepath.Join(dest, "sparse"))
	must(err)
	if len(sp) != 32<<20+4 || string(sp[:4]) != "head" || string(sp[len(sp)-4:]) != "tail" {
		t.Error("sparse file content differs")
	}
}

// TestExtractClearsSetIDBits: regular files of a stream never get their
// set-user-ID or set-group-ID bits on the target; directories keep setgid,
// sticky bits stay.
func TestExtractClearsSetIDBits(t *testing.T) {
	dest := t.TempDir()
	ents := []ent{
		{hdr: tar.Header{Typeflag: tar.TypeDir, Name: "./", Mode: 0o755}},
		{hdr: tar.Header{Typeflag: tar.TypeDir, Name: "shared/", Mode: 0o3775}},
		{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "shared/suid", Mode: 0o4755}, data: "x"},
		{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "shared/sgid", Mode: 0o2711}, data: "x"},
		{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "shared/all", Mode: 0o7755}, data: "x"},
	}
	if _, err := Extract(context.Background(), dest, bytes.NewReader(stream(t, ents))); err != nil {
		t.Fatal(err)
	}
	want := map[string]uint32{"shared": 0o3775, "shared/suid": 0o755, "shared/sgid": 0o711, "shared/all": 0o1755}
	for n, m := range want {
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(dest, n), &st); err != nil {
			t.Fatal(err)
		}
		if st.Mode&0o7777 != m {
			t.Errorf("%s: mode %o, want %o", n, st.Mode&0o7777, m)
		}
	}
}

// TestExtractBoundsSparseSize: a sparse entry may not declare an apparent
// size beyond MaxFileSize (it would cost nothing to write and everything to
// whoever reads or indexes it later).
func TestExtractBoundsSparseSize(t *testing.T) {
	dest := t.TempDir()
	ents := []ent{
		{hdr: tar.Header{Typeflag: tar.TypeDir, Name: "./", Mode: 0o755}},
		{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "huge", Size: 1, PAXRecords: map[string]string{
			paxSparseMap: "0,1", paxSparseSize: strconv.FormatInt(1<<62, 10)}}, data: "x"},
	}
	_, err := Extract(context.Background(), dest, bytes.NewReader(stream(t, ents)))
	if err == nil || !strings.Contains(err.Error(), "bad sparse size") {
		t.Fatalf("Extract of a 2^62-byte sparse file: %v, want it refused", err)
	}
}
