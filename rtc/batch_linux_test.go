package rtc

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
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

// BenchmarkMediaSocket compares one sendto per datagram with the batched
// socket, fanning a 1100-byte datagram out to 100 receivers in another
// process (this test binary re-run as a sink; see TestMain), so each op
// is the sender's cost alone, as on a focus. Run it pinned, e.g.
// taskset -c 1 go test -bench MediaSocket -cpu 1 ./rtc.
func BenchmarkMediaSocket(b *testing.B) {
	to := startSinkProcess(b, 100)
	p := make([]byte, 1100)
	b.Run("sendto", func(b *testing.B) {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			_, _ = c.WriteToUDPAddrPort(p, to[i%len(to)])
		}
	})
	b.Run("batched", func(b *testing.B) {
		c := listenBatched(b, "udp4", "127.0.0.1")
		defer c.Close()
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			_, _ = c.WriteToAddrPort(p, to[i%len(to)])
			if i%len(to) == len(to)-1 {
				c.flush() // one packet fanned out
			}
		}
	})
}

// sinkEnv makes the test binary a datagram sink (see TestMain).
const sinkEnv = "FOCUS_RTC_SINKS"

func TestMain(m *testing.M) {
	if n, err := strconv.Atoi(os.Getenv(sinkEnv)); err == nil {
		runSinks(n)
		return
	}
	os.Exit(m.Run())
}

// runSinks opens n loopback receivers, prints their ports and reads
// until stdin closes.
func runSinks(n int) {
	for i := 0; i < n; i++ {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		_ = c.SetReadBuffer(4 << 20)
		fmt.Println(c.LocalAddr().(*net.UDPAddr).Port)
		go func() {
			buf := make([]byte, 2000)
			for {
				if _, _, err := c.ReadFromUDPAddrPort(buf); err != nil {
					return
				}
			}
		}()
	}
	_, _ = io.Copy(io.Discard, os.Stdin)
}

// otherCPU returns a CPU this process may not run on, when it is pinned.
func otherCPU() (int, bool) {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return 0, false
	}
	for cpu := 0; cpu < runtime.NumCPU(); cpu++ {
		if !set.IsSet(cpu) {
			return cpu, true
		}
	}
	return 0, false
}

// startSinkProcess runs n receivers in a child process and returns their
// addresses.
func startSinkProcess(b *testing.B, n int) []netip.AddrPort {
	b.Helper()
	cmd := exec.Command(os.Args[0])
	if cpu, ok := otherCPU(); ok {
		if path, err := exec.LookPath("taskset"); err == nil {
			cmd = exec.Command(path, "-c", strconv.Itoa(cpu), os.Args[0])
		}
	}
	cmd.Env = append(os.Environ(), sinkEnv+"="+strconv.Itoa(n))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = stdin.Close()
		_ = cmd.Wait()
	})
	sc := bufio.NewScanner(out)
	addrs := make([]netip.AddrPort, 0, n)
	for len(addrs) < n && sc.Scan() {
		port, err := strconv.Atoi(sc.Text())
		if err != nil {
			b.Fatalf("sink process: %s", sc.Text())
		}
		addrs = append(addrs, netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(port)))
	}
	if len(addrs) < n {
		b.Fatalf("sink process printed %d ports, want %d", len(addrs), n)
	}
	return addrs
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
