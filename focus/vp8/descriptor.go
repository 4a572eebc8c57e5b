// Package vp8 reads and rewrites the VP8 RTP payload descriptor (RFC 7741)
// and keeps one subscriber's picture IDs, TL0PICIDX and KEYIDX continuous
// when the forwarder switches sources or drops temporal layers.
//
// Only the descriptor is ever rewritten. The bytes after it (the VP8
// payload) are left alone: under end-to-end encryption they are ciphertext,
// apart from the keyframe header that Element Call's E2EE leaves in the
// clear and that KeyframeSize reads.
package vp8

import "errors"

// Errors returned by Unmarshal and MarshalTo.
var (
	ErrShort    = errors.New("vp8: payload descriptor truncated")
	ErrBuffer   = errors.New("vp8: buffer too small for the payload descriptor")
	ErrOverflow = errors.New("vp8: descriptor field out of range")
)

// Bits of the descriptor's first byte and of its extension byte.
const (
	bitX   = 0x80
	bitN   = 0x20
	bitS   = 0x10
	rsv0   = 0x48 // the two R bits of the first byte
	maskPI = 0x07

	bitI   = 0x80
	bitL   = 0x40
	bitT   = 0x20
	bitK   = 0x10
	rsvExt = 0x0f

	bitM = 0x80 // 15-bit picture ID
)

// Descriptor is a parsed VP8 payload descriptor. The unexported fields keep
// the bits this package does not interpret (reserved bits, an extension
// byte with no field, the unused half of the T/K byte), so that MarshalTo
// reproduces a parsed descriptor byte for byte: a forwarder should not clear
// bits that a later revision may give a meaning.
type Descriptor struct {
	Size int // bytes of descriptor (X/I/L/T/K bytes included)

	S   bool  // start of a VP8 partition
	PID uint8 // partition index
	N   bool  // non-reference frame

	HasPictureID  bool
	PictureID     uint16
	LongPictureID bool // M bit: 15-bit picture ID; 7-bit otherwise

	HasTL0PICIDX bool
	TL0PICIDX    uint8

	HasTID bool
	TID    uint8 // temporal layer index, 0..3
	Y      bool  // layer sync: the frame depends only on TL0 frames

	HasKEYIDX bool
	KEYIDX    uint8 // 0..31

	ext    bool  // X bit set (possibly with no field present)
	rsv    uint8 // R bits of the first byte
	rsvExt uint8 // RSV bits of the extension byte
	tkRest uint8 // the T/K byte bits of an absent T or K field
}

// Unmarshal parses the descriptor at the start of payload. It does not
// allocate; it fails with ErrShort when the payload ends inside the
// descriptor or carries no VP8 data after it.
func (d *Descriptor) Unmarshal(payload []byte) error {
	*d = Descriptor{}
	if len(payload) == 0 {
		return ErrShort
	}
	b := payload[0]
	d.ext = b&bitX != 0
	d.N = b&bitN != 0
	d.S = b&bitS != 0
	d.PID = b & maskPI
	d.rsv = b & rsv0
	i := 1
	if d.ext {
		if len(payload) <= i {
			return ErrShort
		}
		x := payload[i]
		i++
		d.rsvExt = x & rsvExt
		if x&bitI != 0 {
			if len(payload) <= i {
				return ErrShort
			}
			d.HasPictureID = true
			if payload[i]&bitM != 0 {
				if len(payload) <= i+1 {
					return ErrShort
				}
				d.LongPictureID = true
				d.PictureID = uint16(payload[i]&0x7f)<<8 | uint16(payload[i+1])
				i += 2
			} else {
				d.PictureID = uint16(payload[i])
				i++
			}
		}
		if x&bitL != 0 {
			if len(payload) <= i {
				return ErrShort
			}
			d.HasTL0PICIDX = true
			d.TL0PICIDX = payload[i]
			i++
		}
		if x&(bitT|bitK) != 0 {
			if len(payload) <= i {
				return ErrShort
			}
			tk := payload[i]
			i++
			if x&bitT != 0 {
				d.HasTID = true
				d.TID = tk >> 6
				d.Y = tk&0x20 != 0
			} else {
				d.tkRest |= tk & 0xe0
			}
			if x&bitK != 0 {
				d.HasKEYIDX = true
				d.KEYIDX = tk & 0x1f
			} else {
				d.tkRest |= tk & 0x1f
			}
		}
	}
	// A descriptor must be followed by at least one byte of VP8 data
	// (RFC 7741, section 4.2); refusing otherwise also means IsKeyframe
	// can always read the frame tag's first byte.
	if len(payload) <= i {
		return ErrShort
	}
	d.Size = i
	return nil
}

// MarshalSize returns the number of bytes MarshalTo writes: the fields
// present, with the picture ID in the width LongPictureID says.
func (d *Descriptor) MarshalSize() int {
	n := 1
	if d.hasExt() {
		n++
		if d.HasPictureID {
			n++
			if d.LongPictureID {
				n++
			}
		}
		if d.HasTL0PICIDX {
			n++
		}
		if d.HasTID || d.HasKEYIDX {
			n++
		}
	}
	return n
}

