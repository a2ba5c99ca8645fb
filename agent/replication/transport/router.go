package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// MaxPendingHandshakes bounds the connections of a Router whose TLS
// handshake has not finished yet; further connections are refused until one
// ends, so unauthenticated peers cannot hold unbounded resources.
const MaxPendingHandshakes = 128

// Errors a Router rejects a connection with (see OnReject).
var (
	// ErrNoServerName: the client sent no TLS server name (SNI).
	ErrNoServerName = errors.New("client sent no TLS server name: it must name the replication (status.serverName of the target)")
	// ErrUnknownRoute: no replication on this listener has that name.
	ErrUnknownRoute = errors.New("no replication with this TLS server name is served here")
	// ErrTooManyHandshakes: MaxPendingHandshakes were already in progress.
	ErrTooManyHandshakes = errors.New("too many handshakes in progress")
)

// Router serves any number of replications on one listener. Each
// replication is a route: a TLS server name, the replication's own
// mutual-TLS configuration (its migration's CA, server certificate and peer
// verification) and a handler. A connection's handshake completes with the
// configuration of the route its client names in the TLS server name
// indication, so a peer is authenticated exactly as by a Listener of that
// replication; connections naming no route, or failing the handshake, are
// closed and reported through OnReject.
type Router struct {
	inner net.Listener
	// OnReject, when set, is called with every connection that is refused:
	// unknown or missing server name, failed handshake or peer check.
	OnReject func(remote net.Addr, serverName string, err error)
	// OnAcceptError, when set, is called with an accept error and the
	// pause before the next attempt.
	OnAcceptError func(err error, pause time.Duration)

	mu      sync.RWMutex
	routes  map[string]*route
	pending chan struct{}
	wg      sync.WaitGroup
	// shaking are the connections whose handshake is in progress; Close
	// closes them.
	shaking map[net.Conn]struct{}
	closed  bool
}

type route struct {
	cfg    *tls.Config
	handle func(*tls.Conn)
}

// ListenRouter listens on addr (host:port) for routed connections; Serve
// accepts them.
func ListenRouter(addr string) (*Router, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", addr, err)
	}
	return &Router{inner: l, routes: map[string]*route{}, shaking: map[net.Conn]struct{}{}, pending: make(chan struct{}, MaxPendingHandshakes)}, nil
}

// Addr is the listening address.
func (r *Router) Addr() net.Addr { return r.inner.Addr() }

// Add registers a route. cfg must require and verify a client certificate
// (as for Listen); handle is called, in its own goroutine, with every
// connection authenticated by cfg, and owns it.
func (r *Router) Add(serverName string, cfg *tls.Config, handle func(*tls.Conn)) error {
	if serverName == "" {
		return errors.New("route needs a server name")
	}
	if err := checkServerConfig(cfg); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.routes[serverName]; ok {
		return fmt.Errorf("route %s is already served", serverName)
	}
	r.routes[serverName] = &route{cfg: cfg, handle: handle}
	return nil
}

// Remove unregisters a route; later connections naming it are refused.
// Connections already handed to its handler are the handler's to end.
func (r *Router) Remove(serverName string) {
	r.mu.Lock()
	delete(r.routes, serverName)
	r.mu.Unlock()
}

func (r *Router) lookup(serverName string) *route {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.routes[serverName]
}

// Serve accepts connections until Close; each is handshaken in its own
// goroutine so that a slow or silent client delays no other. An accept
// error (out of file descriptors, …) is retried after a growing pause, as
// net/http does, instead of stopping every replication of the node.
func (r *Router) Serve() error {
	var pause time.Duration
	for {
		c, err := r.inner.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			pause = min(max(2*pause, 5*time.Millisecond), time.Second)
			if r.OnAcceptError != nil {
				r.OnAcceptError(err, pause)
			}
			time.Sleep(pause)
			continue
		}
		pause = 0
		select {
		case r.pending <- struct{}{}:
		default:
			r.reject(c, "", ErrTooManyHandshakes)
			continue
		}
		r.mu.Lock()
		if r.closed {
			r.mu.Unlock()
			_ = c.Close()
			return nil
		}
		r.shaking[c] = struct{}{}
		r.wg.Add(1)
		r.mu.Unlock()
		go func() {
			tc, rt := r.handshake(c)
			r.wg.Done()
			if rt != nil {
				rt.handle(tc)
			}
		}()
	}
}

// handshake completes the TLS handshake of one connection with the
// configuration of the route it names and returns that route, or nil when
// the connection was refused.
func (r *Router) handshake(c net.Conn) (*tls.Conn, *route) {
	var chosen *route
	var name string
	tc := tls.Server(c, &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			name = hello.ServerName
			if name == "" {
				return nil, ErrNoServerName
			}
			chosen = r.lookup(name)
			if chosen == nil {
				return nil, ErrUnknownRoute
			}
			return chosen.cfg, nil
		},
	})
	ctx, cancel := context.WithTimeout(context.Background(), HandshakeTimeout)
	err := tc.HandshakeContext(ctx)
	cancel()
	<-r.pending
	r.mu.Lock()
	delete(r.shaking, c)
	r.mu.Unlock()
	if err != nil {
		r.reject(c, name, err)
		return nil, nil
	}
	// The route may have been removed (or replaced) during the handshake:
	// only the route whose configuration authenticated the peer gets it.
	if cur := r.lookup(name); cur != chosen {
		r.reject(c, name, ErrUnknownRoute)
		return nil, nil
	}
	return tc, chosen
}

func (r *Router) reject(c net.Conn, serverName string, err error) {
	r.mu.RLock()
	closed := r.closed
	r.mu.RUnlock()
	if r.OnReject != nil && !closed {
		r.OnReject(c.RemoteAddr(), serverName, err)
	}
	_ = c.Close()
}

// Close stops listening, ends the handshakes in progress and waits for
// them; the routes' handlers own the connections they were given.
func (r *Router) Close() error {
	err := r.inner.Close()
	r.mu.Lock()
	r.closed = true
	for c := range r.shaking {
		_ = c.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
	return err
}

// checkServerConfig refuses a configuration that would accept a client
// without a verified certificate.
func checkServerConfig(cfg *tls.Config) error {
	if cfg == nil || len(cfg.Certificates) == 0 || cfg.ClientAuth != tls.RequireAnyClientCert || cfg.VerifyPeerCertificate == nil {
		return errors.New("listener TLS config must require and verify a client certificate")
	}
	return nil
}
