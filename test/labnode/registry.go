package labnode

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"k8s.io/klog/v2"
)

// Registry is a running lab OCI registry.
type Registry struct {
	// Host is host:port, usable in image references.
	Host   string
	srv    *http.Server
	faults *faults
}

// StartRegistry serves an OCI registry over plain HTTP on a free port of
// 127.0.0.1 (addr "" ) or on addr. Blobs are kept in dir, or in memory when
// dir is empty.
//
// With a dir, blob uploads stream into files under dir/uploads as their
// bytes arrive (go-containerregistry's registry would hold each upload in
// memory until it is committed, which slows a 1 GiB checkpoint push to tens
// of MiB/s), their sha256 is computed on the way and checked when the upload
// is committed, and the blob is then renamed to dir/sha256/<hex>. Everything
// else (manifests, tags, blob reads) is served by go-containerregistry's
// registry over the same directory.
func StartRegistry(addr, dir string) (*Registry, error) {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	var h http.Handler
	if dir != "" {
		if h, err = newStreamingRegistry(dir); err != nil {
			_ = ln.Close()
			return nil, err
		}
	} else {
		h = registry.New(registry.Logger(discardLogger()))
	}
	f := &faults{next: h}
	srv := &http.Server{Handler: f, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			_ = ln.Close()
		}
	}()
	return &Registry{Host: ln.Addr().String(), srv: srv, faults: f}, nil
}

// FaultBlobGet is the registry's fault that refuses every blob download
// (GET /v2/<name>/blobs/<digest>) with 404 BLOB_UNKNOWN, as a registry that
// lost a blob after it was pushed: uploads, HEAD checks and manifests keep
// working, so a push succeeds and its pull fails.
const FaultBlobGet = "blob-get"

// FaultsPath is where the registry's faults are switched over HTTP, on the
// registry's own listener: PUT FaultsPath+name turns a fault on, DELETE
// turns it off, GET answers "on" or "off". Only the lab registry has it.
const FaultsPath = "/lab/faults/"

// SetFault turns one of the registry's faults (FaultBlobGet) on or off.
func (r *Registry) SetFault(name string, on bool) error { return r.faults.set(name, on) }

// faults serves the fault switches and applies them in front of the
// registry's handler.
type faults struct {
	next    http.Handler
	blobGet atomic.Bool
}

func (f *faults) set(name string, on bool) error {
	switch name {
	case FaultBlobGet:
		if f.blobGet.Swap(on) != on {
			klog.InfoS("Registry fault switched", "fault", name, "on", on)
		}
		return nil
	}
	return fmt.Errorf("no registry fault %q", name)
}

func (f *faults) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if name, ok := strings.CutPrefix(req.URL.Path, FaultsPath); ok {
		f.serveSwitch(w, req, name)
		return
	}
	if req.Method == http.MethodGet && f.blobGet.Load() {
		if name, digest, ok := blobPath(req.URL.Path); ok {
			klog.InfoS("Refusing a blob download (fault "+FaultBlobGet+")", "repository", name, "digest", digest)
			(&regError{http.StatusNotFound, "BLOB_UNKNOWN", fmt.Sprintf("blob unknown to registry: %s", digest)}).write(w)
			return
		}
	}
	f.next.ServeHTTP(w, req)
}

func (f *faults) serveSwitch(w http.ResponseWriter, req *http.Request, name string) {
	if name != FaultBlobGet {
		http.Error(w, fmt.Sprintf("no registry fault %q", name), http.StatusNotFound)
		return
	}
	switch req.Method {
	case http.MethodPut, http.MethodDelete:
		_ = f.set(name, req.Method == http.MethodPut)
		w.WriteHeader(http.StatusNoContent)
	case http.MethodGet:
		state := "off"
		if f.blobGet.Load() {
			state = "on"
		}
		_, _ = io.WriteString(w, state+"\n")
	default:
		http.Error(w, req.Method+" is not supported", http.StatusMethodNotAllowed)
	}
}

