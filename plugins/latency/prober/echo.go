package prober

import (
	"context"
	"errors"
	"net"
	"sync"
	"time"

	"k8s.io/klog/v2"
)

const (
	payloadSize    = 16
	maxEchoConns   = 512
	echoIdleTimout = 5 * time.Minute
)

// EchoServer answers every byte it reads on a TCP connection with the same
// byte, for peers' probes. It holds at most maxEchoConns connections and
// drops connections idle for 5 minutes.
type EchoServer struct {
	ln    net.Listener
	slots chan struct{}
	wg    sync.WaitGroup
}

// ListenEcho starts listening on address (host:port; port 0 picks one).
func ListenEcho(address string) (*EchoServer, error) {
	ln, err := net.Listen("tcp", address)
	if err != nil {
		return nil, err
	}
	return &EchoServer{ln: ln, slots: make(chan struct{}, maxEchoConns)}, nil
}

// Addr is the address the server listens on.
func (s *EchoServer) Addr() string { return s.ln.Addr().String() }

// Serve accepts connections until ctx is done.
func (s *EchoServer) Serve(ctx context.Context) error {
	logger := klog.FromContext(ctx)
	go func() {
		<-ctx.Done()
		_ = s.ln.Close()
	}()
	defer s.wg.Wait()
	for {
		conn, err := s.ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			logger.Error(err, "Echo accept failed")
			time.Sleep(50 * time.Millisecond)
			continue
		}
		select {
		case s.slots <- struct{}{}:
		default:
			logger.V(2).Info("Echo connection refused: too many connections", "remote", conn.RemoteAddr().String())
			_ = conn.Close()
			continue
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer func() { <-s.slots }()
			echo(ctx, conn)
		}()
	}
}

func echo(ctx context.Context, conn net.Conn) {
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	buf := make([]byte, 4*payloadSize)
	for {
		_ = conn.SetDeadline(time.Now().Add(echoIdleTimout))
		n, err := conn.Read(buf)
		if n > 0 {
			if _, werr := conn.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
