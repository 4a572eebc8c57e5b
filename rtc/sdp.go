package rtc

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/pion/sdp/v3"
)

// Errors from CheckOffer. Front-ends map them to statuses.
var (
	ErrEmptyOffer        = errors.New("empty offer")
	ErrBadSDP            = errors.New("malformed SDP")
	ErrNoMedia           = errors.New("offer has no audio or video section")
	ErrUnsupportedCodecs = errors.New("offer has no codec the focus supports")
	ErrWrongDirection    = errors.New("offer has no section in the required direction")
)

// Direction is what an offer's media sections must allow.
type Direction int

// Directions an offer is checked for.
const (
	// PeerSends: the remote peer sends media (a publisher).
	PeerSends Direction = iota + 1
	// PeerReceives: the remote peer receives media (a viewer).
	PeerReceives
)

// CheckOffer parses an SDP offer and checks that it has at least one
// audio or video section in direction dir with a codec the focus
// forwards. It returns how many such sections there are; the error wraps
// one of the Err values above.
func CheckOffer(offer string, dir Direction) (int, error) {
	if strings.TrimSpace(offer) == "" {
		return 0, ErrEmptyOffer
	}
	var s sdp.SessionDescription
	if err := s.UnmarshalString(offer); err != nil {
		return 0, fmt.Errorf("%w: %v", ErrBadSDP, err)
	}
	media, directed, supported := 0, 0, 0
	for _, m := range s.MediaDescriptions {
		kind := m.MediaName.Media
		if kind != "audio" && kind != "video" {
			continue
		}
		if m.MediaName.Port.Value == 0 {
			continue // rejected section
		}
		media++
		if !allows(m, dir) {
			continue
		}
		directed++
		if hasSupportedCodec(m) {
			supported++
		}
	}
	switch {
	case media == 0:
		return 0, ErrNoMedia
	case directed == 0:
		return 0, ErrWrongDirection
	case supported == 0:
		return 0, ErrUnsupportedCodecs
	}
	return supported, nil
}

func allows(m *sdp.MediaDescription, dir Direction) bool {
	d := "sendrecv"
	for _, a := range m.Attributes {
		switch a.Key {
		case "sendrecv", "sendonly", "recvonly", "inactive":
			d = a.Key
		}
	}
	switch dir {
	case PeerSends:
		return d == "sendrecv" || d == "sendonly"
	case PeerReceives:
		return d == "sendrecv" || d == "recvonly"
	}
	return false
}

func hasSupportedCodec(m *sdp.MediaDescription) bool {
	for _, mime := range sectionCodecs(m) {
		for _, c := range Codecs {
			if strings.EqualFold(mime, c.MimeType) {
				return true
			}
		}
	}
	return false
}

// sectionCodecs returns the lower-case MIME types of a section's rtpmap
// lines ("a=rtpmap:96 VP8/90000" in a video section is "video/vp8").
func sectionCodecs(m *sdp.MediaDescription) []string {
	var out []string
	for _, a := range m.Attributes {
		if a.Key != "rtpmap" {
			continue
		}
		if _, enc, ok := strings.Cut(a.Value, " "); ok {
			name, _, _ := strings.Cut(enc, "/")
			out = append(out, strings.ToLower(m.MediaName.Media+"/"+name))
		}
	}
	return out
}

// OfferedCodecs returns the lower-case MIME types ("video/vp8") offered
// in any audio or video section. A malformed offer yields none.
func OfferedCodecs(offer string) map[string]bool {
	out := map[string]bool{}
	var s sdp.SessionDescription
	if err := s.UnmarshalString(offer); err != nil {
		return out
	}
	for _, m := range s.MediaDescriptions {
		for _, mime := range sectionCodecs(m) {
			out[mime] = true
		}
	}
	return out
}

// WithoutSimulcastRTX removes the RTX codec from the media sections of a
// remote offer that send simulcast. pion v4.2.20 pairs a simulcast
// publisher's retransmission stream with its layer by RID; a publisher
// whose RTX packets carry the RID extension (pion-based ones do) makes
// pion replace the layer's media stream with the RTX stream while the
// layer is being read: a data race inside pion, the layer's packets
// corrupted (the original sequence number in front), then the layer
// stopped. Without RTX such a publisher retransmits on the media stream,
// which the focus reads like any packet. Sections without simulcast keep
// RTX, paired by SSRC, which works.
func WithoutSimulcastRTX(offer string) string {
	if !strings.Contains(offer, "a=simulcast:") {
		return offer
	}
	eol := "\r\n"
	if !strings.Contains(offer, eol) {
		eol = "\n"
	}
	lines := strings.Split(offer, eol)
	var out []string
	for start := 0; start < len(lines); {
		end := start + 1
		for end < len(lines) && !strings.HasPrefix(lines[end], "m=") {
			end++
		}
		out = append(out, stripRTX(lines[start:end])...)
		start = end
	}
	return strings.Join(out, eol)
}

// stripRTX returns one SDP section without its RTX payload types, when
// it is a media section that sends simulcast.
func stripRTX(section []string) []string {
	simulcast := func(l string) bool { return strings.HasPrefix(l, "a=simulcast:") }
	if !strings.HasPrefix(section[0], "m=") || !slices.ContainsFunc(section, simulcast) {
		return section
	}
	rtx := map[string]bool{}
	for _, l := range section {
		if pt, codec, ok := strings.Cut(strings.TrimPrefix(l, "a=rtpmap:"), " "); ok && strings.HasPrefix(l, "a=rtpmap:") &&
			strings.HasPrefix(strings.ToLower(codec), "rtx/") {
			rtx[pt] = true
		}
	}
	if len(rtx) == 0 {
		return section
	}
	out := make([]string, 0, len(section))
	for i, l := range section {
		if i == 0 {
			// m=<media> <port> <proto> <fmt>...
			f := strings.Fields(l)
			kept := f[:min(3, len(f))]
			for _, pt := range f[min(3, len(f)):] {
				if !rtx[pt] {
					kept = append(kept, pt)
				}
			}
			out = append(out, strings.Join(kept, " "))
			continue
		}
		if strings.HasPrefix(l, "a=ssrc-group:FID") || rtx[attributePT(l)] {
			continue
		}
		out = append(out, l)
	}
	return out
}

// attributePT returns the payload type an rtpmap, fmtp or rtcp-fb line
// is about, or "".
func attributePT(l string) string {
	for _, p := range []string{"a=rtpmap:", "a=fmtp:", "a=rtcp-fb:"} {
		if rest, ok := strings.CutPrefix(l, p); ok {
			pt, _, _ := strings.Cut(rest, " ")
			return pt
		}
	}
	return ""
}
