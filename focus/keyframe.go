package focus

import (
	"strings"

	"github.com/focus-sfu/focus/focus/vp8"
)

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

// isVP8Keyframe reads the VP8 payload descriptor (RFC 7741 §4.2) and
// the inverse key frame flag of the payload header after it.
func isVP8Keyframe(p []byte) bool {
	var d vp8.Descriptor
	return d.Unmarshal(p) == nil && vp8.IsKeyframe(p, &d)
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
