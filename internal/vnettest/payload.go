package vnettest

import (
	"encoding/binary"
	"errors"

	"github.com/focus-sfu/focus/focus/vp8"
)

// The synthetic VP8 of a simulcast publisher: no encoder, but what an SFU
// reads is real. Each packet has an RFC 7741 payload descriptor with a
// 15-bit picture ID; the first packet of a frame starts with the VP8
// frame tag, and a keyframe's with the start code and its frame size
// (RFC 6386 §9.1). The payload ends in a trailer that says where the
// packet came from:
//
//	magic[4] | layer uint8 | counter uint32 | frame uint32
//
// counter numbers the packets of one layer from 0, frame its frames. The
// trailer sits at the end so that a receiver finds it whatever the SFU
// did to the descriptor in front.
const (
	trailerSize  = 13
	trailerMagic = "VnS1"
	// descriptorSize is X|S, then I, then the two bytes of a 15-bit
	// picture ID.
	descriptorSize = 4
	// keyframeHeaderSize is the frame tag, start code, width and height.
	keyframeHeaderSize = 10
	frameTagSize       = 3
)

// ErrNoTrailer is returned by ParseTrailer for a payload that did not
// come from a simulcast Publisher.
var ErrNoTrailer = errors.New("vnettest: payload has no publisher trailer")

// Trailer is what a synthetic payload says about itself.
type Trailer struct {
	Layer   int
	Counter uint32
	Frame   uint32
}

// appendVP8 appends one packet's payload of size bytes (raised to fit
// the headers and trailer): the descriptor with pictureID, the frame
// header on a frame's first packet (start), filler and the trailer.
func appendVP8(buf []byte, start, keyframe bool, pictureID uint16, width, height, size int, t Trailer) []byte {
	begin := len(buf)
	first := byte(0x80) // X: the extension byte follows
	if start {
		first |= 0x10 // S, partition 0
	}
	buf = append(buf, first, 0x80, 0x80|byte(pictureID>>8&0x7f), byte(pictureID))
	if start {
		buf = vp8.AppendFrameHeader(buf, keyframe, uint16(width), uint16(height))
	}
	for i := len(buf) - begin; i < size-trailerSize; i++ {
		buf = append(buf, byte(t.Counter)+byte(i))
	}
	buf = append(buf, trailerMagic...)
	buf = append(buf, byte(t.Layer))
	buf = binary.BigEndian.AppendUint32(buf, t.Counter)
	return binary.BigEndian.AppendUint32(buf, t.Frame)
}

// ParseTrailer reads the trailer of a synthetic payload.
func ParseTrailer(payload []byte) (Trailer, error) {
	if len(payload) < trailerSize {
		return Trailer{}, ErrNoTrailer
	}
	p := payload[len(payload)-trailerSize:]
	if string(p[:4]) != trailerMagic {
		return Trailer{}, ErrNoTrailer
	}
	return Trailer{
		Layer:   int(p[4]),
		Counter: binary.BigEndian.Uint32(p[5:]),
		Frame:   binary.BigEndian.Uint32(p[9:]),
	}, nil
}