// blobPath splits /v2/<name>/blobs/<digest> into name and digest; ok is
// false for any other path (uploads included).
func blobPath(p string) (name, digest string, ok bool) {
	rest, found := strings.CutPrefix(p, "/v2/")
	if !found {
		return "", "", false
	}
	i := strings.LastIndex(rest, "/blobs/")
	if i <= 0 {
		return "", "", false
	}
	name, digest = rest[:i], rest[i+len("/blobs/"):]
	if digest == "" || digest == "uploads" || strings.Contains(digest, "/") {
		return "", "", false
	}
	return name, digest, true
}

// Close stops the registry.
func (r *Registry) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return r.srv.Shutdown(ctx)
}

// streamingRegistry takes blob uploads (POST, PATCH, PUT, GET and DELETE on
// /v2/<name>/blobs/uploads/...) itself, streaming them to disk, and hands
// every other request to go-containerregistry's registry, whose blobs live
// in the same directory.
type streamingRegistry struct {
	blobs *fileBlobs
	next  http.Handler

	mu      sync.Mutex
	uploads map[string]*upload
}

// upload is one blob upload in progress. Its lock serializes the requests
// of one upload; different uploads proceed in parallel.
type upload struct {
	mu   sync.Mutex
	f    *os.File
	sum  hash.Hash
	size int64
}

func newStreamingRegistry(dir string) (*streamingRegistry, error) {
	b := &fileBlobs{dir: dir}
	if err := os.MkdirAll(b.uploadDir(), 0o700); err != nil {
		return nil, err
	}
	return &streamingRegistry{
		blobs:   b,
		next:    registry.New(registry.WithBlobHandler(b), registry.Logger(discardLogger())),
		uploads: map[string]*upload{},
	}, nil
}

// uploadPath splits /v2/<name>/blobs/uploads[/<id>] into name and id; ok is
// false for any other path.
func uploadPath(p string) (name, id string, ok bool) {
	rest, found := strings.CutPrefix(p, "/v2/")
	if !found {
		return "", "", false
	}
	i := strings.LastIndex(rest, "/blobs/uploads")
	if i <= 0 {
		return "", "", false
	}
	name, tail := rest[:i], rest[i+len("/blobs/uploads"):]
	switch {
	case tail == "" || tail == "/":
		return name, "", true
	case strings.HasPrefix(tail, "/") && !strings.Contains(tail[1:], "/"):
		return name, tail[1:], true
	}
	return "", "", false
}

func (s *streamingRegistry) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	name, id, ok := uploadPath(req.URL.Path)
	if !ok {
		s.next.ServeHTTP(w, req)
		return
	}
	var err *regError
	switch {
	case req.Method == http.MethodPost && id == "":
		err = s.start(w, req, name)
	case req.Method == http.MethodPatch && id != "":
		err = s.patch(w, req, name, id)
	case req.Method == http.MethodPut && id != "":
		err = s.put(w, req, name, id)
	case req.Method == http.MethodGet && id != "":
		err = s.status(w, name, id)
	case req.Method == http.MethodDelete && id != "":
		err = s.cancel(w, id)
	default:
		err = &regError{http.StatusMethodNotAllowed, "UNSUPPORTED", fmt.Sprintf("%s on %s is not supported", req.Method, req.URL.Path)}
	}
	if err != nil {
		err.write(w)
	}
}

// start opens an upload. A POST with ?digest= is a monolithic upload,
// committed at once; ?mount= is not supported and answered, as the
// distribution spec allows, with a new upload session.
func (s *streamingRegistry) start(w http.ResponseWriter, req *http.Request, name string) *regError {
	id, up, rerr := s.open()
	if rerr != nil {
		return rerr
	}
	if d := req.URL.Query().Get("digest"); d != "" {
		defer s.drop(id)
		up.mu.Lock()
		defer up.mu.Unlock()
		if rerr := up.write(req.Body); rerr != nil {
			return rerr
		}
		return s.commit(w, up, name, d)
	}
	s.session(w, name, id, 0)
	w.WriteHeader(http.StatusAccepted)
	return nil
}

