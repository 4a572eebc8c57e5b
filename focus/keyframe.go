package focus

import "strings"

// keyframeFunc reports whether an RTP payload starts a frame a decoder
// can begin at. Only the payload descriptor is read: with end-to-end
// encryption the encoded frame behind it is opaque.
type keyframeFunc func(payload []byte) bool

func keyframeDetector(kind Kind, mime string) keyframeFunc {
	if kind == KindAudio {
		return func([]byte) bool { return true }
	}
	switch strings.ToLower(mime) {
	case "video/vp8":
		return isVP8Keyframe
	case "video/vp9":
		return isVP9Keyframe
	case "video/h264":
		return isH264Keyframe
	case "video/av1":
		return isAV1Keyframe
	}
	// An unknown codec cannot be gated; forward from the first packet.
	return func([]byte) bool { return true }
}

// isVP8Keyframe parses the VP8 payload descriptor (RFC 7741 §4.2) and
// the first byte of the VP8 payload header (inverse key frame flag).
func isVP8Keyframe(p []byte) bool {
	if len(p) < 1 {
		return false
	}
	b0 := p[0]
	if b0&0x10 == 0 || b0&0x07 != 0 { // S bit, partition 0
		return false
	}
	i := 1
	if b0&0x80 != 0 { // X
		if len(p) < 2 {
			return false
		}
		x := p[1]
		i = 2
		if x&0x80 != 0 { // I: picture ID
			if len(p) <= i {
				return false
			}
			if p[i]&0x80 != 0 { // M: 15-bit picture ID
				i += 2
			} else {
				i++
			}
		}
		if x&0x40 != 0 { // L: TL0PICIDX
			i++
		}
		if x&0x30 != 0 { // T or K
			i++
		}
	}
	if len(p) <= i {
		return false
	}
	return p[i]&0x01 == 0
}

// isVP9Keyframe reads the VP9 payload descriptor: a frame that starts
// here (B) and is not inter-picture predicted (P clear).
func isVP9Keyframe(p []byte) bool {
	if len(p) < 1 {
		return false
	}
	return p[0]&0x40 == 0 && p[0]&0x08 != 0
}

// isH264Keyframe looks for an IDR slice or an SPS, alone, in a STAP-A, or
// at the start of a FU-A.
func isH264Keyframe(p []byte) bool {
	if len(p) < 1 {
		return false
	}
	switch nal := p[0] & 0x1f; nal {
	case 5, 7:
		return true
	case 24: // STAP-A
		for i := 1; i+2 < len(p); {
			size := int(p[i])<<8 | int(p[i+1])
			i += 2
			if size == 0 || i+size > len(p) {
				return false
			}
			if t := p[i] & 0x1f; t == 5 || t == 7 {
				return true
			}
			i += size
		}
	case 28: // FU-A
		if len(p) < 2 {
			return false
		}
		return p[1]&0x80 != 0 && (p[1]&0x1f == 5 || p[1]&0x1f == 7)
	}
	return false
}

// isAV1Keyframe reads the AV1 aggregation header: N marks the first
// packet of a new coded video sequence.
func isAV1Keyframe(p []byte) bool {
	return len(p) >= 1 && p[0]&0x08 != 0
}
