package rtc

import (
	"errors"
	"fmt"
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