// patch appends a chunk (or the whole stream) to the upload.
func (s *streamingRegistry) patch(w http.ResponseWriter, req *http.Request, name, id string) *regError {
	up := s.get(id)
	if up == nil {
		return errUploadUnknown(id)
	}
	up.mu.Lock()
	defer up.mu.Unlock()
	if cr := req.Header.Get("Content-Range"); cr != "" {
		var start, end int64
		if _, err := fmt.Sscanf(strings.TrimPrefix(cr, "bytes="), "%d-%d", &start, &end); err != nil || start != up.size {
			w.Header().Set("Range", rangeHeader(up.size))
			return &regError{http.StatusRequestedRangeNotSatisfiable, "BLOB_UPLOAD_INVALID",
				fmt.Sprintf("Content-Range %q does not continue the %d bytes received", cr, up.size)}
		}
	}
	if rerr := up.write(req.Body); rerr != nil {
		return rerr
	}
	s.session(w, name, id, up.size)
	w.WriteHeader(http.StatusAccepted)
	return nil
}

// put appends the last bytes, if any, and commits the upload under its
// digest, which must match what was received.
func (s *streamingRegistry) put(w http.ResponseWriter, req *http.Request, name, id string) *regError {
	d := req.URL.Query().Get("digest")
	if d == "" {
		return &regError{http.StatusBadRequest, "DIGEST_INVALID", "digest not specified"}
	}
	up := s.get(id)
	if up == nil {
		return errUploadUnknown(id)
	}
	defer s.drop(id)
	up.mu.Lock()
	defer up.mu.Unlock()
	if rerr := up.write(req.Body); rerr != nil {
		return rerr
	}
	return s.commit(w, up, name, d)
}

func (s *streamingRegistry) status(w http.ResponseWriter, name, id string) *regError {
	up := s.get(id)
	if up == nil {
		return errUploadUnknown(id)
	}
	up.mu.Lock()
	size := up.size
	up.mu.Unlock()
	s.session(w, name, id, size)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *streamingRegistry) cancel(w http.ResponseWriter, id string) *regError {
	if s.get(id) == nil {
		return errUploadUnknown(id)
	}
	s.drop(id)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// commit checks the received bytes against digest d and moves them to the
// blob store.
func (s *streamingRegistry) commit(w http.ResponseWriter, up *upload, name, d string) *regError {
	h, err := v1.NewHash(d)
	if err != nil || h.Algorithm != "sha256" {
		return &regError{http.StatusBadRequest, "DIGEST_INVALID", fmt.Sprintf("digest %q is not a sha256 digest", d)}
	}
	if got := hex.EncodeToString(up.sum.Sum(nil)); got != h.Hex {
		return &regError{http.StatusBadRequest, "DIGEST_INVALID", fmt.Sprintf("the %d bytes received have digest sha256:%s, not %s", up.size, got, d)}
	}
	if err := up.f.Sync(); err != nil {
		return errInternal(err)
	}
	if err := s.blobs.commit(up.f.Name(), h); err != nil {
		return errInternal(err)
	}
	w.Header().Set("Location", "/v2/"+name+"/blobs/"+h.String())
	w.Header().Set("Docker-Content-Digest", h.String())
	w.WriteHeader(http.StatusCreated)
	return nil
}

func (s *streamingRegistry) session(w http.ResponseWriter, name, id string, size int64) {
	w.Header().Set("Location", "/v2/"+name+"/blobs/uploads/"+id)
	w.Header().Set("Docker-Upload-UUID", id)
	w.Header().Set("Range", rangeHeader(size))
	w.Header().Set("Content-Length", "0")
}

func (s *streamingRegistry) open() (string, *upload, *regError) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", nil, errInternal(err)
	}
	id := hex.EncodeToString(b[:])
	f, err := os.OpenFile(filepath.Join(s.blobs.uploadDir(), id), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return "", nil, errInternal(err)
	}
	up := &upload{f: f, sum: sha256.New()}
	s.mu.Lock()
	s.uploads[id] = up
	s.mu.Unlock()
	return id, up, nil
}

