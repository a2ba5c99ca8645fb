package lab

import (
	"net"
	"strconv"
	"testing"
)

// TestFreePortBelowEphemeralRangeAndLeased checks that FreePort hands out
// bindable ports below the kernel's ephemeral range (where no outgoing
// connection can take them before the component binds them), never the
// same one twice, and that a port leased by one process is not handed out
// by another (simulated by forgetting this process's own reservations).
func TestFreePortBelowEphemeralRangeAndLeased(t *testing.T) {
	low, ok := ephemeralLow()
	if !ok {
		t.Fatal("cannot read /proc/sys/net/ipv4/ip_local_port_range")
	}
	if low-portFloor < 1000 {
		t.Fatalf("ephemeral range starts at %d: no room below it above %d; FreePort would fall back to kernel ports", low, portFloor)
	}
	seen := map[int]bool{}
	for range 50 {
		p, err := FreePort()
		if err != nil {
			t.Fatal(err)
		}
		if p < portFloor || p >= low {
			t.Fatalf("port %d outside [%d, %d)", p, portFloor, low)
		}
		if seen[p] {
			t.Fatalf("port %d handed out twice", p)
		}
		seen[p] = true
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			t.Fatalf("port %d is not bindable: %v", p, err)
		}
		_ = l.Close()
	}

	// Another process knows nothing of this one's map, only the leases.
	reservedMu.Lock()
	saved := reserved
	reserved = map[int]bool{}
	reservedMu.Unlock()
	defer func() {
		reservedMu.Lock()
		for p := range saved {
			reserved[p] = true
		}
		reservedMu.Unlock()
	}()
	for range 200 {
		p, err := FreePort()
		if err != nil {
			t.Fatal(err)
		}
		if seen[p] {
			t.Fatalf("port %d leased earlier was handed out again to another process", p)
		}
	}
}
