package bench

import (
	"net"
	"net/netip"
	"testing"
	"time"
)

func TestArrivals(t *testing.T) {
	var arr arrivals
	rc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	c, err := newArrivalConn(rc, &arr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tx, err := net.DialUDP("udp4", nil, rc.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()

	rtp := []byte{0x80, 96, 0x12, 0x34, 0, 0, 0, 1, 0xca, 0xfe, 0xba, 0xbe, 1, 2, 3}
	rtcp := []byte{0x80, 200, 0, 1, 0xca, 0xfe, 0xba, 0xbe, 0, 0, 0, 0}
	stun := []byte{0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42, 0, 0, 0, 0}
	before := time.Now().UnixNano()
	buf := make([]byte, 1500)
	for _, p := range [][]byte{stun, rtcp, rtp} {
		if _, err := tx.Write(p); err != nil {
			t.Fatal(err)
		}
		n, from, err := c.ReadFromAddrPort(buf)
		if err != nil || n != len(p) {
			t.Fatalf("read %d %v", n, err)
		}
		if want := netip.MustParseAddrPort(tx.LocalAddr().String()); from != want {
			t.Errorf("from %v, want %v", from, want)
		}
	}
	after := time.Now().UnixNano()
	at, ok := arr.lookup(0xcafebabe, 0x1234)
	if !ok || at < before-int64(time.Millisecond) || at > after {
		t.Errorf("arrival of the RTP packet = %d %v, want between %d and %d", at, ok, before, after)
	}
	if _, ok := arr.lookup(0xcafebabe, 0x1235); ok {
		t.Error("found an arrival for a packet never sent")
	}
	// The RTCP packet (same SSRC position holds 0) was not noted as RTP.
	if _, ok := arr.lookup(0, 1); ok {
		t.Error("noted an RTCP packet")
	}
	if _, ok := kernelTime(nil); ok {
		t.Error("kernelTime found a time in nothing")
	}
	if _, ok := kernelTime(make([]byte, 8)); ok {
		t.Error("kernelTime found a time in a short buffer")
	}
}
