package cascade

import (
	"strconv"
	"strings"

	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
	"github.com/rs/zerolog"

	"github.com/focus-sfu/focus/focus"
	"github.com/focus-sfu/focus/rtc"
)

// trunkExtensions returns the header extensions, with their IDs, that a
// proxy track of kind is published with. A proxy track is published
// before anything is negotiated, and the core maps extensions by the
// publisher's IDs, so the IDs are learnt once from an offer this focus's
// engine makes; a trunk track whose exporter numbered them otherwise is
// renumbered as it arrives (extRemap).
func (c *Cascade) trunkExtensions(kind focus.Kind) []focus.HeaderExtension {
	c.extOnce.Do(func() { c.exts = probeExtensions(c.opts.Engine, c.log) })
	return c.exts[kind]
}

// probeExtensions makes an offer with one sending section of each kind
// on a PeerConnection that is never connected, and reads its extmap.
func probeExtensions(e *rtc.Engine, log zerolog.Logger) map[focus.Kind][]focus.HeaderExtension {
	out := map[focus.Kind][]focus.HeaderExtension{}
	pc, err := e.NewPeerConnection()
	if err != nil {
		log.Warn().Err(err).Msg("learn the trunk's header extensions; proxy tracks forward none")
		return out
	}
	defer func() { _ = pc.Close() }()
	for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio, webrtc.RTPCodecTypeVideo} {
		if _, err := pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
			log.Warn().Err(err).Msg("learn the trunk's header extensions; proxy tracks forward none")
			return out
		}
	}
	offer, err := pc.CreateOffer(nil)
	if err == nil {
		out, err = extmap(offer.SDP)
	}
	if err != nil {
		log.Warn().Err(err).Msg("learn the trunk's header extensions; proxy tracks forward none")
	}
	return out
}

// extmap reads the header extensions of each kind from an SDP.
func extmap(desc string) (map[focus.Kind][]focus.HeaderExtension, error) {
	var s sdp.SessionDescription
	if err := s.UnmarshalString(desc); err != nil {
		return nil, err
	}
	out := map[focus.Kind][]focus.HeaderExtension{}
	for _, m := range s.MediaDescriptions {
		kind := rtc.Kind(webrtc.NewRTPCodecType(m.MediaName.Media))
		if kind == 0 || out[kind] != nil {
			continue
		}
		exts := []focus.HeaderExtension{}
		for _, a := range m.Attributes {
			if a.Key != sdp.AttrKeyExtMap {
				continue
			}
			// "<id>[/<direction>] <uri> [<attributes>]"
			f := strings.Fields(a.Value)
			if len(f) < 2 {
				continue
			}
			idText, _, _ := strings.Cut(f[0], "/")
			id, err := strconv.ParseUint(idText, 10, 8)
			if err != nil || id == 0 {
				continue
			}
			exts = append(exts, focus.HeaderExtension{ID: uint8(id), URI: f[1]})
		}
		out[kind] = exts
	}
	return out, nil
}
