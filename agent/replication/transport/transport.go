package transport

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// HandshakeTimeout bounds the TLS handshake of an accepted or dialed connection.
const HandshakeTimeout = 15 * time.Second

// Listener accepts mutually authenticated connections.
type Listener struct {
	inner net.Listener
	cfg   *tls.Config
	// OnReject, when set, is called with every connection that fails the
	// handshake (for logging and metrics).
	OnReject func(remote net.Addr, err error)
}

// Listen listens on addr (host:port) with the target-side TLS config.
func Listen(addr string, cfg *tls.Config) (*Listener, error) {
	if err := checkServerConfig(cfg); err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", addr, err)
	}
	return &Listener{inner: l, cfg: cfg}, nil
}

// Addr is the listening address.
func (l *Listener) Addr() net.Addr { return l.inner.Addr() }

// Close stops listening.
func (l *Listener) Close() error { return l.inner.Close() }

// Accept returns the next connection whose TLS handshake (and so the peer
// identity check) succeeded. Connections failing the handshake are closed and
// reported through OnReject; Accept keeps waiting.
func (l *Listener) Accept() (*tls.Conn, error) {
	for {
		c, err := l.inner.Accept()
		if err != nil {
			return nil, err
		}
		tc := tls.Server(c, l.cfg)
		ctx, cancel := context.WithTimeout(context.Background(), HandshakeTimeout)
		err = tc.HandshakeContext(ctx)
		cancel()
		if err != nil {
			if l.OnReject != nil {
				l.OnReject(c.RemoteAddr(), err)
			}
			_ = c.Close()
			continue
		}
		return tc, nil
	}
}

// Dial connects to a receiver and completes the mutual TLS handshake.
func Dial(ctx context.Context, addr string, cfg *tls.Config) (*tls.Conn, error) {
	d := &tls.Dialer{Config: cfg, NetDialer: &net.Dialer{Timeout: HandshakeTimeout, KeepAlive: 30 * time.Second}}
	ctx, cancel := context.WithTimeout(ctx, HandshakeTimeout)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dialing receiver %s: %w", addr, err)
	}
	return c.(*tls.Conn), nil
}

// Counter counts bytes in each direction of a tunnel.
type Counter struct {
	Sent     atomic.Int64
	Received atomic.Int64
}

// NewLimiter returns a token-bucket limiter for bytesPerSecond, or nil
// (unlimited) when bytesPerSecond <= 0.
func NewLimiter(bytesPerSecond int64) *rate.Limiter {
	if bytesPerSecond <= 0 {
		return nil
	}
	burst := int(bytesPerSecond / 10)
	if burst < 64*1024 {
		burst = 64 * 1024
	}
	return rate.NewLimiter(rate.Limit(bytesPerSecond), burst)
}

// Pipe copies src to dst, counting into n and waiting on lim (may be nil)
// before each write. It returns when src ends or either side fails.
func Pipe(ctx context.Context, dst io.Writer, src io.Reader, lim *rate.Limiter, n *atomic.Int64) error {
	buf := make([]byte, 256*1024)
	for {
		chunk := buf
		if lim != nil && lim.Burst() < len(chunk) {
			chunk = chunk[:lim.Burst()]
		}
		r, rerr := src.Read(chunk)
		if r > 0 {
			if lim != nil {
				if err := lim.WaitN(ctx, r); err != nil {
					return err
				}
			}
			w, werr := dst.Write(chunk[:r])
			if n != nil {
				n.Add(int64(w))
			}
			if werr != nil {
				return werr
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}
