package lab

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// reserved remembers every port handed out by this process, so that two
// labs in one process never get the same port even if a component has not
// bound it yet.
var (
	reservedMu sync.Mutex
	reserved   = map[int]bool{}
)

// Ports are taken below the kernel's ephemeral range
// (net.ipv4.ip_local_port_range), in [portFloor, ephemeral low). A port in
// the ephemeral range can be taken by any outgoing connection between the
// moment the lab picks it and the moment its component binds it — with a
// hundred components connecting to their apiservers at start-up that does
// happen ("bind: address already in use") — while the kernel never hands out
// a port below that range on its own.
const portFloor = 20000

// portLease is how long a port handed out stays reserved for other
// processes on the machine (other labs), long enough for every component of
// a lab to bind its ports.
const portLease = 10 * time.Minute

// FreePort returns a TCP port on 127.0.0.1 that nothing listens on, below
// the ephemeral range (see portFloor). Ports handed out are remembered for
// the life of the process, and for portLease by every process on the
// machine (a lease file under the temporary directory, updated under an
// flock), so two labs started side by side never get the same port. A test
// that runs its own servers beside a lab should take its ports here too: it
// then never gets one the lab reserved for a component that has not bound
// it yet. Where the ephemeral range leaves no room below it, FreePort falls
// back to a port the kernel chooses.
func FreePort() (int, error) {
	reservedMu.Lock()
	defer reservedMu.Unlock()
	low, ok := ephemeralLow()
	if !ok || low-portFloor < 1000 {
		return kernelPort()
	}
	port, err := leasePort(portFloor, low)
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	reserved[port] = true
	return port, nil
}

// ephemeralLow reads the low end of the kernel's ephemeral port range.
func ephemeralLow() (int, bool) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0, false
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 0, false
	}
	low, err := strconv.Atoi(f[0])
	return low, err == nil
}

// leasePort picks a random port in [from, to) that no process leased within
// portLease, that this process did not hand out, and that can be bound now;
// it records the lease before returning.
func leasePort(from, to int) (int, error) {
	dir := os.TempDir()
	lock, err := os.OpenFile(filepath.Join(dir, "livemigrate-lab-ports.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return 0, err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return 0, fmt.Errorf("locking the port leases: %w", err)
	}
	defer func() { _ = syscall.Flock(int(lock.Fd()), syscall.LOCK_UN) }()

	path := filepath.Join(dir, "livemigrate-lab-ports.json")
	leases := map[int]int64{} // port → lease end, Unix seconds
	if b, err := os.ReadFile(path); err == nil {
		// A damaged file only loses old leases: start afresh.
		_ = json.Unmarshal(b, &leases)
	} else if !errors.Is(err, os.ErrNotExist) {
		return 0, err
	}
	now := time.Now()
	for p, end := range leases {
		if end < now.Unix() {
			delete(leases, p)
		}
	}
	for range 200 {
		p := from + rand.IntN(to-from)
		if reserved[p] || leases[p] != 0 || !bindable(p) {
			continue
		}
		leases[p] = now.Add(portLease).Unix()
		b, err := json.Marshal(leases)
		if err != nil {
			return 0, err
		}
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, b, 0o600); err != nil {
			return 0, err
		}
		if err := os.Rename(tmp, path); err != nil {
			return 0, err
		}
		return p, nil
	}
	return 0, fmt.Errorf("no free, unleased port in [%d, %d) after 200 tries", from, to)
}

// bindable reports whether a listener can bind 127.0.0.1:port now.
func bindable(port int) bool {
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return false
	}
	_ = l.Close()
	return true
}

// kernelPort is the fallback: a port the kernel picks (ephemeral range).
func kernelPort() (int, error) {
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
