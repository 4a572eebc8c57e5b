package testclient

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"time"

	"github.com/focus-sfu/focus/focus/vp8"
)

// A synthetic payload ends in a fixed trailer so that a viewer can tell,
// without decoding any media, whether the payload crossed the SFU intact
// and where it sits in its publisher's stream:
//
//	magic[4] | session uint32 | counter uint32 | sent unix-nanos int64 | crc32
//
// The CRC covers the whole payload before it (codec header, filler and the
// rest of the trailer), so any rewrite of the payload shows up. The trailer
// sits at the end rather than after the codec header so that decoding needs
// no knowledge of the codec.
const (
	TrailerSize = 24
	magic       = "FcS1"
)

// Errors returned by DecodeTrailer.
var (
	ErrShortPayload = errors.New("testclient: payload shorter than trailer")
	ErrBadMagic     = errors.New("testclient: trailer magic mismatch")
	ErrBadChecksum  = errors.New("testclient: payload checksum mismatch")
)

// Marker is what a synthetic payload carries about itself.
type Marker struct {
	// Session is random per publisher track, so a restarted publisher is
	// told apart from a late packet of the previous one.
	Session uint32
	// Counter counts packets of one track, from 0.
	Counter uint32
	// Sent is when the publisher wrote the packet.
	Sent time.Time
}

// appendPayload appends a payload of exactly size bytes: header, filler, and
// the trailer describing m. size is raised to fit header and trailer.
func appendPayload(buf []byte, header []byte, size int, m Marker) []byte {
	if min := len(header) + TrailerSize; size < min {
		size = min
	}
	start := len(buf)
	buf = append(buf, header...)
	for i := len(header); i < size-TrailerSize; i++ {
		buf = append(buf, byte(m.Counter)+byte(i))
	}
	buf = append(buf, magic...)
	buf = binary.BigEndian.AppendUint32(buf, m.Session)
	buf = binary.BigEndian.AppendUint32(buf, m.Counter)
	buf = binary.BigEndian.AppendUint64(buf, uint64(m.Sent.UnixNano()))
	return binary.BigEndian.AppendUint32(buf, crc32.ChecksumIEEE(buf[start:]))
}

// AppendVP8 appends one synthetic VP8 RTP payload of size bytes: the
// payload descriptor, on the first packet of a frame (start) the frame
// header, a keyframe's when keyframe is set, filler, and the trailer
// describing m. Clients other than Publisher use it to send what a Viewer
// or TrackRecorder can check.
func AppendVP8(buf []byte, start, keyframe bool, size int, m Marker) []byte {
	var h [10]byte
	return appendPayload(buf, vp8Header(h[:0], start, keyframe), size, m)
}

// opusTOC is the TOC byte of a 20 ms CELT fullband frame (config 31,
// stereo off, code 0): it keeps the payload plausible Opus.
const opusTOC = 0xf8

// AppendOpus appends one synthetic 20 ms Opus RTP payload of size bytes,
// ending in the trailer describing m.
func AppendOpus(buf []byte, size int, m Marker) []byte {
	return appendPayload(buf, []byte{opusTOC}, size, m)
}

// DecodeTrailer checks a synthetic payload's trailer and checksum and
// returns its marker.
func DecodeTrailer(payload []byte) (Marker, error) {
	if len(payload) < TrailerSize {
		return Marker{}, fmt.Errorf("%w: %d bytes", ErrShortPayload, len(payload))
	}
	t := payload[len(payload)-TrailerSize:]
	if string(t[:4]) != magic {
		return Marker{}, ErrBadMagic
	}
	body := payload[:len(payload)-4]
	if got, want := crc32.ChecksumIEEE(body), binary.BigEndian.Uint32(t[20:]); got != want {
		return Marker{}, fmt.Errorf("%w: %08x != %08x", ErrBadChecksum, got, want)
	}
	return Marker{
		Session: binary.BigEndian.Uint32(t[4:]),
		Counter: binary.BigEndian.Uint32(t[8:]),
		Sent:    time.Unix(0, int64(binary.BigEndian.Uint64(t[12:]))),
	}, nil
}

// VP8 payload layout (RFC 7741). The publisher writes the one-byte payload
// descriptor, and on the first packet of a frame the start of the VP8 frame
// header: the 3-byte frame tag, plus for keyframes the start code and the
// dimensions. That is all an SFU looks at to find keyframes.
const (
	vp8DescStart = 0x10 // S bit, PartID 0
	vp8Width     = 640
	vp8Height    = 360
)

// vp8Header returns the payload header for one packet of a frame.
func vp8Header(dst []byte, start, keyframe bool) []byte {
	if !start {
		return append(dst, 0x00)
	}
	return vp8.AppendFrameHeader(append(dst, vp8DescStart), keyframe, vp8Width, vp8Height)
}

// ErrVP8 is returned for a payload that is not a valid VP8 RTP payload.
var ErrVP8 = errors.New("testclient: invalid VP8 payload")

// VP8Info is what ParseVP8 reads from a VP8 RTP payload.
type VP8Info struct {
	// Start is the S bit with PID 0: the packet begins a frame.
	Start bool
	// Keyframe is set on the first packet of a keyframe.
	Keyframe bool
}

// ParseVP8 reads the payload descriptor of a VP8 RTP payload, including
// the optional extension fields an SFU might add, and on the first packet
// of a frame the frame tag.
func ParseVP8(p []byte) (VP8Info, error) {
	if len(p) < 1 {
		return VP8Info{}, fmt.Errorf("%w: empty", ErrVP8)
	}
	n := 1
	if p[0]&0x80 != 0 { // X: extension byte follows
		if len(p) < 2 {
			return VP8Info{}, fmt.Errorf("%w: truncated extension", ErrVP8)
		}
		ext := p[1]
		n = 2
		if ext&0x80 != 0 { // I: picture ID, 7 or 15 bits
			if len(p) <= n {
				return VP8Info{}, fmt.Errorf("%w: truncated picture ID", ErrVP8)
			}
			if p[n]&0x80 != 0 {
				n += 2
			} else {
				n++
			}
		}
		if ext&0x40 != 0 { // L: TL0PICIDX
			n++
		}
		if ext&0x30 != 0 { // T or K: TID/KEYIDX byte
			n++
		}
	}
	if len(p) <= n {
		return VP8Info{}, fmt.Errorf("%w: no payload after %d-byte descriptor", ErrVP8, n)
	}
	info := VP8Info{Start: p[0]&0x10 != 0 && p[0]&0x07 == 0}
	if info.Start && p[n]&0x01 == 0 {
		if len(p) < n+10 || p[n+3] != 0x9d || p[n+4] != 0x01 || p[n+5] != 0x2a {
			return VP8Info{}, fmt.Errorf("%w: keyframe without start code", ErrVP8)
		}
		info.Keyframe = true
	}
	return info, nil
}
