// Package sequencer remembers, for one subscriber's video track, what each
// outgoing sequence number carried, so that a NACK for an outgoing number
// can be mapped back to the publisher's packet (in the packet cache) and
// the values the forwarder rewrote on the way out.
//
// It also rate-limits retransmission: a receiver that keeps NACKing the same
// packet (because the resend was lost too, or because its NACK timer is
// shorter than the round trip) gets it resent at once the first time, then
// at most once per MinResendInterval, and at most MaxResends times.
package sequencer

import (
	"math"
	"sync"
	"time"
)

// Defaults for Options.
const (
	// MinResendInterval is about one round trip: a NACK arriving sooner
	// after the last resend of a packet was most likely sent before that
	// resend could arrive.
	MinResendInterval = 100 * time.Millisecond
	// MaxResends bounds what one lost packet can cost: past it the
	// receiver is better served by a keyframe request.
	MaxResends = 3
)

// maxSlots is half the sequence space, so that "older than the newest by
// less than the ring" stays unambiguous across the 16-bit wrap.
const maxSlots = 1 << 15

// Entry is what the forwarder sent under one outgoing sequence number.
type Entry struct {
	Layer     int8   // source layer index in the up track
	SourceSeq uint16 // the publisher's sequence number
	Timestamp uint32 // the rewritten (outgoing) timestamp
	Marker    bool
	// VP8 descriptor values as sent (valid when VP8 is true)
	VP8       bool
	PictureID uint16
	TL0PICIDX uint8
	KEYIDX    uint8
}

// Options tune retransmission limits. Zero fields take the defaults.
type Options struct {
	MinInterval time.Duration // default MinResendInterval
	MaxResends  int           // default MaxResends
}

// Sequencer is a ring of entries indexed by outgoing sequence number. It is
// safe for concurrent use: the forwarding goroutine pushes, the RTCP
// goroutine looks up; one uncontended mutex costs less than the coordination
// a caller would otherwise need.
type Sequencer struct {
	mu          sync.Mutex
	mask        uint16
	slots       []slot
	minInterval int32 // milliseconds
	maxResends  uint8

	highest uint16 // newest outgoing seq pushed (valid when started)
	started bool
}

type slot struct {
	Entry
	// sentAt is the push or the last resend in unix milliseconds,
	// modulo 2^32 (49 days): only differences of seconds are taken. A
	// slot is 24 bytes, and a video down track has hundreds.
	sentAt  uint32
	outSeq  uint16 // full outgoing seq: a slot reused by a newer seq is stale
	flags   uint8
	resends uint8
}

// Slot flags.
const (
	pushed uint8 = 1 << iota // the slot holds a packet
	late                     // pushed after a newer seq: forwarded out of order
)

// millis is t in unix milliseconds, modulo 2^32.
func millis(t time.Time) uint32 { return uint32(t.UnixMilli()) }

// New returns a sequencer remembering the last slots outgoing packets,
// rounded up to a power of two and capped at 32768, with the default
// retransmission limits.
func New(slots int) *Sequencer {
	return NewWithOptions(slots, Options{})
}

// NewWithOptions is New with explicit retransmission limits.
func NewWithOptions(slots int, o Options) *Sequencer {
	n := 1
	for n < slots && n < maxSlots {
		n <<= 1
	}
	if o.MinInterval <= 0 {
		o.MinInterval = MinResendInterval
	}
	if o.MaxResends <= 0 {
		o.MaxResends = MaxResends
	}
	if o.MaxResends > 255 {
		o.MaxResends = 255
	}
	return &Sequencer{
		mask:        uint16(n - 1),
		slots:       make([]slot, n),
		minInterval: int32(min(max(o.MinInterval.Milliseconds(), 1), math.MaxInt32)),
		maxResends:  uint8(o.MaxResends),
	}
}

// Push records what was sent as outSeq at now.
func (s *Sequencer) Push(outSeq uint16, e Entry, now time.Time) {
	s.mu.Lock()
	flags := pushed
	if s.started && int16(outSeq-s.highest) < 0 {
		flags |= late
	} else {
		s.highest, s.started = outSeq, true
	}
	s.slots[outSeq&s.mask] = slot{Entry: e, outSeq: outSeq, flags: flags, sentAt: millis(now)}
	s.mu.Unlock()
}

// Lookup returns the entry for a NACKed outgoing seq and counts a resend at
// now. It refuses (ok=false) unknown/too-old seqs, a seq resent less than
// the minimum interval ago (one RTT-ish, 100 ms by default), a seq that
// was forwarded out of order less than that interval ago, and a seq
// already resent the maximum number of times (3 by default).
func (s *Sequencer) Lookup(outSeq uint16, now time.Time) (Entry, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.started || int(uint16(s.highest-outSeq)) >= len(s.slots) {
		return Entry{}, false
	}
	sl := &s.slots[outSeq&s.mask]
	if sl.flags&pushed == 0 || sl.outSeq != outSeq || sl.resends >= s.maxResends {
		return Entry{}, false
	}
	// The first resend may follow the original at once: a receiver NACKs
	// only a gap it saw, and its RTT is unknown here. Later ones wait, so
	// that the NACKs a receiver repeats before its first resend arrives
	// are not all answered. So does the first resend of a packet that
	// was forwarded late (after newer ones, as when the publisher's own
	// retransmission filled a gap): the receiver NACKed the gap the
	// packet left, and the NACK most likely crossed the packet itself.
	t := millis(now)
	if (sl.resends > 0 || sl.flags&late != 0) && int32(t-sl.sentAt) < s.minInterval {
		return Entry{}, false
	}
	sl.sentAt = t
	sl.resends++
	return sl.Entry, true
}

// Reset forgets every packet, for when the outgoing numbering starts over.
func (s *Sequencer) Reset() {
	s.mu.Lock()
	clear(s.slots)
	s.started = false
	s.mu.Unlock()
}
