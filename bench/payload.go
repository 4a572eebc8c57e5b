package bench

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/focus-sfu/focus/focus/vp8"
)

// Every synthetic payload carries a stamp right after its codec header:
//
//	magic "fb" | flags | layer | stream uint32 | counter uint32 | sent int64
//
// flags bit 0 is set on video. stream names the publisher, layer its
// simulcast layer (0 without simulcast), counter counts the packets of one
// stream and layer from 0, and sent is the publisher's wall clock in unix
// nanoseconds when it wrote the packet. Sender and receivers share the
// machine, so arrival minus sent is the one-way delay.
//
// The stamp follows the codec header rather than ending the payload so
// that the payload still reads as VP8 or Opus to anything that looks: a
// VP8 payload descriptor, then on a frame's first packet the frame tag
// (and a keyframe's start code and size), then the stamp, then filler.
const (
	StampSize = 20
	stampM0   = 'f'
	stampM1   = 'b'
	flagVideo = 1
)

// Stamp is what a synthetic payload says about itself.
type Stamp struct {
	Video   bool
	Layer   uint8
	Stream  uint32
	Counter uint32
	// Sent is unix nanoseconds.
	Sent int64
}

// Errors of the payload parsers.
var (
	ErrShort    = errors.New("bench: payload too short")
	ErrNotStamp = errors.New("bench: no stamp in payload")
	ErrVP8      = errors.New("bench: invalid VP8 payload")
)

func appendStamp(dst []byte, s Stamp) []byte {
	var flags byte
	if s.Video {
		flags |= flagVideo
	}
	dst = append(dst, stampM0, stampM1, flags, s.Layer)
	dst = binary.BigEndian.AppendUint32(dst, s.Stream)
	dst = binary.BigEndian.AppendUint32(dst, s.Counter)
	return binary.BigEndian.AppendUint64(dst, uint64(s.Sent))
}

func parseStamp(p []byte) (Stamp, error) {
	if len(p) < StampSize {
		return Stamp{}, fmt.Errorf("%w: %d bytes left for a %d-byte stamp", ErrShort, len(p), StampSize)
	}
	if p[0] != stampM0 || p[1] != stampM1 {
		return Stamp{}, ErrNotStamp
	}
	return Stamp{
		Video:   p[2]&flagVideo != 0,
		Layer:   p[3],
		Stream:  binary.BigEndian.Uint32(p[4:]),
		Counter: binary.BigEndian.Uint32(p[8:]),
		Sent:    int64(binary.BigEndian.Uint64(p[12:])),
	}, nil
}

// pad appends zero bytes up to a payload of size bytes from start.
func pad(dst []byte, start, size int) []byte {
	n := start + size - len(dst)
	if n <= 0 {
		return dst
	}
	l := len(dst)
	dst = slices.Grow(dst, n)[:l+n]
	clear(dst[l:])
	return dst
}

// opusTOC is the TOC byte of one 20 ms CELT fullband frame (config 31,
// mono, code 0).
const opusTOC = 0xf8

// AppendOpus appends a synthetic Opus payload of size bytes (at least the
// TOC byte and the stamp).
func AppendOpus(dst []byte, s Stamp, size int) []byte {
	start := len(dst)
	s.Video = false
	dst = appendStamp(append(dst, opusTOC), s)
	return pad(dst, start, size)
}

// ParseOpus reads the stamp of a synthetic Opus payload.
func ParseOpus(p []byte) (Stamp, error) {
	if len(p) < 1 {
		return Stamp{}, fmt.Errorf("%w: empty", ErrShort)
	}
	return parseStamp(p[1:])
}

// VP8Frame describes the packet AppendVP8 writes.
type VP8Frame struct {
	// Start marks a frame's first packet, which carries the frame tag.
	Start bool
	// Keyframe makes that frame tag a keyframe's, with the start code and
	// Width x Height.
	Keyframe      bool
	PictureID     uint16 // 15 bits
	Width, Height uint16
}

// VP8 payload descriptor bits (RFC 7741 §4.2).
const (
	vp8X = 0x80 // extension byte present
	vp8S = 0x10 // start of a VP8 partition
	vp8I = 0x80 // picture ID present (extension byte)
	vp8L = 0x40 // TL0PICIDX present
	vp8T = 0x20 // TID present
	vp8K = 0x10 // KEYIDX present
	vp8M = 0x80 // 15-bit picture ID
)

