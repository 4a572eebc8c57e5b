package focus

import "github.com/pion/rtp"

// Header extensions that describe the publisher's connection, not the
// media: the subscriber's connection writes its own or has none.
var connectionExtensions = map[string]bool{
	"urn:ietf:params:rtp-hdrext:sdes:mid":                                       true,
	"urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id":                             true,
	"urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id":                    true,
	"http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01": true,
	"http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time":                true,
}

const maxExtensions = 16

// audioLevelURI is the RFC 6464 audio level extension, which the core
// reads for speaker detection (and forwards).
const audioLevelURI = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"

// extMap maps a publisher's extension IDs to a subscriber's. It is a
// fixed-size value so that rebuilding it at a source switch allocates
// nothing.
type extMap struct {
	n       int
	up      [maxExtensions]uint8
	down    [maxExtensions]uint8
	twoByte bool
}

func buildExtMap(up, down []HeaderExtension) extMap {
	var m extMap
	for _, u := range up {
		if connectionExtensions[u.URI] || m.n == maxExtensions {
			continue
		}
		for _, d := range down {
			if d.URI == u.URI {
				m.up[m.n], m.down[m.n] = u.ID, d.ID
				m.n++
				if d.ID > 14 {
					m.twoByte = true
				}
				break
			}
		}
	}
	return m
}

// apply copies the mapped extensions of in into out, which must have
// had its extensions cleared, and returns the size in bytes of the
// extension block out's header now has (what rtp.Header.MarshalSize
// adds for it, at a fraction of the cost).
func (m *extMap) apply(in, out *rtp.Header) int {
	if !in.Extension {
		return 0
	}
	size := 0
	for i := 0; i < m.n; i++ {
		p := in.GetExtension(m.up[i])
		if p == nil {
			continue
		}
		if !out.Extension {
			out.Extension = true
			out.ExtensionProfile = rtp.ExtensionProfileOneByte
			if m.twoByte || in.ExtensionProfile == rtp.ExtensionProfileTwoByte {
				out.ExtensionProfile = rtp.ExtensionProfileTwoByte
			}
		}
		// A payload the profile cannot carry is dropped.
		if out.SetExtension(m.down[i], p) == nil {
			size += 1 + len(p)
			if out.ExtensionProfile == rtp.ExtensionProfileTwoByte {
				size++
			}
		}
	}
	if !out.Extension {
		return 0
	}
	return (4 + size + 3) / 4 * 4 // the block header, padded to 32 bits
}