func (d *Descriptor) hasExt() bool {
	return d.ext || d.HasPictureID || d.HasTL0PICIDX || d.HasTID || d.HasKEYIDX
}

// MarshalTo writes the descriptor at the start of dst, with the same field
// widths as parsed, and returns its size. For a descriptor from Unmarshal
// whose values were changed in place (as Munger.Rewrite does) that size is
// d.Size, so it overwrites the old descriptor exactly. It does not allocate.
func (d *Descriptor) MarshalTo(dst []byte) (int, error) {
	n := d.MarshalSize()
	if len(dst) < n {
		return 0, ErrBuffer
	}
	if d.PID > maskPI || d.HasTID && d.TID > 3 || d.HasKEYIDX && d.KEYIDX > 0x1f ||
		d.HasPictureID && d.PictureID > pictureIDMask(d.LongPictureID) {
		return 0, ErrOverflow
	}
	b := d.PID | d.rsv&rsv0
	if d.N {
		b |= bitN
	}
	if d.S {
		b |= bitS
	}
	if !d.hasExt() {
		dst[0] = b
		return 1, nil
	}
	dst[0] = b | bitX
	x := d.rsvExt & rsvExt
	i := 2
	if d.HasPictureID {
		x |= bitI
		if d.LongPictureID {
			dst[i] = bitM | byte(d.PictureID>>8)
			dst[i+1] = byte(d.PictureID)
			i += 2
		} else {
			dst[i] = byte(d.PictureID)
			i++
		}
	}
	if d.HasTL0PICIDX {
		x |= bitL
		dst[i] = d.TL0PICIDX
		i++
	}
	if d.HasTID || d.HasKEYIDX {
		var tk byte
		if d.HasTID {
			x |= bitT
			tk = d.TID << 6
			if d.Y {
				tk |= 0x20
			}
		} else {
			tk = d.tkRest & 0xe0
		}
		if d.HasKEYIDX {
			x |= bitK
			tk |= d.KEYIDX
		} else {
			tk |= d.tkRest & 0x1f
		}
		dst[i] = tk
		i++
	}
	dst[1] = x
	return i, nil
}

// IsKeyframe reports whether payload, whose descriptor d has been parsed,
// starts a VP8 keyframe: the first packet of partition 0 (S set, PID 0)
// with the frame tag's P bit clear.
func IsKeyframe(payload []byte, d *Descriptor) bool {
	return d.S && d.PID == 0 && d.Size > 0 && len(payload) > d.Size && payload[d.Size]&0x01 == 0
}

// keyframeHeader is the uncompressed header of a VP8 keyframe (RFC 6386,
// section 9.1): a 3-byte frame tag, the start code 9d 01 2a, then 16-bit
// little-endian width and height whose top two bits are a scale.
const keyframeHeader = 10

// KeyframeSize returns the picture size from the header of a keyframe,
// which is in the clear even under Element Call's E2EE (its first 10 bytes
// are not encrypted). ok is false when payload is not the start of a
// keyframe or the header is truncated or malformed.
func KeyframeSize(payload []byte, d *Descriptor) (w, h uint16, ok bool) {
	if !IsKeyframe(payload, d) || len(payload) < d.Size+keyframeHeader {
		return 0, 0, false
	}
	p := payload[d.Size : d.Size+keyframeHeader]
	if p[3] != 0x9d || p[4] != 0x01 || p[5] != 0x2a {
		return 0, 0, false
	}
	w = (uint16(p[6]) | uint16(p[7])<<8) & 0x3fff
	h = (uint16(p[8]) | uint16(p[9])<<8) & 0x3fff
	return w, h, true
}

// AppendFrameHeader appends the start of a VP8 frame, the inverse of what
// IsKeyframe and KeyframeSize read: the frame tag (show_frame set, P
// clear for a keyframe) and, for a keyframe, the start code and the
// picture size. Load generators and tests make synthetic frames with it.
func AppendFrameHeader(dst []byte, keyframe bool, width, height uint16) []byte {
	// Frame tag: bit 0 P (0 = keyframe), bits 1-3 version 0, bit 4
	// show_frame, bits 5-23 the first partition's size (nominal here).
	tag := uint32(1<<4) | uint32(64)<<5
	if !keyframe {
		tag |= 1
	}
	dst = append(dst, byte(tag), byte(tag>>8), byte(tag>>16))
	if keyframe {
		dst = append(dst, 0x9d, 0x01, 0x2a,
			byte(width), byte(width>>8)&0x3f, byte(height), byte(height>>8)&0x3f)
	}
	return dst
}

// pictureIDMask returns the largest picture ID of the width long says.
func pictureIDMask(long bool) uint16 {
	if long {
		return 0x7fff
	}
	return 0x7f
}
