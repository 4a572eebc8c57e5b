package bwe

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"
)

// The RTCP feedback the estimator reads arrives from every subscriber
// about ten times a second, so it is read in place: nothing here
// allocates unless it reports an error.

// ErrMalformed is wrapped by every error Packets and ParseTWCC return.
// ParseREMB, which returns no error, allocates none.
var ErrMalformed = errors.New("malformed RTCP")

// RTCP packet types and feedback formats (RFC 4585 §6.1, and the TWCC
// and REMB drafts).
const (
	rtcpRTPFB = 205 // transport layer feedback
	rtcpPSFB  = 206 // payload-specific feedback
	fmtTWCC   = 15  // draft-holmer-rmcat-transport-wide-cc-extensions-01
	fmtAFB    = 15  // application layer feedback: REMB is one kind
)

// rtcpHeader is the common first word of every RTCP packet (RFC 3550 §6.4.1).
type rtcpHeader struct {
	padding bool
	count   uint8 // RC, SC or FMT, by packet type
	pt      uint8
	size    int // bytes, as the length field says: header and padding included
}

// readRTCPHeader reads the header of the packet at the start of b. ok is
// false if there is none, or if the packet does not fit in b:
// rtcpHeaderError says why. (The error is made apart so that ParseREMB,
// which reports none, allocates none.)
func readRTCPHeader(b []byte) (h rtcpHeader, ok bool) {
	if len(b) < 4 || b[0]>>6 != 2 {
		return rtcpHeader{}, false
	}
	h = rtcpHeader{
		padding: b[0]&0x20 != 0,
		count:   b[0] & 0x1f,
		pt:      b[1],
		size:    4 * (int(binary.BigEndian.Uint16(b[2:])) + 1),
	}
	return h, h.size <= len(b)
}

func rtcpHeaderError(b []byte) error {
	switch {
	case len(b) < 4:
		return fmt.Errorf("%d bytes, shorter than a header: %w", len(b), ErrMalformed)
	case b[0]>>6 != 2:
		return fmt.Errorf("version %d, not 2: %w", b[0]>>6, ErrMalformed)
	default:
		h, _ := readRTCPHeader(b)
		return fmt.Errorf("type %d: length says %d bytes, %d there: %w", h.pt, h.size, len(b), ErrMalformed)
	}
}

// contentEnd returns where the packet's content ends: before the padding
// if the P bit is set. The last byte counts the padding, itself included
// (RFC 3550 §6.4.1), so it is at least 1 and cannot reach into the header:
// ok is false if it does.
func (h rtcpHeader) contentEnd(pkt []byte) (end int, ok bool) {
	if !h.padding {
		return h.size, true
	}
	n := int(pkt[h.size-1])
	return h.size - n, n > 0 && n <= h.size-4
}

// Packets walks a compound RTCP packet b, calling fn for each packet in it
// with its packet type (PT, e.g. 205), its format/count field (the 5-bit
// FMT/RC), and the packet's whole bytes (4-byte header included, as long as
// the header's length field says).
// It stops at, and returns, the first error: a packet shorter than 4 bytes,
// version not 2, or a length running past b. Packets before it have been
// delivered. An empty b holds no packets and is no error.
//
// Only the framing is checked: padding and content are the business of
// the parser fn hands the packet to (ParseTWCC, ParseREMB). pkt's capacity
// ends with the packet, so appending to it cannot overwrite the next.
func Packets(b []byte, fn func(pt, fmt uint8, pkt []byte)) error {
	for off := 0; off < len(b); {
		h, ok := readRTCPHeader(b[off:])
		if !ok {
			return fmt.Errorf("bwe: RTCP packet at byte %d: %w", off, rtcpHeaderError(b[off:]))
		}
		end := off + h.size
		fn(h.pt, h.count, b[off:end:end])
		off = end
	}
	return nil
}

// TWCCHeader is the fixed part of a transport-wide congestion control
// feedback packet (draft-holmer-rmcat-transport-wide-cc-extensions-01,
// RTPFB PT=205 FMT=15).
type TWCCHeader struct {
	SenderSSRC, MediaSSRC uint32
	BaseSeq               uint16
	StatusCount           uint16
	ReferenceTime         uint32 // 24 bits, in units of 64 ms
	FeedbackCount         uint8
}

