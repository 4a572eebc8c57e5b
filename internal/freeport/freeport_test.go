package freeport

import (
	"fmt"
	"net"
	"testing"
)

func TestLoopbackIsFreeAndOutsideTheEphemeralRange(t *testing.T) {
	seen := map[int]bool{}
	for range 20 {
		port, err := Loopback()
		if err != nil {
			t.Fatal(err)
		}
		if port < Low || port >= High {
			t.Fatalf("port %d outside [%d, %d)", port, Low, High)
		}
		seen[port] = true
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			t.Fatalf("port %d is not free for TCP: %v", port, err)
		}
		u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			t.Fatalf("port %d is not free for UDP: %v", port, err)
		}
		_ = l.Close()
		_ = u.Close()
	}
	if len(seen) < 2 {
		t.Errorf("20 draws gave %d distinct ports", len(seen))
	}
}
