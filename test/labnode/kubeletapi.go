package labnode

import (
	"archive/tar"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"

	"github.com/livemigrate/livemigrate/agent/archive"
	"github.com/livemigrate/livemigrate/agent/archive/layout"
	"github.com/livemigrate/livemigrate/agent/checkpointimage"
	"github.com/livemigrate/livemigrate/agent/freezer"
	"github.com/livemigrate/livemigrate/test/labapp/labstate"
)

// Versions the lab runtime records in its archives.
const (
	RuntimeName    = "labnode"
	RuntimeVersion = "0.1.0"
	CRIUVersion    = "lab-4.1"
)

// appFile holds the lab app's configuration inside checkpoint/.
const appFile = "labapp.json"

func (r *Runtime) serveAPI(ctx context.Context) error {
	listen := r.cfg.Listen
	if listen == "" {
		listen = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	r.Addr = ln.Addr().String()
	r.CAFile = filepath.Join(r.cfg.Root, "kubelet-ca.crt")
	cert, err := selfSigned(r.cfg.NodeName, hostIPs(r.Addr), r.CAFile)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	if !r.cfg.DisableCheckpointAPI {
		mux.HandleFunc("POST /checkpoint/{namespace}/{pod}/{container}", r.handleCheckpoint)
	}
	srv := &http.Server{
		Handler:           mux,
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	r.log.Info("Kubelet API serving", "address", r.Addr)
	return nil
}

// authorize does what the kubelet's webhook authn/authz does for the
// checkpoint endpoint.
func (r *Runtime) authorize(ctx context.Context, req *http.Request) (int, string) {
	if r.cfg.SkipAuth {
		return 0, ""
	}
	tok, ok := strings.CutPrefix(req.Header.Get("Authorization"), "Bearer ")
	if !ok || tok == "" {
		return http.StatusUnauthorized, "Unauthorized"
	}
	tr, err := r.cfg.Client.AuthenticationV1().TokenReviews().Create(ctx, &authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{Token: tok}}, metav1.CreateOptions{})
	if err != nil {
		return http.StatusInternalServerError, "token review failed: " + err.Error()
	}
	if !tr.Status.Authenticated {
		return http.StatusUnauthorized, "Unauthorized"
	}
	u := tr.Status.User
	extra := map[string]authorizationv1.ExtraValue{}
	for k, v := range u.Extra {
		extra[k] = authorizationv1.ExtraValue(v)
	}
	sar, err := r.cfg.Client.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User: u.Username, Groups: u.Groups, UID: u.UID, Extra: extra,
		ResourceAttributes: &authorizationv1.ResourceAttributes{Verb: "create", Resource: "nodes", Subresource: "checkpoint", Name: r.cfg.NodeName},
	}}, metav1.CreateOptions{})
	if err != nil {
		return http.StatusInternalServerError, "subject access review failed: " + err.Error()
	}
	if !sar.Status.Allowed {
		return http.StatusForbidden, fmt.Sprintf("Forbidden (user=%s, verb=create, resource=nodes, subresource=checkpoint)", u.Username)
	}
	return 0, ""
}

func (r *Runtime) handleCheckpoint(w http.ResponseWriter, req *http.Request) {
	ctx := req.Context()
	if code, msg := r.authorize(ctx, req); code != 0 {
		http.Error(w, msg, code)
		return
	}
	ns, pod, container := req.PathValue("namespace"), req.PathValue("pod"), req.PathValue("container")
	log := r.log.WithValues("pod", klog.KRef(ns, pod), "container", container)
	if ts := req.URL.Query()["timeout"]; len(ts) > 0 {
		secs, err := strconv.ParseInt(ts[len(ts)-1], 10, 64)
		if err != nil {
			http.Error(w, "cannot parse value of timeout parameter", http.StatusNotFound)
			return
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(secs)*time.Second)
		defer cancel()
	}
	pp, _ := r.find(ns, pod)
	if pp == nil {
		http.Error(w, "pod does not exist", http.StatusNotFound)
		return
	}
	_, cp := r.find(ns, pod, container)
	if cp == nil {
		http.Error(w, fmt.Sprintf("container %v does not exist", container), http.StatusNotFound)
		return
	}
	start := time.Now()
	p, err := r.Checkpoint(ctx, pp, cp)
	if err != nil {
		log.Error(err, "Checkpoint failed")
		http.Error(w, fmt.Sprintf("checkpointing of %s/%s/%s failed (%v)", ns, pod, container, err), http.StatusInternalServerError)
		return
	}
	log.Info("Container checkpointed", "archive", p, "duration", time.Since(start))
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string][]string{"items": {p}})
}

