package lab

import (
	"fmt"
	"net"
	"sync"
)

// reserved remembers every port handed out by this process, so that two
// labs in one process never get the same port even if a component has not
// bound it yet.
var (
	reservedMu sync.Mutex
	reserved   = map[int]bool{}
)

// FreePort returns a TCP port on 127.0.0.1 that nothing listens on. The
// kernel chooses it, so two labs on one machine do not collide: ephemeral
// ports are handed out in sequence, not reused right away. Ports handed out
// are remembered for the life of the process, so a test that runs its own
// servers beside a lab should take its ports here too: it then never gets
// one the lab reserved for a component that has not bound it yet.
func FreePort() (int, error) {
	reservedMu.Lock()
	defer reservedMu.Unlock()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("finding a free port: %w", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		_ = l.Close()
		if !reserved[port] {
			reserved[port] = true
			return port, nil
		}
	}
	return 0, fmt.Errorf("finding a free port: no unreserved port after 100 tries")
}
