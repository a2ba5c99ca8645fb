package checkpointimage

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"

	metadata "github.com/checkpoint-restore/checkpointctl/lib"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// AnnotationCRIOCheckpointName marks a checkpoint image for CRI-O; its value
// is the checkpointed container's name.
const AnnotationCRIOCheckpointName = "io.kubernetes.cri-o.annotations.checkpoint.name"

// archiveLayer is the archive file as an uncompressed OCI layer.
type archiveLayer struct {
	path string
	once sync.Once
	hash v1.Hash
	size int64
	err  error
}

var _ v1.Layer = (*archiveLayer)(nil)

// LayerFromArchive returns the archive at p as an uncompressed layer. The
// digest is computed on first use.
func LayerFromArchive(p string) v1.Layer { return &archiveLayer{path: p} }

func (l *archiveLayer) compute() {
	l.once.Do(func() {
		f, err := os.Open(l.path)
		if err != nil {
			l.err = err
			return
		}
		defer f.Close()
		h := sha256.New()
		n, err := io.Copy(h, f)
		if err != nil {
			l.err = err
			return
		}
		l.size = n
		l.hash = v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h.Sum(nil))}
	})
}

func (l *archiveLayer) Digest() (v1.Hash, error) { l.compute(); return l.hash, l.err }
func (l *archiveLayer) DiffID() (v1.Hash, error) { l.compute(); return l.hash, l.err }
func (l *archiveLayer) Size() (int64, error)     { l.compute(); return l.size, l.err }
func (l *archiveLayer) Compressed() (io.ReadCloser, error) {
	return os.Open(l.path)
}
func (l *archiveLayer) Uncompressed() (io.ReadCloser, error) { return os.Open(l.path) }
func (l *archiveLayer) MediaType() (types.MediaType, error) {
	return types.OCIUncompressedLayer, nil
}

// Build makes the checkpoint image index for the archive at p. annotations
// are the org.criu.checkpoint.* annotations read from the archive; the
// container name is required.
func Build(p string, containerName string, annotations map[string]string, created time.Time) (v1.ImageIndex, error) {
	return build(LayerFromArchive(p), containerName, annotations, created)
}

func build(layer v1.Layer, containerName string, annotations map[string]string, created time.Time) (v1.ImageIndex, error) {
	if containerName == "" {
		return nil, errors.New("checkpoint image needs the container name")
	}
	anns := map[string]string{}
	for k, v := range annotations {
		anns[k] = v
	}
	anns[metadata.CheckpointAnnotationName] = containerName
	arch := anns[metadata.CheckpointAnnotationHostArch]
	if arch == "" {
		arch = runtime.GOARCH
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err := mutate.AppendLayers(img, layer)
	if err != nil {
		return nil, fmt.Errorf("add archive layer: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Architecture, cf.OS = arch, "linux"
	cf.Created = v1.Time{Time: created.UTC()}
	cf.Config.Labels = map[string]string{AnnotationCRIOCheckpointName: containerName}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, err
	}
	manifestAnns := map[string]string{AnnotationCRIOCheckpointName: containerName}
	for k, v := range anns {
		manifestAnns[k] = v
	}
	img = mutate.Annotations(img, manifestAnns).(v1.Image)
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
		Add: img,
		Descriptor: v1.Descriptor{
			Platform:    &v1.Platform{OS: "linux", Architecture: arch},
			Annotations: map[string]string{metadata.CheckpointAnnotationName: containerName},
		},
	})
	return mutate.Annotations(idx, anns).(v1.ImageIndex), nil
}

// Credentials are registry credentials.
type Credentials struct {
	Username, Password, Token string
}

func (c Credentials) authenticator() authn.Authenticator {
	switch {
	case c.Token != "":
		return &authn.Bearer{Token: c.Token}
	case c.Username != "" || c.Password != "":
		return &authn.Basic{Username: c.Username, Password: c.Password}
	default:
		return authn.Anonymous
	}
}

// CredentialsFromDockerConfigJSON picks the entry for registry from a
// kubernetes.io/dockerconfigjson Secret's .dockerconfigjson.
func CredentialsFromDockerConfigJSON(data []byte, registry string) (Credentials, error) {
	var cfg struct {
		Auths map[string]struct {
			Username      string `json:"username"`
			Password      string `json:"password"`
			Auth          string `json:"auth"`
			IdentityToken string `json:"identitytoken"`
			RegistryToken string `json:"registrytoken"`
		} `json:"auths"`
	}
	if err := json.Unmarshal(data, &cfg); err != nil {
		return Credentials{}, fmt.Errorf("parse docker config: %w", err)
	}
	for host, e := range cfg.Auths {
		h := strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(host, "https://"), "http://"), "/")
		if h != registry {
			continue
		}
		c := Credentials{Username: e.Username, Password: e.Password, Token: e.RegistryToken}
		if e.Auth != "" {
			raw, err := base64.StdEncoding.DecodeString(e.Auth)
			if err != nil {
				return Credentials{}, fmt.Errorf("decode auth for %s: %w", host, err)
			}
			u, p, ok := strings.Cut(string(raw), ":")
			if !ok {
				return Credentials{}, fmt.Errorf("auth for %s is not user:password", host)
			}
			c.Username, c.Password = u, p
		}
		return c, nil
	}
	return Credentials{}, fmt.Errorf("no credentials for registry %s", registry)
}

