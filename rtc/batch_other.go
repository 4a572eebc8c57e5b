//go:build !linux

package rtc

import (
	"net"
	"net/netip"
)

// batchSys is empty where datagrams are sent one by one.
type batchSys struct{}

// loopSender sends a batch one datagram at a time, for systems without
// sendmmsg.
type loopSender struct{ conn *net.UDPConn }

func newBatchSender(conn *net.UDPConn) (batchSender, error) {
	return loopSender{conn}, nil
}

func (s loopSender) send(b *batch) (dropped int) {
	for i := 0; i < b.n; i++ {
		if b.lens[i] == 0 {
			continue // given up by its writer
		}
		if _, err := s.conn.WriteToUDPAddrPort(b.bufs[i][:b.lens[i]], b.to[i]); err != nil {
			dropped++
		}
	}
	return dropped
}

// stdReader reads with the socket's own method.
type stdReader struct{ conn *net.UDPConn }

func newDatagramReader(conn *net.UDPConn) (datagramReader, error) {
	return stdReader{conn}, nil
}

func (r stdReader) read(b []byte) (int, netip.AddrPort, error) {
	return r.conn.ReadFromUDPAddrPort(b)
}
