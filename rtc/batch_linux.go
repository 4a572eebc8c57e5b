package rtc

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// batchSys holds the sendmmsg arguments of a batch, built once per slot.
type batchSys struct {
	hdrs  [batchSlots]mmsghdr
	iovs  [batchSlots]unix.Iovec
	names [batchSlots]unix.RawSockaddrInet6
	// direct marks datagrams written one by one, outside sendmmsg.
	direct [batchSlots]bool
}

// mmsghdr is struct mmsghdr of <sys/socket.h>.
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
}

// mmsgSender sends batches with sendmmsg(2).
type mmsgSender struct {
	conn *net.UDPConn
	raw  syscall.RawConn
	inet bool // an AF_INET socket; otherwise AF_INET6, which takes IPv4 as mapped addresses

	// The arguments and results of the system call in flight, so that
	// the function given to raw.Write is made once, not per batch.
	hdrs   []mmsghdr
	sent   int
	errno  syscall.Errno
	sendFn func(fd uintptr) bool
}

func newBatchSender(conn *net.UDPConn) (batchSender, error) {
	raw, err := conn.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("rtc: media socket: %w", err)
	}
	var domain int
	var serr error
	if err := raw.Control(func(fd uintptr) {
		domain, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_DOMAIN)
	}); err != nil {
		return nil, fmt.Errorf("rtc: media socket: %w", err)
	}
	if serr != nil {
		return nil, fmt.Errorf("rtc: media socket domain: %w", serr)
	}
	m := &mmsgSender{conn: conn, raw: raw, inet: domain == unix.AF_INET}
	m.sendFn = m.sendmmsg
	return m, nil
}

// sendmmsg sends m.hdrs; raw.Write calls it when the socket is writable.
// It is a raw system call, as is the reader's recvfrom: see rawReader.
func (m *mmsgSender) sendmmsg(fd uintptr) bool {
	for {
		r, _, e := unix.RawSyscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&m.hdrs[0])), uintptr(len(m.hdrs)), 0, 0, 0)
		switch e {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false // wait until the socket can take more
		}
		m.sent, m.errno = int(r), e
		return true
	}
}

func (s *mmsgSender) send(b *batch) (dropped int) {
	sys := &b.sys
	for i := 0; i < b.n; i++ {
		h := &sys.hdrs[i].hdr
		sys.direct[i] = !s.sockaddr(&sys.names[i], b.to[i], h)
		sys.iovs[i].Base = &b.bufs[i][0]
		sys.iovs[i].SetLen(b.lens[i])
		h.Iov = &sys.iovs[i]
		h.SetIovlen(1)
	}
	for off := 0; off < b.n; {
		if b.lens[off] == 0 {
			off++ // given up by its writer
			continue
		}
		if sys.direct[off] {
			// An address sendmmsg is not given here (an IPv6 zone): the
			// socket's own write resolves it.
			if _, err := s.conn.WriteToUDPAddrPort(b.bufs[off][:b.lens[off]], b.to[off]); err != nil {
				dropped++
			}
			off++
			continue
		}
		end := off + 1
		for end < b.n && !sys.direct[end] && b.lens[end] != 0 {
			end++
		}
		s.hdrs = sys.hdrs[off:end]
		err := s.raw.Write(s.sendFn)
		sent, errno := s.sent, s.errno
		s.hdrs = nil
		switch {
		case err != nil: // the socket is closed
			return dropped + b.n - off
		case errno != 0:
			// The datagram at off failed on its own (an unreachable
			// route, say); the rest may not.
			dropped++
			off++
		default:
			off += sent
		}
	}
	return dropped
}

