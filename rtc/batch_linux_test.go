package rtc

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
)

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