// Checkpoint dumps a container like CRI-O does: pause it (unless it is
// frozen already), read its memory, write the archive, resume it if it
// paused it.
func (r *Runtime) Checkpoint(ctx context.Context, pp *podProc, cp *containerProc) (string, error) {
	if r.runc != nil {
		lp, err := readLazyPagesConfig(r.CRIUConfigPath(pp.pod.Namespace, pp.pod.Name, cp.name))
		if err != nil {
			return "", err
		}
		if lp != nil {
			return r.checkpointRuncLazy(ctx, pp, cp, lp)
		}
		return r.checkpointRunc(ctx, pp, cp)
	}
	if _, err := os.Stat(r.CRIUConfigPath(pp.pod.Namespace, pp.pod.Name, cp.name)); err == nil {
		return "", errors.New("lazy pages (post-copy) need the runc runtime: the memory stand-in copies the whole memory")
	}
	st, err := r.freezer.State(pp.cgroup)
	if err != nil {
		return "", err
	}
	if st != freezer.Frozen {
		if err := r.freezer.Freeze(ctx, pp.cgroup); err != nil {
			return "", fmt.Errorf("pause container: %w", err)
		}
		defer func() { _ = r.freezer.Thaw(context.Background(), pp.cgroup) }()
	}
	l, err := labstate.ReadLayout(cp.stateDir)
	if err != nil {
		return "", fmt.Errorf("container state: %w", err)
	}
	if l.PID != cp.cmd.Process.Pid {
		return "", fmt.Errorf("layout of pid %d, container pid %d", l.PID, cp.cmd.Process.Pid)
	}
	now := time.Now().UTC()
	name := layout.ArchiveName(pp.pod.Name, pp.pod.Namespace, cp.name, now)
	final := filepath.Join(r.CheckpointDir(), name)
	tmp := final + ".partial"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp)
	appCfg, _ := json.Marshal(l.Config)
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	c := layout.Container{
		ID: fmt.Sprintf("%s-%s", pp.pod.UID, cp.name), Name: cp.name, PodName: pp.pod.Name, PodNamespace: pp.pod.Namespace, PodUID: string(pp.pod.UID),
		Image: cp.image, Runtime: RuntimeName, RuntimeVersion: RuntimeVersion, CRIUVersion: CRIUVersion,
		Architecture: runtime.GOARCH, Kernel: strings.TrimSpace(string(kernel)), CheckpointedAt: now,
		PagesWritten: uint64(l.Length / labstate.PageSize),
	}
	entries := []layout.Entry{
		{Name: "pages-1.img", Size: l.Length, Open: func() (io.ReadCloser, error) { return labstate.OpenProcessRegion(l) }},
		{Name: appFile, Size: int64(len(appCfg)), Open: func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(string(appCfg))), nil }},
	}
	done := make(chan error, 1)
	go func() { done <- layout.WriteEntries(f, c, entries) }()
	select {
	case err = <-done:
	case <-ctx.Done():
		_ = f.Close()
		if werr := <-done; werr != nil {
			r.log.V(2).Info("Dump aborted", "err", werr)
		}
		return "", fmt.Errorf("rpc error: code = DeadlineExceeded desc = %w", ctx.Err())
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", err
	}
	if err := os.Rename(tmp, final); err != nil {
		return "", err
	}
	return final, nil
}

// pagesMember is the memory dump inside a CRI-O layout archive.
const pagesMember = "checkpoint/pages-1.img"

// restoreSource is where a restored container's memory dump lies: the
// pages member's bytes inside the pulled archive, read in place by the lab
// app (a real CRI-O extracts the layer while it streams it in; copying the
// member out to a second file would write the dump twice, a cost the real
// runtime does not have).
type restoreSource struct {
	path      string
	off, size int64
}

// pullCheckpoint pulls a checkpoint image, checks it like any untrusted
// archive, and finds the memory dump in it. The caller removes
// <dir>/checkpoint.tar once the lab app has loaded it.
func (r *Runtime) pullCheckpoint(ctx context.Context, ref, dir, container string) (*restoreSource, error) {
	tarPath := filepath.Join(dir, "checkpoint.tar")
	start := time.Now()
	f, err := os.OpenFile(tarPath, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, err
	}
	pulled, err := checkpointimage.Pull(ctx, ref, f, r.cfg.Registry)
	cerr := f.Close()
	if err != nil {
		return nil, &pullError{err: fmt.Errorf("pulling checkpoint image %s: %w", ref, err)}
	}
	if cerr != nil {
		return nil, cerr
	}
	if pulled.ContainerName != container {
		return nil, fmt.Errorf("checkpoint image is of container %q, not %q", pulled.ContainerName, container)
	}
	pulledAt := time.Now()
	if _, err := archive.Inspect(tarPath, archive.DefaultLimits); err != nil {
		return nil, err
	}
	inspectedAt := time.Now()
	off, size, err := memberAt(tarPath, pagesMember)
	if err != nil {
		return nil, err
	}
	r.log.Info("Checkpoint image pulled", "image", ref, "bytes", size, "pull", pulledAt.Sub(start), "inspect", inspectedAt.Sub(pulledAt), "locate", time.Since(inspectedAt))
	return &restoreSource{path: tarPath, off: off, size: size}, nil
}

// memberAt returns where a regular member's bytes lie in a (validated) tar
// file: they are contiguous there unless the member is sparse, which it
// refuses.
func memberAt(tarPath, member string) (off, size int64, err error) {
	f, err := os.Open(tarPath)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, 0, err
	}
	// archive/tar reads headers straight from f, block by block, and seeks
	// over the data of the members it skips: after Next the file offset is
	// where the member's data starts.
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return 0, 0, fmt.Errorf("%s not in archive", member)
		}
		if err != nil {
			return 0, 0, err
		}
		if h.Name != member || h.Typeflag != tar.TypeReg {
			continue
		}
		for k := range h.PAXRecords {
			if strings.HasPrefix(k, "GNU.sparse.") {
				return 0, 0, fmt.Errorf("%s is a sparse member", member)
			}
		}
		off, err := f.Seek(0, io.SeekCurrent)
		if err != nil {
			return 0, 0, err
		}
		if h.Size < 0 || off+h.Size > fi.Size() {
			return 0, 0, fmt.Errorf("%s: %d bytes at offset %d run past the archive's %d", member, h.Size, off, fi.Size())
		}
		return off, h.Size, nil
	}
}