func (s *streamingRegistry) get(id string) *upload {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.uploads[id]
}

// drop forgets the upload and removes its file (gone already once committed).
func (s *streamingRegistry) drop(id string) {
	s.mu.Lock()
	up := s.uploads[id]
	delete(s.uploads, id)
	s.mu.Unlock()
	if up == nil {
		return
	}
	up.mu.Lock()
	defer up.mu.Unlock()
	_ = up.f.Close()
	_ = os.Remove(up.f.Name())
}

// write appends r to the upload's file and hash. The caller holds up.mu.
func (up *upload) write(r io.Reader) *regError {
	n, err := io.Copy(io.MultiWriter(up.f, up.sum), r)
	up.size += n
	if err != nil {
		return &regError{http.StatusBadRequest, "BLOB_UPLOAD_INVALID", fmt.Sprintf("reading the upload after %d bytes: %v", up.size, err)}
	}
	return nil
}

func rangeHeader(size int64) string {
	if size == 0 {
		return "0-0"
	}
	return fmt.Sprintf("0-%d", size-1)
}

// fileBlobs stores blobs as dir/sha256/<hex>, like
// go-containerregistry's disk blob handler, but reports a blob's size
// without hashing it again on every HEAD and GET: its digest was checked
// when it was committed.
type fileBlobs struct{ dir string }

func (b *fileBlobs) uploadDir() string { return filepath.Join(b.dir, "uploads") }

func (b *fileBlobs) path(h v1.Hash) string { return filepath.Join(b.dir, h.Algorithm, h.Hex) }

func (b *fileBlobs) commit(tmp string, h v1.Hash) error {
	if err := os.MkdirAll(filepath.Join(b.dir, h.Algorithm), 0o700); err != nil {
		return err
	}
	return os.Rename(tmp, b.path(h))
}

func (b *fileBlobs) Stat(_ context.Context, _ string, h v1.Hash) (int64, error) {
	fi, err := os.Stat(b.path(h))
	if errors.Is(err, os.ErrNotExist) {
		return 0, registry.ErrNotFound
	}
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

func (b *fileBlobs) Get(_ context.Context, _ string, h v1.Hash) (io.ReadCloser, error) {
	f, err := os.Open(b.path(h))
	if errors.Is(err, os.ErrNotExist) {
		return nil, registry.ErrNotFound
	}
	return f, err
}

// Put stores a blob handed over by go-containerregistry's registry (which
// wraps rc in a digest check). The streaming handler takes every upload
// before the library sees it, so this only serves completeness.
func (b *fileBlobs) Put(_ context.Context, _ string, h v1.Hash, rc io.ReadCloser) error {
	defer rc.Close()
	f, err := os.CreateTemp(b.uploadDir(), "put-*")
	if err != nil {
		return err
	}
	_, err = io.Copy(f, rc)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(f.Name())
		return err
	}
	return b.commit(f.Name(), h)
}

func (b *fileBlobs) Delete(_ context.Context, _ string, h v1.Hash) error {
	err := os.Remove(b.path(h))
	if errors.Is(err, os.ErrNotExist) {
		return registry.ErrNotFound
	}
	return err
}

// regError is an error answer in the distribution spec's format.
type regError struct {
	status  int
	code    string
	message string
}

func (e *regError) write(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(e.status)
	_ = json.NewEncoder(w).Encode(map[string]any{"errors": []map[string]string{{"code": e.code, "message": e.message}}})
}

func errUploadUnknown(id string) *regError {
	return &regError{http.StatusNotFound, "BLOB_UPLOAD_UNKNOWN", fmt.Sprintf("no upload %q in progress", id)}
}

func errInternal(err error) *regError {
	return &regError{http.StatusInternalServerError, "UNKNOWN", err.Error()}
}