// twccFixed is the size of a TWCC packet before its first status chunk.
const twccFixed = 20

// Packet status symbols (draft §3.1.1) and the size of the receive delta
// each carries.
const (
	twccNotReceived = 0
	twccSmallDelta  = 1 // one unsigned byte
	twccLargeDelta  = 2 // two bytes, signed
	twccReserved    = 3 // see ParseTWCC
)

var twccDeltaSize = [4]int{twccSmallDelta: 1, twccLargeDelta: 2}

// ParseTWCC parses one TWCC packet (the bytes Packets gives for PT 205 FMT 15)
// and calls fn once per reported packet, in sequence order starting at
// BaseSeq (sequence numbers wrap at 65536): received reports whether the
// packet arrived; arrival is then its arrival time in microseconds on the
// feedback's clock: ReferenceTime*64000 plus the sum of all receive deltas up
// to and including this packet (each delta in units of 250 µs). For packets
// not received, arrival is 0.
//
// The whole packet is checked before fn is first called, so on error fn
// has not been called. Errors wrap ErrMalformed: a packet that is not
// version 2 RTPFB FMT 15, that is shorter than its length field or than
// the 20-byte fixed part, whose padding count is 0 or leaves less than the
// fixed part, whose chunks end before StatusCount packets are covered, or
// whose receive deltas run past the content. As in pion and libwebrtc, the
// deltas start right after the last chunk StatusCount needs and a chunk's
// symbols past StatusCount are ignored. As in pion (libwebrtc rejects it),
// a StatusCount of 0 is no error: fn is not called. Bytes of pkt after the
// length the header gives are ignored.
//
// Symbol 3 is "reserved" in draft §3.1.1, though the draft's run length
// example 2 calls it "packet received, w/o recv delta". libwebrtc rejects
// a feedback that uses it; pion accepts it anywhere a 2-bit symbol may
// stand, consuming no delta. This accepts it like pion, consuming no delta,
// and reports such a packet as not received: it carries no arrival time an
// estimator could use, and counting it lost errs towards a lower estimate
// for the one subscriber that sends it. No known sender does.
//
// Unlike pion's Unmarshal, this respects padding (as libwebrtc does): the
// chunks and deltas end where the padding begins.
func ParseTWCC(pkt []byte, fn func(seq uint16, received bool, arrival int64)) (TWCCHeader, error) {
	h, ok := readRTCPHeader(pkt)
	if !ok {
		return TWCCHeader{}, fmt.Errorf("bwe: TWCC: %w", rtcpHeaderError(pkt))
	}
	if h.pt != rtcpRTPFB || h.count != fmtTWCC {
		return TWCCHeader{}, fmt.Errorf("bwe: TWCC: packet type %d format %d, not %d/%d: %w", h.pt, h.count, rtcpRTPFB, fmtTWCC, ErrMalformed)
	}
	end, ok := h.contentEnd(pkt)
	if !ok {
		return TWCCHeader{}, fmt.Errorf("bwe: TWCC: %d bytes of padding in a %d-byte packet: %w", h.size-end, h.size, ErrMalformed)
	}
	if end < twccFixed {
		return TWCCHeader{}, fmt.Errorf("bwe: TWCC: %d bytes of content, shorter than the %d-byte fixed part: %w", end, twccFixed, ErrMalformed)
	}
	th := TWCCHeader{
		SenderSSRC:    binary.BigEndian.Uint32(pkt[4:]),
		MediaSSRC:     binary.BigEndian.Uint32(pkt[8:]),
		BaseSeq:       binary.BigEndian.Uint16(pkt[12:]),
		StatusCount:   binary.BigEndian.Uint16(pkt[14:]),
		ReferenceTime: binary.BigEndian.Uint32(pkt[16:]) >> 8,
		FeedbackCount: pkt[19],
	}
	count := int(th.StatusCount)

	// First pass: find where the chunks end and check that the deltas
	// they announce are all there.
	pos, need := twccFixed, 0
	for covered := 0; covered < count; {
		if pos+2 > end {
			return TWCCHeader{}, fmt.Errorf("bwe: TWCC: chunks cover %d of the %d packets of the status count: %w", covered, count, ErrMalformed)
		}
		c := readTWCCChunk(binary.BigEndian.Uint16(pkt[pos:]), count-covered)
		pos += 2
		covered += c.n
		if c.width == 0 {
			need += c.n * twccDeltaSize[c.symbol(0)]
			continue
		}
		for i := range c.n {
			need += twccDeltaSize[c.symbol(i)]
		}
	}
	if pos+need > end {
		return TWCCHeader{}, fmt.Errorf("bwe: TWCC: receive deltas need %d bytes, %d left: %w", need, end-pos, ErrMalformed)
	}

	// Second pass: report. Nothing can fail any more.
	r := twccReader{
		deltas:  pkt[pos : pos+need],
		seq:     th.BaseSeq,
		arrival: int64(th.ReferenceTime) * 64000,
		fn:      fn,
	}
	pos = twccFixed
	for left := count; left > 0; pos += 2 {
		c := readTWCCChunk(binary.BigEndian.Uint16(pkt[pos:]), left)
		left -= c.n
		for i := range c.n {
			r.report(c.symbol(i))
		}
	}
	return th, nil
}

