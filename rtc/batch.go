package rtc

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/rs/zerolog"
)

// batchConn is the media socket with batched writes. A datagram written
// to it is copied into a batch (or, on the direct path, encrypted straight
// into a slot of it: reserve and commit) and the call returns at once; a
// flusher goroutine sends each batch with one system call (sendmmsg on
// Linux).
//
// A packet fanned out to a hundred subscribers is a hundred writes in a
// row from one goroutine, so the batch fills while that goroutine runs
// and goes out in one call when it next waits for input. With one CPU
// (GOMAXPROCS=1) the flusher runs exactly then; with more it runs beside
// the writers and the batches are smaller. The system call is most of the
// cost of a forwarded packet, so this is the largest single saving on the
// forwarding path; see docs/performance.md.
//
// Reads go straight to the socket (on Linux as raw system calls, see
// rawReader). pion's UDP mux finds the allocation-free netip methods
// through ice.AddrPortReaderWriter; on its way, ReadFromAddrPort hands
// the SRTCP of a connection with a direct path to that path, which takes
// most of it (see directPath.receive).
type batchConn struct {
	*net.UDPConn
	sender batchSender
	reader datagramReader
	log    zerolog.Logger

	mu     sync.Mutex
	fill   *batch // being filled
	spare  *batch // free; nil while a batch is being sent
	closed bool

	// sendMu is held while a batch is sent, so batches leave in order
	// and the spare is back whenever it is free.
	sendMu sync.Mutex
	wake   chan struct{}
	done   chan struct{}

	batches, datagrams, dropped atomic.Uint64
	// RTCP the direct paths took, and replays they dropped.
	rtcpTaken, rtcpReplays atomic.Uint64

	// routes maps the remote address of each connection's selected ICE
	// pair (unmapped, as an IPv4 address and not an IPv6-mapped one) to
	// the connection's direct path, which takes the feedback that
	// address sends (see directPath.receive). The paths decrypt into
	// rxBuf, under rxMu.
	routeMu sync.RWMutex
	routes  map[netip.AddrPort]*directPath
	rxMu    sync.Mutex
	rxBuf   [slotSize]byte
}

// Batch geometry: a batch holds a packet fanned out to a few hundred
// subscribers; a longer packet than a slot is sent on its own.
const (
	batchSlots = 256
	slotSize   = 1536
)

type batch struct {
	n    int
	lens [batchSlots]int // 0 for a slot whose writer gave up: not sent
	to   [batchSlots]netip.AddrPort
	bufs [batchSlots][slotSize]byte
	sys  batchSys // the platform's system-call structures
	// writing counts the slots handed out by reserve and not yet
	// committed; the batch is sent once it is zero.
	writing sync.WaitGroup
}

// batchSender sends b.bufs[:b.n]; the platform provides it.
type batchSender interface {
	send(b *batch) (dropped int)
}

// datagramReader reads one datagram and its sender, as
// net.UDPConn.ReadFromUDPAddrPort; the platform provides it.
type datagramReader interface {
	read(b []byte) (int, netip.AddrPort, error)
}

var errEmptyBuffer = errors.New("rtc: a read into an empty buffer")

func newBatchConn(conn *net.UDPConn, log zerolog.Logger) (*batchConn, error) {
	s, err := newBatchSender(conn)
	if err != nil {
		return nil, err
	}
	r, err := newDatagramReader(conn)
	if err != nil {
		return nil, err
	}
	c := &batchConn{
		reader:  r,
		UDPConn: conn,
		sender:  s,
		log:     log,
		fill:    new(batch),
		spare:   new(batch),
		wake:    make(chan struct{}, 1),
		done:    make(chan struct{}),
		routes:  make(map[netip.AddrPort]*directPath),
	}
	go c.flusher()
	return c, nil
}

// WriteToAddrPort queues b for to. It never blocks on the network: a
// full batch is sent by the caller.
func (c *batchConn) WriteToAddrPort(b []byte, to netip.AddrPort) (int, error) {
	if len(b) > slotSize {
		return c.UDPConn.WriteToUDPAddrPort(b, to)
	}
	f, i, err := c.reserve(to)
	if err != nil {
		return 0, err
	}
	c.commit(f, i, copy(f.bufs[i][:], b))
	return len(b), nil
}

