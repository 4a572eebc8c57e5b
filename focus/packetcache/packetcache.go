// Package packetcache keeps the last packets of one published RTP stream so
// that a NACK from any subscriber can be answered without asking the
// publisher again.
//
// A Cache is shared by every subscriber of a layer: one writer (the layer's
// read loop) stores each packet as it arrives, many readers (the
// subscribers' RTCP goroutines) copy packets out. Its memory is fixed when it
// is made, so a busy conference cannot grow it.
package packetcache

import "sync"

// MaxPacket is the largest packet a slot holds. Larger packets cannot come
// from a standard Ethernet path and are not cached.
const MaxPacket = 1500

// maxSlots caps a cache at about 6 MB; it also divides 65536, so that a
// sequence number always maps to the same slot across the 16-bit wrap.
const maxSlots = 4096

// Cache is a ring of fixed-size slots indexed by sequence number.
//
// It is guarded by one sync.RWMutex rather than per-slot seqlocks: readers
// are rare (only on loss) and the writer holds the lock for one copy of at
// most 1500 bytes, so contention is negligible, while a seqlock would read
// bytes that the writer is changing, which the race detector (rightly, by
// the memory model) reports.
type Cache struct {
	mu    sync.RWMutex
	mask  uint16
	buf   []byte // len(slots)*MaxPacket, allocated once
	slots []slot

	// highest is the newest sequence number stored (valid when started):
	// a packet more than len(slots) behind it is too old even if its slot
	// was never reused, e.g. after a jump in the publisher's numbering.
	highest uint16
	started bool
}

type slot struct {
	seq   uint16
	n     uint16 // bytes used in the slot
	valid bool
}

// New returns a cache of slots packets, rounded up to a power of two and
// capped at 4096. Its memory is slots*MaxPacket bytes.
func New(slots int) *Cache {
	n := 1
	for n < slots && n < maxSlots {
		n <<= 1
	}
	return &Cache{
		mask:  uint16(n - 1),
		buf:   make([]byte, n*MaxPacket),
		slots: make([]slot, n),
	}
}

// Slots returns the number of packets the cache holds.
func (c *Cache) Slots() int { return len(c.slots) }

// Store copies the whole RTP packet pkt with sequence number seq, and
// reports whether the cache already held seq: the packet is then a
// duplicate (a publisher's retransmission of a packet that arrived after
// all) and is not stored again. Packets larger than MaxPacket are
// ignored. A late packet does not replace a newer one that already took
// its slot: the newer one is more likely to be NACKed.
func (c *Cache) Store(seq uint16, pkt []byte) (duplicate bool) {
	if len(pkt) > MaxPacket {
		return false
	}
	i := int(seq & c.mask)
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.started || int16(seq-c.highest) > 0 {
		c.highest, c.started = seq, true
	} else if c.tooOld(seq) {
		return false
	}
	s := &c.slots[i]
	if s.valid && s.seq == seq {
		return true
	}
	if s.valid && int16(seq-s.seq) < 0 {
		return false
	}
	off := i * MaxPacket
	copy(c.buf[off:off+len(pkt)], pkt)
	*s = slot{seq: seq, n: uint16(len(pkt)), valid: true}
	return false
}

// Get copies the packet with sequence number seq into dst and returns its
// length. It returns 0 when the packet is absent, was overwritten by a newer
// one, or does not fit in dst.
func (c *Cache) Get(seq uint16, dst []byte) int {
	i := int(seq & c.mask)
	c.mu.RLock()
	defer c.mu.RUnlock()
	s := c.slots[i]
	if !s.valid || s.seq != seq || int(s.n) > len(dst) || c.tooOld(seq) {
		return 0
	}
	off := i * MaxPacket
	return copy(dst, c.buf[off:off+int(s.n)])
}

// Reset forgets every packet, for when the publisher changes SSRC and its
// sequence numbers start over.
func (c *Cache) Reset() {
	c.mu.Lock()
	clear(c.slots)
	c.started = false
	c.mu.Unlock()
}

// tooOld reports whether seq is further behind the newest stored packet than
// the cache reaches. The caller holds mu.
func (c *Cache) tooOld(seq uint16) bool {
	return int(uint16(c.highest-seq)) >= len(c.slots)
}
