package checkpointimage

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/livemigrate/livemigrate/agent/archive"
	"github.com/livemigrate/livemigrate/agent/archive/layout"
)

func writeArchive(t *testing.T, pages int) string {
	t.Helper()
	dir := t.TempDir()
	images := filepath.Join(dir, "img")
	_ = os.Mkdir(images, 0o700)
	b := make([]byte, pages)
	_, _ = rand.Read(b)
	if err := os.WriteFile(filepath.Join(images, "pages-1.img"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	c := layout.Container{Name: "app", PodName: "web-0", PodNamespace: "db", Image: "livemigrate.io/labapp:latest",
		Runtime: "runc", CRIUVersion: "4.1", Architecture: "amd64", CheckpointedAt: time.Now()}
	p := filepath.Join(dir, layout.ArchiveName("web-0", "db", "app", c.CheckpointedAt))
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := layout.Write(f, c, images); err != nil {
		t.Fatal(err)
	}
	_ = f.Close()
	return p
}

func TestPushPullCheckpointImage(t *testing.T) {
	srv := httptest.NewServer(registry.New())
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	p := writeArchive(t, 1<<20)
	info, err := archive.Inspect(p, archive.DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ref := Repository(host+"/livemigrate", "db", "web-0", "app") + ":mig-1"
	res, err := PushArchive(ctx, p, info.ContainerName, info.Annotations, ref, PushOptions{Insecure: true})
	if err != nil {
		t.Fatalf("push: %v", err)
	}
	fi, _ := os.Stat(p)
	if res.Bytes != fi.Size() {
		t.Errorf("Bytes = %d, want the archive size %d", res.Bytes, fi.Size())
	}
	if !strings.HasPrefix(res.Reference, host+"/livemigrate/db-web-0-app@sha256:") || !strings.HasSuffix(res.Reference, res.Digest) {
		t.Errorf("Reference = %q, digest %q", res.Reference, res.Digest)
	}
	if res.Throughput() <= 0 {
		t.Errorf("Throughput = %v", res.Throughput())
	}

	// Read back raw: index and manifest annotations, media types.
	r, _ := name.ParseReference(res.Reference, name.Insecure)
	idx, err := remote.Index(r)
	if err != nil {
		t.Fatal(err)
	}
	im, _ := idx.IndexManifest()
	if im.MediaType != types.OCIImageIndex {
		t.Errorf("index media type %q", im.MediaType)
	}
	if got := im.Annotations["org.criu.checkpoint.container.name"]; got != "app" {
		t.Errorf("index annotation org.criu.checkpoint.container.name = %q, want app", got)
	}
	if got := im.Annotations["org.criu.checkpoint.criu.version"]; got != "4.1" {
		t.Errorf("index annotation criu version = %q", got)
	}
	img, _ := idx.Image(im.Manifests[0].Digest)
	m, _ := img.Manifest()
	if got := m.Annotations["io.kubernetes.cri-o.annotations.checkpoint.name"]; got != "app" {
		t.Errorf("manifest annotation io.kubernetes.cri-o.annotations.checkpoint.name = %q, want app", got)
	}
	if len(m.Layers) != 1 || m.Layers[0].MediaType != types.OCIUncompressedLayer {
		t.Fatalf("layers = %+v, want one uncompressed OCI layer", m.Layers)
	}
	cf, _ := img.ConfigFile()
	if cf.Architecture != "amd64" || cf.OS != "linux" {
		t.Errorf("platform %s/%s", cf.OS, cf.Architecture)
	}

	// Pull: layer contents are the archive, byte for byte.
	var buf bytes.Buffer
	pulled, err := Pull(ctx, res.Reference, &buf, PushOptions{Insecure: true})
	if err != nil {
		t.Fatalf("pull: %v", err)
	}
	want, _ := os.ReadFile(p)
	if !bytes.Equal(want, buf.Bytes()) {
		t.Errorf("pulled layer differs from the archive (%d vs %d bytes)", buf.Len(), len(want))
	}
	if pulled.ContainerName != "app" {
		t.Errorf("pulled container name %q", pulled.ContainerName)
	}
	// The layer is itself a valid checkpoint archive.
	if _, err := archive.ValidateStream(bytes.NewReader(buf.Bytes()), archive.DefaultLimits); err != nil {
		t.Errorf("pulled layer is not a valid archive: %v", err)
	}
}

func TestPullRefusesOrdinaryImage(t *testing.T) {
	srv := httptest.NewServer(registry.New())
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	p := writeArchive(t, 1024)
	idx, err := Build(p, "app", nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	// Strip checkpoint annotations by pushing only the image under a tag.
	im, _ := idx.IndexManifest()
	img, _ := idx.Image(im.Manifests[0].Digest)
	tag, _ := name.NewTag(host+"/plain/app:v1", name.Insecure)
	if err := remote.Write(tag, img); err != nil {
		t.Fatal(err)
	}
	if _, err := Pull(context.Background(), tag.String(), &bytes.Buffer{}, PushOptions{Insecure: true}); err == nil {
		t.Errorf("Pull accepted an image that is not a checkpoint image index")
	}
}

func TestPushWithCredentials(t *testing.T) {
	reg := registry.New()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		if !ok || u != "pusher" || p != "s3cret" {
			w.Header().Set("WWW-Authenticate", `Basic realm="lab"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		reg.ServeHTTP(w, r)
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	p := writeArchive(t, 4096)
	ctx := context.Background()
	ref := host + "/lm/x:1"
	if _, err := PushArchive(ctx, p, "app", nil, ref, PushOptions{Insecure: true, Credentials: Credentials{Username: "pusher", Password: "wrong"}}); err == nil {
		t.Fatalf("push with wrong credentials succeeded")
	}
	auth := base64.StdEncoding.EncodeToString([]byte("pusher:s3cret"))
	creds, err := CredentialsFromDockerConfigJSON([]byte(`{"auths":{"http://`+host+`":{"auth":"`+auth+`"}}}`), host)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := PushArchive(ctx, p, "app", nil, ref, PushOptions{Insecure: true, Credentials: creds}); err != nil {
		t.Fatalf("push with the secret's credentials: %v", err)
	}
}

func TestCredentialsFromDockerConfigJSON(t *testing.T) {
	cases := []struct {
		name    string
		data    string
		reg     string
		want    Credentials
		wantErr bool
	}{
		{"user password", `{"auths":{"r.io":{"username":"u","password":"p"}}}`, "r.io", Credentials{Username: "u", Password: "p"}, false},
		{"auth field", `{"auths":{"https://r.io/":{"auth":"dTpw"}}}`, "r.io", Credentials{Username: "u", Password: "p"}, false},
		{"token", `{"auths":{"r.io":{"registrytoken":"t"}}}`, "r.io", Credentials{Token: "t"}, false},
		{"other registry", `{"auths":{"q.io":{"username":"u"}}}`, "r.io", Credentials{}, true},
		{"bad auth", `{"auths":{"r.io":{"auth":"!!"}}}`, "r.io", Credentials{}, true},
		{"not json", `x`, "r.io", Credentials{}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := CredentialsFromDockerConfigJSON([]byte(tc.data), tc.reg)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestPushToDiskRegistry(t *testing.T) {
	srv := httptest.NewServer(registry.New(registry.WithBlobHandler(registry.NewDiskBlobHandler(t.TempDir()))))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	p := writeArchive(t, 1<<20)
	res, err := PushArchive(context.Background(), p, "app", nil, host+"/lm/x:1", PushOptions{Insecure: true})
	if err != nil {
		t.Fatalf("push: %v", err)
	}
	var buf bytes.Buffer
	if _, err := Pull(context.Background(), res.Reference, &buf, PushOptions{Insecure: true}); err != nil {
		t.Fatalf("pull: %v", err)
	}
	want, _ := os.ReadFile(p)
	if !bytes.Equal(want, buf.Bytes()) {
		t.Errorf("pulled layer differs from the archive")
	}
}
