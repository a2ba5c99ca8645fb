package labnode

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/livemigrate/livemigrate/agent/archive/layout"
	"github.com/livemigrate/livemigrate/agent/checkpointimage"
)

// switchFault sends method to the registry's switch of fault and returns
// the status and body.
func switchFault(t *testing.T, host, method, fault string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, "http://"+host+FaultsPath+fault, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

func TestRegistryBlobGetFault(t *testing.T) {
	for _, disk := range []bool{false, true} {
		dir := ""
		if disk {
			dir = t.TempDir()
		}
		reg, err := StartRegistry("", dir)
		if err != nil {
			t.Fatal(err)
		}
		defer reg.Close()

		if code, state := switchFault(t, reg.Host, http.MethodGet, FaultBlobGet); code != http.StatusOK || state != "off" {
			t.Fatalf("disk=%v: fault state at start: %d %q, want 200 off", disk, code, state)
		}
		if code, _ := switchFault(t, reg.Host, http.MethodPut, "no-such-fault"); code != http.StatusNotFound {
			t.Errorf("disk=%v: switching an unknown fault: %d, want 404", disk, code)
		}
		if code, _ := switchFault(t, reg.Host, http.MethodPut, FaultBlobGet); code != http.StatusNoContent {
			t.Fatalf("disk=%v: PUT %s: %d, want 204", disk, FaultBlobGet, code)
		}
		if code, state := switchFault(t, reg.Host, http.MethodGet, FaultBlobGet); code != http.StatusOK || state != "on" {
			t.Fatalf("disk=%v: fault state after PUT: %d %q, want 200 on", disk, code, state)
		}

		// Uploads work while the fault is on: chunked, and the whole
		// checkpoint image push (blobs, config, manifests).
		blob := bytes.Repeat([]byte("lost after the push"), 10<<10)
		if code, err := uploadChunks(reg.Host, "lm/a", blob, 64<<10, sha(blob)); err != nil || code != http.StatusCreated {
			t.Fatalf("disk=%v: chunked upload with the fault on: %d (%v), want 201", disk, code, err)
		}
		src := t.TempDir()
		_ = os.WriteFile(filepath.Join(src, "pages-1.img"), bytes.Repeat([]byte{5}, 1<<20), 0o600)
		p := filepath.Join(t.TempDir(), "checkpoint.tar")
		f, _ := os.Create(p)
		if err := layout.Write(f, layout.Container{Name: "app", CheckpointedAt: time.Now()}, src); err != nil {
			t.Fatal(err)
		}
		f.Close()
		o := checkpointimage.PushOptions{Insecure: true}
		res, err := checkpointimage.PushArchive(context.Background(), p, "app", nil, reg.Host+"/lm/b-a-app:m1", o)
		if err != nil {
			t.Fatalf("disk=%v: push with the fault on: %v", disk, err)
		}

		// Blob downloads are refused with the distribution spec's error;
		// HEAD still finds the blob, the manifest is still served.
		code, body := blobStatus(t, reg.Host, "lm/a", sha(blob))
		var e struct {
			Errors []struct{ Code, Message string }
		}
		if err := json.Unmarshal(body, &e); code != http.StatusNotFound || err != nil || len(e.Errors) != 1 || e.Errors[0].Code != "BLOB_UNKNOWN" {
			t.Errorf("disk=%v: GET blob with the fault on: %d %s, want 404 with one BLOB_UNKNOWN error", disk, code, body)
		}
		resp, err := http.Head("http://" + reg.Host + "/v2/lm/a/blobs/" + sha(blob))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("disk=%v: HEAD blob with the fault on: %s, want 200", disk, resp.Status)
		}
		req, _ := http.NewRequest(http.MethodGet, "http://"+reg.Host+"/v2/lm/b-a-app/manifests/m1", nil)
		req.Header.Set("Accept", "application/vnd.oci.image.index.v1+json")
		if resp, err = http.DefaultClient.Do(req); err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("disk=%v: GET manifest with the fault on: %s, want 200", disk, resp.Status)
		}
		var buf bytes.Buffer
		if _, err := checkpointimage.Pull(context.Background(), res.Reference, &buf, o); err == nil || !strings.Contains(err.Error(), "BLOB_UNKNOWN") {
			t.Errorf("disk=%v: pull with the fault on: %v, want a BLOB_UNKNOWN error", disk, err)
		}

		// Off again: the same blobs are served.
		if code, _ := switchFault(t, reg.Host, http.MethodDelete, FaultBlobGet); code != http.StatusNoContent {
			t.Fatalf("disk=%v: DELETE %s: %d, want 204", disk, FaultBlobGet, code)
		}
		if code, got := blobStatus(t, reg.Host, "lm/a", sha(blob)); code != http.StatusOK || !bytes.Equal(got, blob) {
			t.Errorf("disk=%v: GET blob with the fault off: %d, %d bytes; want 200 and the blob", disk, code, len(got))
		}
		buf.Reset()
		if _, err := checkpointimage.Pull(context.Background(), res.Reference, &buf, o); err != nil {
			t.Errorf("disk=%v: pull with the fault off: %v", disk, err)
		} else if want, _ := os.ReadFile(p); !bytes.Equal(want, buf.Bytes()) {
			t.Errorf("disk=%v: pulled archive differs", disk)
		}

		// The Go switch is the same switch.
		if err := reg.SetFault(FaultBlobGet, true); err != nil {
			t.Fatal(err)
		}
		if code, _ := blobStatus(t, reg.Host, "lm/a", sha(blob)); code != http.StatusNotFound {
			t.Errorf("disk=%v: GET blob after SetFault(on): %d, want 404", disk, code)
		}
		if err := reg.SetFault("no-such-fault", true); err == nil {
			t.Errorf("disk=%v: SetFault of an unknown fault succeeded", disk)
		}
	}
}

func TestBlobPath(t *testing.T) {
	for p, want := range map[string]string{
		"/v2/lm/a/blobs/sha256:abc":       "lm/a sha256:abc",
		"/v2/a/blobs/sha256:abc":          "a sha256:abc",
		"/v2/lm/a/blobs/uploads":          "",
		"/v2/lm/a/blobs/uploads/":         "",
		"/v2/lm/a/blobs/uploads/123":      "",
		"/v2/lm/a/manifests/m1":           "",
		"/v2/lm/a/blobs/":                 "",
		"/v2//blobs/sha256:abc":           "",
		"/lab/faults/blob-get":            "",
		"/v2/lm/blobs/x/blobs/sha256:abc": "lm/blobs/x sha256:abc",
	} {
		name, digest, ok := blobPath(p)
		got := ""
		if ok {
			got = name + " " + digest
		}
		if got != want {
			t.Errorf("blobPath(%q) = %q, want %q", p, got, want)
		}
	}
}
