package blockdelta

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// fuzzTree is a target volume (dst) beside a directory it must never reach
// (outside), with a symlink out of the volume and one inside it.
func fuzzTree(t *testing.T) (dst, outside string, secret []byte) {
	base := t.TempDir()
	dst, outside = filepath.Join(base, "dst"), filepath.Join(base, "outside")
	randomFile(t, filepath.Join(dst, "dir", "f"), 2*BlockSize)
	secret = randomFile(t, filepath.Join(outside, "secret"), BlockSize)
	if err := os.Symlink(outside, filepath.Join(dst, "out")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("dir", filepath.Join(dst, "in")); err != nil {
		t.Fatal(err)
	}
	return dst, outside, secret
}

func frames(t testing.TB, vs ...any) []byte {
	var b bytes.Buffer
	for _, v := range vs {
		if data, ok := v.([]byte); ok {
			b.Write(data)
			continue
		}
		if err := writeFrame(&b, v); err != nil {
			t.Fatal(err)
		}
	}
	return b.Bytes()
}

// outsideUnchanged fails when anything beside dst, or the secret, changed.
func outsideUnchanged(t *testing.T, dst, outside string, secret []byte) {
	names, err := os.ReadDir(filepath.Dir(dst))
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != 2 {
		t.Fatalf("entries beside the target: %v", names)
	}
	got, err := os.ReadFile(filepath.Join(outside, "secret"))
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("the file outside the volume changed (%v)", err)
	}
}

// FuzzApply feeds arbitrary bytes as a delta stream to the receiver: it
// must refuse or apply them without panicking and never write outside its
// target. Seeds: a write to a file of the volume, and writes through a
// symlink out of the volume, through one inside it and through "..".
func FuzzApply(f *testing.F) {
	block := bytes.Repeat([]byte("X"), BlockSize)
	for _, p := range []string{"dir/f", "out/secret", "in/f", "../outside/secret", "/etc/passwd"} {
		c := chunk{Path: p, Size: 2 * BlockSize, Mode: 0o644, Blocks: []int64{0}, DataLen: BlockSize, Last: true}
		f.Add(frames(f, &c, block, &chunk{}))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		dst, outside, secret := fuzzTree(t)
		_, _ = Apply(context.Background(), dst, bytes.NewReader(data), io.Discard)
		outsideUnchanged(t, dst, outside, secret)
	})
}

// FuzzServeIndex feeds arbitrary bytes as an index request: the receiver
// must answer without panicking, and never index a file outside its target
// (an answer without an error carries no hashes of the secret outside).
func FuzzServeIndex(f *testing.F) {
	for _, paths := range [][]string{{"dir/f"}, {"out/secret", "in/f"}, {"../outside/secret", "/etc/passwd", ""}} {
		f.Add(frames(f, &indexRequest{Paths: paths}))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		dst, outside, secret := fuzzTree(t)
		var out bytes.Buffer
		_ = ServeIndex(context.Background(), dst, bytes.NewReader(data), &out)
		outsideUnchanged(t, dst, outside, secret)
		want := hash(nil, secret)
		for out.Len() > 0 {
			var fi FileIndex
			if err := readFrame(&out, 1<<30, &fi); err != nil {
				t.Fatalf("answer does not decode: %v", err)
			}
			if fi.Err == "" && bytes.Contains(fi.Hashes, want) {
				t.Fatalf("indexed the file outside the volume as %q", fi.Path)
			}
		}
	})
}
