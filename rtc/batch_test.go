package rtc

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// listenBatched opens a batched media socket on network/host.
func listenBatched(t testing.TB, network, host string) *batchConn {
	t.Helper()
	uc, err := net.ListenUDP(network, &net.UDPAddr{IP: net.ParseIP(host)})
	if err != nil {
		t.Fatal(err)
	}
	c, err := newBatchConn(uc, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// sinks opens n loopback receivers.
func sinks(t testing.TB, n int) ([]*net.UDPConn, []netip.AddrPort) {
	t.Helper()
	conns := make([]*net.UDPConn, n)
	addrs := make([]netip.AddrPort, n)
	for i := range conns {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadBuffer(4 << 20)
		t.Cleanup(func() { _ = c.Close() })
		conns[i], addrs[i] = c, c.LocalAddr().(*net.UDPAddr).AddrPort()
	}
	return conns, addrs
}

// TestBatchConnDelivers writes more datagrams than a batch holds, to
// several receivers, and checks each receiver gets its own in order,
// intact, and from the socket's address.
func TestBatchConnDelivers(t *testing.T) {
	for _, tc := range []struct{ network, host string }{
		{"udp4", "127.0.0.1"}, // AF_INET
		{"udp", "::"},         // AF_INET6 dual stack: IPv4 peers as mapped addresses
	} {
		t.Run(tc.network, func(t *testing.T) {
			c := listenBatched(t, tc.network, tc.host)
			defer c.Close()
			rx, to := sinks(t, 3)
			const per = batchSlots // three receivers: the batch fills and is sent by the writer
			for i := 0; i < per; i++ {
				for r := range rx {
					p := make([]byte, 8+r*100)
					binary.BigEndian.PutUint32(p, uint32(i))
					binary.BigEndian.PutUint32(p[4:], uint32(r))
					if n, err := c.WriteToAddrPort(p, to[r]); err != nil || n != len(p) {
						t.Fatalf("write %d to %d: %d %v", i, r, n, err)
					}
				}
			}
			port := c.LocalAddr().(*net.UDPAddr).Port
			for r, conn := range rx {
				_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
				buf := make([]byte, 2000)
				for i := 0; i < per; i++ {
					n, from, err := conn.ReadFromUDPAddrPort(buf)
					if err != nil {
						t.Fatalf("receiver %d after %d datagrams: %v", r, i, err)
					}
					if n != 8+r*100 || binary.BigEndian.Uint32(buf) != uint32(i) || binary.BigEndian.Uint32(buf[4:]) != uint32(r) {
						t.Fatalf("receiver %d datagram %d: got %d bytes %x", r, i, n, buf[:8])
					}
					if int(from.Port()) != port {
						t.Fatalf("receiver %d: from %v, want port %d", r, from, port)
					}
				}
			}
			if s := c.datagrams.Load(); s != uint64(per*len(rx)) {
				t.Fatalf("counted %d datagrams, sent %d", s, per*len(rx))
			}
			if c.batches.Load() >= c.datagrams.Load() {
				t.Fatalf("%d batches for %d datagrams: nothing was batched", c.batches.Load(), c.datagrams.Load())
			}
		})
	}
}

// TestBatchConnLongAndClosed checks a datagram longer than a slot goes
// out on its own, a closed socket refuses writes, and Close sends what
// was queued.
func TestBatchConnLongAndClosed(t *testing.T) {
	c := listenBatched(t, "udp4", "127.0.0.1")
	rx, to := sinks(t, 1)
	long := bytes.Repeat([]byte{7}, slotSize+100)
	if n, err := c.WriteToAddrPort(long, to[0]); err != nil || n != len(long) {
		t.Fatalf("long write: %d %v", n, err)
	}
	if _, err := c.WriteTo([]byte("last"), net.UDPAddrFromAddrPort(to[0])); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.WriteToAddrPort([]byte("x"), to[0]); err == nil {
		t.Fatal("a write after Close succeeded")
	}
	_ = rx[0].SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 4000)
	got := map[int]bool{}
	for i := 0; i < 2; i++ {
		n, _, err := rx[0].ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatal(err)
		}
		got[n] = true
	}
	if !got[len(long)] || !got[4] {
		t.Fatalf("received lengths %v, want %d and 4", got, len(long))
	}
}