// AppendVP8 appends a synthetic VP8 payload of size bytes: a payload
// descriptor with a 15-bit picture ID, as browsers send; on a frame's first
// packet the frame tag, and for a keyframe the start code and size (RFC
// 6386 §9.1); the stamp; filler.
func AppendVP8(dst []byte, s Stamp, f VP8Frame, size int) []byte {
	start := len(dst)
	b0 := byte(vp8X)
	if f.Start {
		b0 |= vp8S
	}
	pid := f.PictureID & 0x7fff
	dst = append(dst, b0, vp8I, vp8M|byte(pid>>8), byte(pid))
	if f.Start {
		dst = vp8.AppendFrameHeader(dst, f.Keyframe, f.Width, f.Height)
	}
	s.Video = true
	return pad(appendStamp(dst, s), start, size)
}

// VP8Info is what ParseVP8 reads from the codec header.
type VP8Info struct {
	// Start is set on a frame's first packet (S bit, partition 0).
	Start bool
	// Keyframe is set on a keyframe's first packet.
	Keyframe bool
}

// ParseVP8 reads a VP8 payload: the payload descriptor with whatever
// optional fields an SFU rewrote into it, the frame tag on a frame's first
// packet, then the stamp.
func ParseVP8(p []byte) (Stamp, VP8Info, error) {
	if len(p) < 1 {
		return Stamp{}, VP8Info{}, fmt.Errorf("%w: empty", ErrShort)
	}
	n := 1
	if p[0]&vp8X != 0 {
		if len(p) < 2 {
			return Stamp{}, VP8Info{}, fmt.Errorf("%w: truncated extension byte", ErrVP8)
		}
		ext := p[1]
		n = 2
		if ext&vp8I != 0 {
			if len(p) <= n {
				return Stamp{}, VP8Info{}, fmt.Errorf("%w: truncated picture ID", ErrVP8)
			}
			if p[n]&vp8M != 0 {
				n += 2
			} else {
				n++
			}
		}
		if ext&vp8L != 0 {
			n++
		}
		if ext&(vp8T|vp8K) != 0 {
			n++
		}
	}
	if len(p) < n {
		return Stamp{}, VP8Info{}, fmt.Errorf("%w: truncated descriptor", ErrVP8)
	}
	info := VP8Info{Start: p[0]&vp8S != 0 && p[0]&0x07 == 0}
	if info.Start {
		if len(p) < n+3 {
			return Stamp{}, VP8Info{}, fmt.Errorf("%w: truncated frame tag", ErrVP8)
		}
		if p[n]&0x01 == 0 {
			if len(p) < n+10 || p[n+3] != 0x9d || p[n+4] != 0x01 || p[n+5] != 0x2a {
				return Stamp{}, VP8Info{}, fmt.Errorf("%w: keyframe without start code", ErrVP8)
			}
			info.Keyframe = true
			n += 10
		} else {
			n += 3
		}
	}
	s, err := parseStamp(p[n:])
	if err != nil {
		return Stamp{}, VP8Info{}, err
	}
	if !s.Video {
		return Stamp{}, VP8Info{}, fmt.Errorf("%w: audio stamp in a VP8 payload", ErrNotStamp)
	}
	return s, info, nil
}

// rtpPayload returns the payload of an RTP packet, without its header,
// CSRCs, extension and padding.
func rtpPayload(b []byte) ([]byte, bool) {
	if len(b) < 12 || b[0]>>6 != 2 {
		return nil, false
	}
	n := 12 + 4*int(b[0]&0x0f)
	if b[0]&0x10 != 0 {
		if len(b) < n+4 {
			return nil, false
		}
		n += 4 + 4*int(binary.BigEndian.Uint16(b[n+2:]))
	}
	if len(b) < n {
		return nil, false
	}
	end := len(b)
	if b[0]&0x20 != 0 {
		p := int(b[end-1])
		if p == 0 || p > end-n {
			return nil, false
		}
		end -= p
	}
	return b[n:end], true
}
