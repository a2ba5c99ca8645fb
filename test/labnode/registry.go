package labnode

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
)

// Registry is a running lab OCI registry.
type Registry struct {
	// Host is host:port, usable in image references.
	Host string
	srv  *http.Server
}

// StartRegistry serves an OCI registry over plain HTTP on a free port of
// 127.0.0.1 (addr "" ) or on addr. Blobs are kept in dir, or in memory when
// dir is empty.
func StartRegistry(addr, dir string) (*Registry, error) {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	var opts []registry.Option
	if dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			_ = ln.Close()
			return nil, err
		}
		opts = append(opts, registry.WithBlobHandler(registry.NewDiskBlobHandler(dir)))
	}
	opts = append(opts, registry.Logger(discardLogger()))
	srv := &http.Server{Handler: registry.New(opts...), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			_ = ln.Close()
		}
	}()
	return &Registry{Host: ln.Addr().String(), srv: srv}, nil
}

// Close stops the registry.
func (r *Registry) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return r.srv.Shutdown(ctx)
}
