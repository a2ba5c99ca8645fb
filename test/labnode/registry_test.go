package labnode

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/livemigrate/livemigrate/agent/archive/layout"
	"github.com/livemigrate/livemigrate/agent/checkpointimage"
)

func TestRegistryServesCheckpointImages(t *testing.T) {
	for _, disk := range []bool{false, true} {
		dir := ""
		if disk {
			dir = filepath.Join(t.TempDir(), "not-yet-there")
		}
		reg, err := StartRegistry("", dir)
		if err != nil {
			t.Fatal(err)
		}
		defer reg.Close()
		src := t.TempDir()
		_ = os.WriteFile(filepath.Join(src, "pages-1.img"), bytes.Repeat([]byte{3}, 20<<20), 0o600)
		p := filepath.Join(t.TempDir(), "checkpoint-a_b-app-x.tar")
		f, _ := os.Create(p)
		if err := layout.Write(f, layout.Container{Name: "app", CheckpointedAt: time.Now()}, src); err != nil {
			t.Fatal(err)
		}
		f.Close()
		o := checkpointimage.PushOptions{Insecure: true}
		res, err := checkpointimage.PushArchive(context.Background(), p, "app", nil, reg.Host+"/lm/b-a-app:m1", o)
		if err != nil {
			t.Fatalf("disk=%v: push: %v", disk, err)
		}
		var buf bytes.Buffer
		if _, err := checkpointimage.Pull(context.Background(), res.Reference, &buf, o); err != nil {
			t.Fatalf("disk=%v: pull: %v", disk, err)
		}
		want, _ := os.ReadFile(p)
		if !bytes.Equal(want, buf.Bytes()) {
			t.Errorf("disk=%v: pulled archive differs", disk)
		}
	}
}

// uploadChunks pushes blob through the upload API of the registry at host:
// POST, one PATCH per chunk (with Content-Range), PUT with the digest. It
// returns the PUT's status.
func uploadChunks(host, repo string, blob []byte, chunk int, digest string) (int, error) {
	base := "http://" + host
	resp, err := http.Post(base+"/v2/"+repo+"/blobs/uploads/", "", nil)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return 0, fmt.Errorf("POST: %s", resp.Status)
	}
	loc := resp.Header.Get("Location")
	for off := 0; off < len(blob); off += chunk {
		end := min(off+chunk, len(blob))
		req, _ := http.NewRequest(http.MethodPatch, base+loc, bytes.NewReader(blob[off:end]))
		req.Header.Set("Content-Range", fmt.Sprintf("%d-%d", off, end-1))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			return 0, fmt.Errorf("PATCH %d-%d: %s", off, end-1, resp.Status)
		}
		if got, want := resp.Header.Get("Range"), fmt.Sprintf("0-%d", end-1); got != want {
			return 0, fmt.Errorf("PATCH Range = %q, want %q", got, want)
		}
		loc = resp.Header.Get("Location")
	}
	req, _ := http.NewRequest(http.MethodPut, base+loc+"?digest="+digest, nil)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

func blobStatus(t *testing.T, host, repo, digest string) (int, []byte) {
	t.Helper()
	resp, err := http.Get("http://" + host + "/v2/" + repo + "/blobs/" + digest)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

func TestRegistryStreamsUploadsToDisk(t *testing.T) {
	dir := t.TempDir()
	reg, err := StartRegistry("", dir)
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	blob := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB

	// The bytes of an uncommitted upload are already on disk.
	resp, err := http.Post("http://"+reg.Host+"/v2/lm/a/blobs/uploads/", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	req, _ := http.NewRequest(http.MethodPatch, "http://"+reg.Host+loc, bytes.NewReader(blob))
	if resp, err = http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	id := resp.Header.Get("Docker-Upload-UUID")
	fi, err := os.Stat(filepath.Join(dir, "uploads", id))
	if err != nil || fi.Size() != int64(len(blob)) {
		t.Fatalf("upload file after PATCH: %v, size %v; want %d bytes on disk", err, fi, len(blob))
	}
	// A chunk that does not continue the upload is refused.
	req, _ = http.NewRequest(http.MethodPatch, "http://"+reg.Host+loc, bytes.NewReader([]byte("x")))
	req.Header.Set("Content-Range", "5-5")
	if resp, err = http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestedRangeNotSatisfiable {
		t.Errorf("out-of-order chunk: %s, want 416", resp.Status)
	}
	req, _ = http.NewRequest(http.MethodPut, "http://"+reg.Host+loc+"?digest="+sha(blob), nil)
	if resp, err = http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT: %s", resp.Status)
	}
	if _, err := os.Stat(filepath.Join(dir, "sha256", sha(blob)[len("sha256:"):])); err != nil {
		t.Errorf("committed blob not in the blob store: %v", err)
	}
	if code, got := blobStatus(t, reg.Host, "lm/a", sha(blob)); code != http.StatusOK || !bytes.Equal(got, blob) {
		t.Errorf("GET blob: %d, %d bytes; want 200 and the blob", code, len(got))
	}

	// Monolithic upload (POST with the digest).
	small := []byte("monolithic")
	resp, err = http.Post("http://"+reg.Host+"/v2/lm/a/blobs/uploads/?digest="+sha(small), "application/octet-stream", bytes.NewReader(small))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Errorf("monolithic POST: %s", resp.Status)
	}
	if code, got := blobStatus(t, reg.Host, "lm/a", sha(small)); code != http.StatusOK || !bytes.Equal(got, small) {
		t.Errorf("GET monolithic blob: %d %q", code, got)
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, "uploads")); len(ents) != 0 {
		t.Errorf("upload files left after commits: %d", len(ents))
	}
}

func TestRegistryRejectsWrongDigest(t *testing.T) {
	dir := t.TempDir()
	reg, err := StartRegistry("", dir)
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	blob := bytes.Repeat([]byte{7}, 300<<10)
	other := sha([]byte("something else"))
	if code, err := uploadChunks(reg.Host, "lm/a", blob, 100<<10, other); err != nil || code != http.StatusBadRequest {
		t.Fatalf("PUT with a wrong digest: %d (%v), want 400", code, err)
	}
	for _, d := range []string{other, sha(blob)} {
		if code, _ := blobStatus(t, reg.Host, "lm/a", d); code != http.StatusNotFound {
			t.Errorf("blob %s after a rejected upload: %d, want 404", d, code)
		}
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, "uploads")); len(ents) != 0 {
		t.Errorf("rejected upload left %d files", len(ents))
	}
}

func TestRegistryConcurrentUploads(t *testing.T) {
	reg, err := StartRegistry("", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	const n = 8
	blobs := make([][]byte, n)
	for i := range blobs {
		blobs[i] = bytes.Repeat([]byte{byte(i)}, (2<<20)+i*4096)
	}
	var wg sync.WaitGroup
	codes := make([]int, n)
	errs := make([]error, n)
	for i := range blobs {
		wg.Go(func() {
			codes[i], errs[i] = uploadChunks(reg.Host, fmt.Sprintf("lm/c%d", i%3), blobs[i], 256<<10, sha(blobs[i]))
		})
	}
	wg.Wait()
	for i, b := range blobs {
		if errs[i] != nil || codes[i] != http.StatusCreated {
			t.Errorf("upload %d: %d (%v), want 201", i, codes[i], errs[i])
			continue
		}
		if code, got := blobStatus(t, reg.Host, fmt.Sprintf("lm/c%d", i%3), sha(b)); code != http.StatusOK || !bytes.Equal(got, b) {
			t.Errorf("blob %d: %d, %d bytes; want 200 and its %d bytes", i, code, len(got), len(b))
		}
	}
}