// reserve hands out the next slot of the batch being filled, for a
// datagram to to of at most slotSize bytes, which the caller writes into
// the slot's buffer (so that a packet can be encrypted straight into the
// batch) and then passes to commit. Nothing else may happen in between:
// the batch waits for it.
func (c *batchConn) reserve(to netip.AddrPort) (*batch, int, error) {
	c.mu.Lock()
	for c.fill.n == batchSlots && !c.closed {
		c.mu.Unlock()
		c.flush()
		c.mu.Lock()
	}
	if c.closed {
		c.mu.Unlock()
		return nil, 0, net.ErrClosed
	}
	f := c.fill
	i := f.n
	f.n++
	f.to[i] = to
	f.writing.Add(1)
	c.mu.Unlock()
	return f, i, nil
}

// commit ends the writing of slot i of b: n bytes, or 0 to send nothing.
func (c *batchConn) commit(b *batch, i, n int) {
	b.lens[i] = n
	b.writing.Done()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// ReadFromAddrPort reads one datagram that no direct path takes.
func (c *batchConn) ReadFromAddrPort(b []byte) (int, netip.AddrPort, error) {
	for {
		n, from, err := c.reader.read(b)
		if err != nil || !c.receive(b[:n], from) {
			return n, from, err
		}
	}
}

// receive offers the datagram pkt to the direct path routed from its
// sender, when it is RTCP, and reports whether the path took it.
func (c *batchConn) receive(pkt []byte, from netip.AddrPort) bool {
	// RTCP is told from RTP, STUN and DTLS by its version and packet
	// type (RFC 5761 §4, RFC 7983).
	if len(pkt) < srtcpHeaderSize || pkt[0]>>6 != 2 || pkt[1] < 192 || pkt[1] > 223 {
		return false
	}
	c.routeMu.RLock()
	p := c.routes[unmapped(from)]
	c.routeMu.RUnlock()
	if p == nil {
		return false
	}
	c.rxMu.Lock()
	v := p.receive(pkt, c.rxBuf[:])
	c.rxMu.Unlock()
	switch v {
	case rtcpTaken:
		c.rtcpTaken.Add(1)
	case rtcpReplay:
		if c.rtcpReplays.Add(1) == 1 {
			c.log.Warn().Stringer("from", from).Msg("media socket: an SRTCP packet replayed; dropped (logged once)")
		}
	}
	return v != rtcpLeft
}

// route moves p, a path that receives, from the remote address old to
// to; either may be the zero address (none).
func (c *batchConn) route(old, to netip.AddrPort, p *directPath) {
	if p.open == nil || old == to {
		return
	}
	c.routeMu.Lock()
	defer c.routeMu.Unlock()
	if old.IsValid() && c.routes[unmapped(old)] == p {
		delete(c.routes, unmapped(old))
	}
	if to.IsValid() {
		c.routes[unmapped(to)] = p
	}
}

// unmapped returns a with an IPv4-mapped IPv6 address as the IPv4 one:
// a dual-stack socket reads IPv4 senders so, while ICE names them plain.
func unmapped(a netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
}

// WriteTo queues b for addr, a *net.UDPAddr.
func (c *batchConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return c.UDPConn.WriteTo(b, addr)
	}
	return c.WriteToAddrPort(b, ua.AddrPort())
}

func (c *batchConn) flusher() {
	defer close(c.done)
	for range c.wake {
		c.flush()
		c.mu.Lock()
		closed := c.closed
		c.mu.Unlock()
		if closed {
			return
		}
	}
}

// flush sends the batch being filled, if it has anything.
func (c *batchConn) flush() {
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	c.mu.Lock()
	b := c.fill
	if b.n == 0 {
		c.mu.Unlock()
		return
	}
	c.fill, c.spare = c.spare, nil
	c.mu.Unlock()
	b.writing.Wait() // slots still being written

	c.batches.Add(1)
	c.datagrams.Add(uint64(b.n))
	if n := c.sender.send(b); n > 0 {
		if c.dropped.Add(uint64(n)) == uint64(n) {
			c.log.Warn().Int("datagrams", n).Msg("media socket: a datagram could not be sent; dropped (logged once)")
		}
	}
	b.n = 0
	c.mu.Lock()
	c.spare = b
	c.mu.Unlock()
}

// Close sends what is queued, stops the flusher and closes the socket.
func (c *batchConn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return net.ErrClosed
	}
	c.closed = true
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
	<-c.done
	c.flush()
	return c.UDPConn.Close()
}