// TestBatchConnAllocs checks queueing and sending a batch allocate
// nothing.
func TestBatchConnAllocs(t *testing.T) {
	c := listenBatched(t, "udp4", "127.0.0.1")
	defer c.Close()
	_, to := sinks(t, 2)
	p := make([]byte, 1000)
	allocs := testing.AllocsPerRun(200, func() {
		_, _ = c.WriteToAddrPort(p, to[0])
		_, _ = c.WriteToAddrPort(p, to[1])
		c.flush()
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per batch of two", allocs)
	}
}

// TestBatchConnReserve: a slot written in place goes out; one its writer
// gives up (committed with length 0) does not; and a batch is not sent
// while a slot of it is still being written, though another goroutine
// flushes meanwhile.
func TestBatchConnReserve(t *testing.T) {
	c := listenBatched(t, "udp4", "127.0.0.1")
	defer c.Close()
	rx, to := sinks(t, 1)

	b, i, err := c.reserve(to[0])
	if err != nil {
		t.Fatal(err)
	}
	flushed := make(chan struct{})
	go func() {
		c.flush()
		close(flushed)
	}()
	select {
	case <-flushed:
		t.Fatal("the batch was sent with a slot still being written")
	case <-time.After(50 * time.Millisecond):
	}
	c.commit(b, i, copy(b.bufs[i][:], "first"))
	<-flushed

	b, i, err = c.reserve(to[0])
	if err != nil {
		t.Fatal(err)
	}
	c.commit(b, i, 0) // given up
	if _, err := c.WriteToAddrPort([]byte("third"), to[0]); err != nil {
		t.Fatal(err)
	}
	c.flush()

	_ = rx[0].SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 100)
	for _, want := range []string{"first", "third"} {
		n, _, err := rx[0].ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatal(err)
		}
		if string(buf[:n]) != want {
			t.Fatalf("received %q, want %q (an empty datagram for the slot given up?)", buf[:n], want)
		}
	}
}

// TestBatchConnReads: the media socket reads each datagram whole, with
// its sender's address, from IPv4 and (on a dual-stack socket) IPv6
// senders; it honours a read deadline, refuses an empty buffer, and
// reports a closed socket as net.ErrClosed, which ends pion's read loop.
func TestBatchConnReads(t *testing.T) {
	for _, tc := range []struct{ network, host, from string }{
		{"udp4", "127.0.0.1", "127.0.0.1"},
		{"udp", "::", "127.0.0.1"},
		{"udp", "::", "::1"},
	} {
		t.Run(tc.network+" from "+tc.from, func(t *testing.T) {
			uc, err := net.ListenUDP(tc.network, &net.UDPAddr{IP: net.ParseIP(tc.host)})
			if err != nil {
				t.Fatal(err)
			}
			c, err := newBatchConn(uc, zerolog.Nop())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			src, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(tc.from)})
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			port := uint16(c.LocalAddr().(*net.UDPAddr).Port)
			to := netip.AddrPortFrom(netip.MustParseAddr(tc.from), port)
			buf := make([]byte, 1500)
			for _, size := range []int{1, 200, 1400} {
				want := bytes.Repeat([]byte{byte(size)}, size)
				if _, err := src.WriteToUDPAddrPort(want, to); err != nil {
					t.Fatal(err)
				}
				_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
				n, from, err := c.ReadFromAddrPort(buf)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(buf[:n], want) {
					t.Fatalf("read %d bytes, want the %d sent", n, size)
				}
				if sent := src.LocalAddr().(*net.UDPAddr).AddrPort(); unmapped(from) != unmapped(sent) {
					t.Fatalf("a datagram from %v read as from %v", sent, from)
				}
			}
			// Reading allocates nothing.
			for range 300 {
				if _, err := src.WriteToUDPAddrPort(buf[:100], to); err != nil {
					t.Fatal(err)
				}
			}
			if allocs := testing.AllocsPerRun(200, func() {
				if _, _, err := c.ReadFromAddrPort(buf); err != nil {
					t.Fatal(err)
				}
			}); allocs != 0 {
				t.Fatalf("%v allocations per datagram read", allocs)
			}
			_ = c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
			for {
				if _, _, err := c.ReadFromAddrPort(buf); err != nil {
					break // the datagrams left over, then the deadline
				}
			}
			if _, _, err := c.ReadFromAddrPort(buf); !os.IsTimeout(err) {
				t.Fatalf("a read past its deadline: %v, want a timeout", err)
			}
			if _, _, err := c.ReadFromAddrPort(nil); err == nil {
				t.Fatal("a read into an empty buffer: no error")
			}
			_ = c.SetReadDeadline(time.Time{})
			_ = c.Close()
			if _, _, err := c.ReadFromAddrPort(buf); !errors.Is(err, net.ErrClosed) {
				t.Fatalf("a read from a closed socket: %v, want net.ErrClosed", err)
			}
		})
	}
}