// PushOptions configure a push.
type PushOptions struct {
	Credentials Credentials
	// Insecure allows plain HTTP.
	Insecure bool
	// Transport overrides the HTTP transport (custom CAs).
	Transport http.RoundTripper
	// Jobs is the number of concurrent uploads.
	Jobs int
}

func (o PushOptions) remote(ctx context.Context) []remote.Option {
	opts := []remote.Option{remote.WithContext(ctx), remote.WithAuth(o.Credentials.authenticator())}
	if o.Transport != nil {
		opts = append(opts, remote.WithTransport(o.Transport))
	}
	if o.Jobs > 0 {
		opts = append(opts, remote.WithJobs(o.Jobs))
	}
	return opts
}

func (o PushOptions) nameOpts() []name.Option {
	if o.Insecure {
		return []name.Option{name.Insecure}
	}
	return nil
}

// Result is what a push did.
type Result struct {
	// Reference is the pushed image by digest (repository@sha256:...).
	Reference string
	// Digest of the image index.
	Digest string
	// Bytes is the layer size (the archive), the bulk of what was sent.
	Bytes    int64
	Duration time.Duration
}

// Throughput is bytes per second.
func (r Result) Throughput() float64 {
	if r.Duration <= 0 {
		return 0
	}
	return float64(r.Bytes) / r.Duration.Seconds()
}

// Repository is the repository a container's checkpoint image is pushed to.
func Repository(prefix, namespace, pod, container string) string {
	return strings.TrimSuffix(prefix, "/") + "/" + strings.ToLower(namespace+"-"+pod+"-"+container)
}

// Push pushes idx to ref (repository:tag) and returns it by digest.
func Push(ctx context.Context, idx v1.ImageIndex, ref string, o PushOptions) (*Result, error) {
	tag, err := name.NewTag(ref, o.nameOpts()...)
	if err != nil {
		return nil, fmt.Errorf("image reference %q: %w", ref, err)
	}
	var size int64
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	for _, d := range im.Manifests {
		img, err := idx.Image(d.Digest)
		if err != nil {
			return nil, err
		}
		layers, err := img.Layers()
		if err != nil {
			return nil, err
		}
		for _, l := range layers {
			s, err := l.Size()
			if err != nil {
				return nil, err
			}
			size += s
		}
	}
	start := time.Now()
	if err := remote.WriteIndex(tag, idx, o.remote(ctx)...); err != nil {
		return nil, fmt.Errorf("push %s: %w", tag, err)
	}
	dur := time.Since(start)
	dig, err := idx.Digest()
	if err != nil {
		return nil, err
	}
	return &Result{
		Reference: tag.Context().Digest(dig.String()).String(),
		Digest:    dig.String(),
		Bytes:     size,
		Duration:  dur,
	}, nil
}

// PushArchive builds and pushes the checkpoint image of the archive at p:
// the archive is streamed to the registry once (UploadBlob), then the config,
// image manifest and index are pushed. The returned duration covers it all.
func PushArchive(ctx context.Context, p, containerName string, annotations map[string]string, ref string, o PushOptions) (*Result, error) {
	start := time.Now()
	tag, err := name.NewTag(ref, o.nameOpts()...)
	if err != nil {
		return nil, fmt.Errorf("image reference %q: %w", ref, err)
	}
	digest, size, err := UploadBlob(ctx, tag.Context().String(), p, o)
	if err != nil {
		return nil, fmt.Errorf("upload archive: %w", err)
	}
	idx, err := build(knownLayer(p, digest, size), containerName, annotations, time.Now())
	if err != nil {
		return nil, err
	}
	res, err := Push(ctx, idx, ref, o)
	if err != nil {
		return nil, err
	}
	res.Duration = time.Since(start)
	return res, nil
}

// Pulled is a checkpoint image fetched back.
type Pulled struct {
	ContainerName      string
	IndexAnnotations   map[string]string
	ManifestAnnotation map[string]string
}

// Pull fetches the checkpoint image ref and writes its layer (the archive)
// to w. It refuses images that are not checkpoint images.
func Pull(ctx context.Context, ref string, w io.Writer, o PushOptions) (*Pulled, error) {
	r, err := name.ParseReference(ref, o.nameOpts()...)
	if err != nil {
		return nil, fmt.Errorf("image reference %q: %w", ref, err)
	}
	idx, err := remote.Index(r, o.remote(ctx)...)
	if err != nil {
		return nil, fmt.Errorf("fetch index %s: %w", ref, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	if len(im.Manifests) != 1 {
		return nil, fmt.Errorf("checkpoint image %s has %d manifests, want 1", ref, len(im.Manifests))
	}
	img, err := idx.Image(im.Manifests[0].Digest)
	if err != nil {
		return nil, err
	}
	m, err := img.Manifest()
	if err != nil {
		return nil, err
	}
	cname := m.Annotations[AnnotationCRIOCheckpointName]
	if cname == "" || im.Annotations[metadata.CheckpointAnnotationName] == "" {
		return nil, fmt.Errorf("%s is not a checkpoint image", ref)
	}
	layers, err := img.Layers()
	if err != nil {
		return nil, err
	}
	if len(layers) != 1 {
		return nil, fmt.Errorf("checkpoint image %s has %d layers, want 1", ref, len(layers))
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	if _, err := io.Copy(w, rc); err != nil {
		return nil, fmt.Errorf("read checkpoint layer: %w", err)
	}
	return &Pulled{ContainerName: cname, IndexAnnotations: im.Annotations, ManifestAnnotation: m.Annotations}, nil
}
