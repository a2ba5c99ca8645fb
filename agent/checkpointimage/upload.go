package checkpointimage

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/url"
	"os"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// UploadBlob streams the file at p to repo as one blob in a single pass,
// hashing while it sends (the registry checks the digest when the upload is
// committed), and returns the blob's digest and size. A checkpoint archive is
// read once, not once to hash and once to send.
func UploadBlob(ctx context.Context, repo string, p string, o PushOptions) (v1.Hash, int64, error) {
	r, err := name.NewRepository(repo, o.nameOpts()...)
	if err != nil {
		return v1.Hash{}, 0, err
	}
	base := o.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	rt, err := transport.NewWithContext(ctx, r.Registry, o.Credentials.authenticator(), base, []string{r.Scope(transport.PushScope)})
	if err != nil {
		return v1.Hash{}, 0, fmt.Errorf("registry auth: %w", err)
	}
	client := &http.Client{Transport: rt}
	root := url.URL{Scheme: r.Scheme(), Host: r.RegistryStr()}

	// Start the upload.
	u := root
	u.Path = "/v2/" + r.RepositoryStr() + "/blobs/uploads/"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), nil)
	if err != nil {
		return v1.Hash{}, 0, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return v1.Hash{}, 0, err
	}
	err = transport.CheckError(resp, http.StatusAccepted)
	resp.Body.Close()
	if err != nil {
		return v1.Hash{}, 0, fmt.Errorf("start upload: %w", err)
	}
	loc, err := resolve(&root, resp.Header.Get("Location"))
	if err != nil {
		return v1.Hash{}, 0, err
	}

	// Stream the file, hashing on the way.
	f, err := os.Open(p)
	if err != nil {
		return v1.Hash{}, 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return v1.Hash{}, 0, err
	}
	h := sha256.New()
	body := &hashingReader{r: f, h: h}
	req, err = http.NewRequestWithContext(ctx, http.MethodPatch, loc.String(), body)
	if err != nil {
		return v1.Hash{}, 0, err
	}
	req.ContentLength = fi.Size()
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err = client.Do(req)
	if err != nil {
		return v1.Hash{}, 0, err
	}
	err = transport.CheckError(resp, http.StatusNoContent, http.StatusAccepted, http.StatusCreated)
	resp.Body.Close()
	if err != nil {
		return v1.Hash{}, 0, fmt.Errorf("send: %w", err)
	}
	if body.n != fi.Size() {
		return v1.Hash{}, 0, fmt.Errorf("sent %d of %d bytes", body.n, fi.Size())
	}
	if next := resp.Header.Get("Location"); next != "" {
		if loc, err = resolve(&root, next); err != nil {
			return v1.Hash{}, 0, err
		}
	}
	digest := v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h.Sum(nil))}

	// Commit under the digest; the registry verifies it.
	q := loc.Query()
	q.Set("digest", digest.String())
	loc.RawQuery = q.Encode()
	req, err = http.NewRequestWithContext(ctx, http.MethodPut, loc.String(), nil)
	if err != nil {
		return v1.Hash{}, 0, err
	}
	resp, err = client.Do(req)
	if err != nil {
		return v1.Hash{}, 0, err
	}
	err = transport.CheckError(resp, http.StatusCreated)
	resp.Body.Close()
	if err != nil {
		return v1.Hash{}, 0, fmt.Errorf("commit: %w", err)
	}
	return digest, fi.Size(), nil
}

func resolve(root *url.URL, loc string) (*url.URL, error) {
	if loc == "" {
		return nil, fmt.Errorf("registry gave no upload location")
	}
	u, err := url.Parse(loc)
	if err != nil {
		return nil, err
	}
	return root.ResolveReference(u), nil
}

type hashingReader struct {
	r io.Reader
	h hash.Hash
	n int64
}

func (hr *hashingReader) Read(p []byte) (int, error) {
	n, err := hr.r.Read(p)
	if n > 0 {
		hr.h.Write(p[:n])
		hr.n += int64(n)
	}
	return n, err
}

// knownLayer returns the archive at p as a layer whose digest is already
// known (it was uploaded with UploadBlob).
func knownLayer(p string, digest v1.Hash, size int64) v1.Layer {
	l := &archiveLayer{path: p, hash: digest, size: size}
	l.once.Do(func() {})
	return l
}