// twccChunk is one packet status chunk (draft §3.1.2–3.1.4), cut to the
// packets still to be reported.
type twccChunk struct {
	bits  uint16
	n     int    // packets it reports
	width uint16 // bits per symbol: 0 for a run length chunk, 1 or 2 for a vector
}

func readTWCCChunk(c uint16, left int) twccChunk {
	switch {
	case c&0x8000 == 0: // run length: T=0, S (2 bits), run length (13 bits)
		return twccChunk{bits: c, n: min(int(c&0x1fff), left)}
	case c&0x4000 == 0: // vector of 14 one-bit symbols: 0 not received, 1 small delta
		return twccChunk{bits: c, n: min(14, left), width: 1}
	default: // vector of 7 two-bit symbols
		return twccChunk{bits: c, n: min(7, left), width: 2}
	}
}

// symbol returns the status of the chunk's i-th packet.
func (c twccChunk) symbol(i int) uint16 {
	if c.width == 0 {
		return c.bits >> 13 & 3
	}
	return c.bits >> (14 - c.width*uint16(i+1)) & (1<<c.width - 1)
}

// twccReader reports packets in order, reading their receive deltas.
type twccReader struct {
	deltas  []byte
	seq     uint16
	arrival int64 // µs
	fn      func(seq uint16, received bool, arrival int64)
}

func (r *twccReader) report(symbol uint16) {
	switch symbol {
	case twccSmallDelta:
		r.arrival += 250 * int64(r.deltas[0])
		r.deltas = r.deltas[1:]
		r.fn(r.seq, true, r.arrival)
	case twccLargeDelta:
		r.arrival += 250 * int64(int16(binary.BigEndian.Uint16(r.deltas)))
		r.deltas = r.deltas[2:]
		r.fn(r.seq, true, r.arrival)
	default: // twccNotReceived, twccReserved
		r.fn(r.seq, false, 0)
	}
	r.seq++
}

// ParseREMB parses a receiver estimated maximum bitrate packet
// (draft-alvestrand-rmcat-remb-03: PSFB PT=206 FMT=15 with the "REMB"
// identifier), returning the bitrate in bits per second (mantissa <<
// exponent, saturating at math.MaxUint64 if it would overflow).
// ok is false for any other or malformed packet: one whose SSRC count
// disagrees with its length, or whose padding is invalid.
//
// Two checks of pion's are left out, as libwebrtc leaves them out: the
// media SSRC, which the draft says is 0, may be anything, and padding
// is allowed (and skipped).
func ParseREMB(pkt []byte) (bitrate uint64, ok bool) {
	h, ok := readRTCPHeader(pkt)
	if !ok || h.pt != rtcpPSFB || h.count != fmtAFB {
		return 0, false
	}
	end, ok := h.contentEnd(pkt)
	// Header, sender and media SSRC, "REMB", then the SSRC count,
	// exponent and mantissa, then the SSRCs.
	if !ok || end < 20 || string(pkt[12:16]) != "REMB" || end != 20+4*int(pkt[16]) {
		return 0, false
	}
	exp := uint(pkt[17] >> 2)
	mantissa := uint64(pkt[17]&3)<<16 | uint64(pkt[18])<<8 | uint64(pkt[19])
	if mantissa != 0 && uint(bits.Len64(mantissa))+exp > 64 {
		return math.MaxUint64, true
	}
	return mantissa << exp, true
}
