package bench

import (
	"errors"
	"os"
	"testing"
	"time"
)

func TestParseStatCPU(t *testing.T) {
	// A command name may hold spaces and parentheses; utime (14) and
	// stime (15) are counted after the last ')'.
	stat := "4242 (a) b (c)) S 1 4242 4242 0 -1 4194560 1234 0 0 0 250 75 0 0 20 0 9 0 100 1000000 500 " +
		"18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n"
	got, err := ParseStatCPU([]byte(stat))
	if err != nil {
		t.Fatal(err)
	}
	if want := 325 * 10 * time.Millisecond; got != want {
		t.Errorf("ParseStatCPU = %v, want %v", got, want)
	}
	for _, bad := range []string{"", "1 (x S 1 2", "1 (x) S 1 2 3", "1 (x) S 1 2 3 4 5 6 7 8 9 10 abc 5 0"} {
		if _, err := ParseStatCPU([]byte(bad)); !errors.Is(err, ErrProcFormat) {
			t.Errorf("ParseStatCPU(%q) error = %v, want ErrProcFormat", bad, err)
		}
	}
}

func TestParseStatusRSS(t *testing.T) {
	status := "Name:\tfocus\nVmPeak:\t  900000 kB\nVmRSS:\t   51234 kB\nRssAnon:\t 40000 kB\n"
	got, err := ParseStatusRSS([]byte(status))
	if err != nil || got != 51234*1024 {
		t.Errorf("ParseStatusRSS = %d %v, want %d", got, err, 51234*1024)
	}
	for _, bad := range []string{"Name:\tkthreadd\n", "VmRSS:\t12 MB\n", "VmRSS:\tx kB\n"} {
		if _, err := ParseStatusRSS([]byte(bad)); !errors.Is(err, ErrProcFormat) {
			t.Errorf("ParseStatusRSS(%q) error = %v, want ErrProcFormat", bad, err)
		}
	}
}

func TestParseUDPDrops(t *testing.T) {
	snmp := "Ip: Forwarding DefaultTTL\nIp: 1 64\n" +
		"Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors\n" +
		"Udp: 100 2 30 90 25 5 0 0 0\n" +
		"UdpLite: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors\n" +
		"UdpLite: 0 0 0 0 7 7 0 0 0\n"
	got, err := ParseUDPDrops([]byte(snmp))
	if err != nil || got != 30 {
		t.Errorf("ParseUDPDrops = %d %v, want 30", got, err)
	}
	for _, bad := range []string{"", "Udp: InDatagrams\nUdp: 1 2\n", "Udp: RcvbufErrors SndbufErrors\nUdp: 1 x\n", "Udp: InDatagrams\nUdp: 1\n"} {
		if _, err := ParseUDPDrops([]byte(bad)); !errors.Is(err, ErrProcFormat) {
			t.Errorf("ParseUDPDrops(%q) error = %v, want ErrProcFormat", bad, err)
		}
	}
}

// The live readers on this process, whose /proc entries exist.
func TestProcSelf(t *testing.T) {
	// Burn a little CPU so that at least one clock tick is counted.
	deadline := time.Now().Add(50 * time.Millisecond)
	for x := 0; time.Now().Before(deadline); x++ {
		_ = x * x
	}
	cpu, err := ProcCPU("self")
	if err != nil || cpu <= 0 {
		t.Errorf("ProcCPU(self) = %v %v, want > 0", cpu, err)
	}
	rss, err := ProcRSS("self")
	if err != nil || rss < 1<<20 {
		t.Errorf("ProcRSS(self) = %d %v, want at least 1 MiB", rss, err)
	}
	if _, err := UDPDrops(); err != nil {
		t.Errorf("UDPDrops: %v", err)
	}
	if _, err := ProcCPU("0"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ProcCPU(0) error = %v, want not-exist", err)
	}
}
