package bench

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"

	"github.com/pion/transport/v4"
	"github.com/pion/transport/v4/stdnet"
	"golang.org/x/sys/unix"
)

// A subscriber's read loop runs when the generator's scheduler gets to it,
// which on the generator's one CPU, among hundreds of connections' worth
// of pion goroutines, can be milliseconds after the packet came. So that
// the delay figures are the server's and not the generator's, the
// subscribers' sockets ask the kernel for each datagram's arrival time
// (SO_TIMESTAMPNS) and note it, by SSRC and sequence number (which SRTP
// leaves in the clear), for the read loop to find when the decrypted
// packet reaches it.

// arrivals is a subscriber's note of recent RTP arrival times: a ring
// written by the socket's reader (pion's ICE loop) and read by the
// subscriber's read loops.
type arrivals struct {
	slots [arrivalSlots]arrivalSlot
}

// arrivalSlots is far more than the packets that can be between the
// socket and the read loop.
const arrivalSlots = 4096

type arrivalSlot struct {
	// key is 1<<63 | ssrc<<16 | seq while at is valid; 0 while it is being
	// written.
	key atomic.Uint64
	at  atomic.Int64
}

func arrivalKey(ssrc uint32, seq uint16) (uint64, int) {
	k := 1<<63 | uint64(ssrc)<<16 | uint64(seq)
	return k, int((uint32(seq) ^ (ssrc * 2654435761 >> 20)) % arrivalSlots)
}

// note records the kernel's arrival time of datagram p, from the control
// messages oob, when p is RTP.
func (a *arrivals) note(p, oob []byte) {
	if len(p) < 12 || p[0]>>6 != 2 {
		return // not RTP or RTCP (STUN, DTLS)
	}
	if pt := p[1] & 0x7f; pt >= 64 && pt <= 95 {
		return // RTCP: packet types 192-223 where RTP has M and PT
	}
	at, ok := kernelTime(oob)
	if !ok {
		return
	}
	k, i := arrivalKey(binary.BigEndian.Uint32(p[8:]), binary.BigEndian.Uint16(p[2:]))
	s := &a.slots[i]
	s.key.Store(0)
	s.at.Store(at)
	s.key.Store(k)
}

// lookup returns the arrival time of the RTP packet ssrc/seq, in unix
// nanoseconds, if it is still noted.
func (a *arrivals) lookup(ssrc uint32, seq uint16) (int64, bool) {
	k, i := arrivalKey(ssrc, seq)
	s := &a.slots[i]
	if s.key.Load() != k {
		return 0, false
	}
	at := s.at.Load()
	if s.key.Load() != k {
		return 0, false
	}
	return at, true
}

// kernelTime finds the SCM_TIMESTAMPNS control message in oob.
func kernelTime(oob []byte) (int64, bool) {
	// struct cmsghdr: a size_t length, then int level and type.
	const hdr = unix.SizeofCmsghdr
	lenSize := hdr - 8
	for len(oob) >= hdr {
		var l int
		if lenSize == 8 {
			l = int(binary.NativeEndian.Uint64(oob))
		} else {
			l = int(binary.NativeEndian.Uint32(oob))
		}
		level := int32(binary.NativeEndian.Uint32(oob[lenSize:]))
		typ := int32(binary.NativeEndian.Uint32(oob[lenSize+4:]))
		if l < hdr || l > len(oob) {
			return 0, false
		}
		if level == unix.SOL_SOCKET && typ == unix.SCM_TIMESTAMPNS {
			data := oob[unix.CmsgLen(0):l]
			if len(data) < 16 {
				return 0, false
			}
			sec := int64(binary.NativeEndian.Uint64(data))
			nsec := int64(binary.NativeEndian.Uint64(data[8:]))
			return sec*1e9 + nsec, true
		}
		oob = oob[min(len(oob), unix.CmsgSpace(l-hdr)):]
	}
	return 0, false
}

// arrivalNet is the operating system's network for one subscriber's
// connection, whose UDP sockets note RTP arrival times.
type arrivalNet struct {
	*stdnet.Net
	arr *arrivals
}

func (n *arrivalNet) ListenUDP(network string, laddr *net.UDPAddr) (transport.UDPConn, error) {
	c, err := n.Net.ListenUDP(network, laddr)
	if err != nil {
		return nil, err
	}
	uc, ok := c.(*net.UDPConn)
	if !ok {
		return c, nil
	}
	return newArrivalConn(uc, n.arr)
}

func (n *arrivalNet) ListenPacket(network, address string) (net.PacketConn, error) {
	c, err := n.Net.ListenPacket(network, address)
	if err != nil {
		return nil, err
	}
	uc, ok := c.(*net.UDPConn)
	if !ok {
		return c, nil
	}
	return newArrivalConn(uc, n.arr)
}

// arrivalConn is a UDP socket with SO_TIMESTAMPNS that notes the arrival
// of what it reads. pion's ICE reads it through ReadFromAddrPort, one
// reader at a time, so one control-message buffer serves.
type arrivalConn struct {
	*net.UDPConn
	arr *arrivals
	oob []byte
}

func newArrivalConn(c *net.UDPConn, arr *arrivals) (*arrivalConn, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("bench: socket: %w", err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1)
	}); err != nil || serr != nil {
		c.Close()
		return nil, fmt.Errorf("bench: SO_TIMESTAMPNS: %w", errors.Join(err, serr))
	}
	return &arrivalConn{UDPConn: c, arr: arr, oob: make([]byte, 128)}, nil
}

// ReadFromAddrPort implements ice.AddrPortReaderWriter.
func (c *arrivalConn) ReadFromAddrPort(b []byte) (int, netip.AddrPort, error) {
	n, oobn, _, addr, err := c.UDPConn.ReadMsgUDPAddrPort(b, c.oob)
	if err == nil {
		c.arr.note(b[:n], c.oob[:oobn])
	}
	// An IPv4 peer can come back IPv4-mapped; ICE compares it with the
	// candidate's plain IPv4 address.
	return n, netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port()), err
}

// WriteToAddrPort implements ice.AddrPortReaderWriter.
func (c *arrivalConn) WriteToAddrPort(b []byte, addr netip.AddrPort) (int, error) {
	return c.UDPConn.WriteToUDPAddrPort(b, addr)
}

// ReadFrom notes arrivals too, for a reader that does not use the
// AddrPort path.
func (c *arrivalConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, oobn, _, addr, err := c.UDPConn.ReadMsgUDP(b, c.oob)
	if err == nil {
		c.arr.note(b[:n], c.oob[:oobn])
	}
	if addr == nil {
		return n, nil, err
	}
	return n, addr, err
}