// sockaddr writes to into sa in the socket's family and points h at it.
func (s *mmsgSender) sockaddr(sa *unix.RawSockaddrInet6, to netip.AddrPort, h *unix.Msghdr) bool {
	addr, port := to.Addr(), to.Port()
	if s.inet {
		if !addr.Unmap().Is4() {
			return false
		}
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		*sa4 = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: addr.Unmap().As4()}
		putPort(&sa4.Port, port)
		h.Name = (*byte)(unsafe.Pointer(sa4))
		h.Namelen = unix.SizeofSockaddrInet4
		return true
	}
	if addr.Zone() != "" {
		return false // a link-local peer: not served on the media port
	}
	*sa = unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: addr.As16()}
	putPort(&sa.Port, port)
	h.Name = (*byte)(unsafe.Pointer(sa))
	h.Namelen = unix.SizeofSockaddrInet6
	return true
}

// putPort stores port in network byte order.
func putPort(p *uint16, port uint16) {
	b := (*[2]byte)(unsafe.Pointer(p))
	b[0], b[1] = byte(port>>8), byte(port)
}

// rawReader reads the media socket's datagrams with recvfrom(2) as a raw
// system call, which the runtime is not told of, as the sender's
// sendmmsg is. The socket is non-blocking, so neither call waits: the
// runtime's poller does the waiting, as for any socket.
//
// A system call the runtime is told of (entersyscall) wakes its monitor
// thread, sysmon, whenever all goroutines were idle before it. The focus
// is idle between a publisher's packets, so each packet woke sysmon,
// which then polled every 20 µs for a millisecond before it slept deeply
// again, and handed the processor to another thread whenever a send
// took longer than that: 7 to 8 % of the focus's CPU, and most of its
// thread switches (docs/performance.md). Raw calls leave sysmon asleep.
// Making only the send raw changed nothing: the reads still woke it.
type rawReader struct {
	raw syscall.RawConn

	mu sync.Mutex
	// The arguments and results of the call in flight, so that the
	// function given to raw.Read is made once.
	buf    []byte
	n      int
	errno  syscall.Errno
	from   unix.RawSockaddrInet6 // or a RawSockaddrInet4
	fromN  uint32
	readFn func(fd uintptr) bool
}

func newDatagramReader(conn *net.UDPConn) (datagramReader, error) {
	raw, err := conn.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("rtc: media socket: %w", err)
	}
	r := &rawReader{raw: raw}
	r.readFn = r.recvfrom
	return r, nil
}

// recvfrom reads one datagram into r.buf; raw.Read calls it when the
// socket is readable.
func (r *rawReader) recvfrom(fd uintptr) bool {
	for {
		r.fromN = unix.SizeofSockaddrInet6
		n, _, e := unix.RawSyscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&r.buf[0])), uintptr(len(r.buf)), 0,
			uintptr(unsafe.Pointer(&r.from)), uintptr(unsafe.Pointer(&r.fromN)))
		switch e {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false // wait until a datagram comes
		}
		r.n, r.errno = int(n), e
		return true
	}
}

func (r *rawReader) read(b []byte) (int, netip.AddrPort, error) {
	if len(b) == 0 {
		return 0, netip.AddrPort{}, errEmptyBuffer
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.buf = b
	err := r.raw.Read(r.readFn)
	r.buf = nil
	switch {
	case err != nil: // the socket is closed
		return 0, netip.AddrPort{}, err
	case r.errno != 0:
		return 0, netip.AddrPort{}, &net.OpError{Op: "read", Net: "udp", Err: os.NewSyscallError("recvfrom", r.errno)}
	}
	return r.n, r.sender(), nil
}

// sender returns the address the last datagram came from.
func (r *rawReader) sender() netip.AddrPort {
	switch r.from.Family {
	case unix.AF_INET:
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(&r.from))
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), getPort(&sa.Port))
	case unix.AF_INET6:
		a := netip.AddrFrom16(r.from.Addr)
		if r.from.Scope_id != 0 {
			a = a.WithZone(strconv.FormatUint(uint64(r.from.Scope_id), 10))
		}
		return netip.AddrPortFrom(a, getPort(&r.from.Port))
	}
	return netip.AddrPort{}
}

// getPort reads a port in network byte order.
func getPort(p *uint16) uint16 {
	b := (*[2]byte)(unsafe.Pointer(p))
	return uint16(b[0])<<8 | uint16(b[1])
}
