package matrix

import (
	"slices"

	"github.com/pion/webrtc/v4"

	"github.com/focus-sfu/focus/focus"
	"github.com/focus-sfu/focus/metadata"
)

// What the core decides about media quality, told to the client over the
// data channel: who speaks (active_speakers), a subscription held back
// for bandwidth (subscription_state), and which layers of its own tracks
// anyone needs (publish_layers). The other way, the client's stream
// metadata mutes its tracks in the core, and a subscription's size caps
// the layer it gets (negotiate.go). Functions on *call run on the call's
// goroutine unless they say otherwise.

// dcOpen reports whether messages to the client can go out now. What
// could not is sent when the channel opens (onDataChannel).
func (c *call) dcOpen() bool {
	return c.dc != nil && c.dc.ReadyState() == webrtc.DataChannelStateOpen
}

// speakerList names the conference's speakers as the client knows their
// tracks: the client itself by its own IDs, the members of other Matrix
// calls by the IDs the focus announced. Participants of other front-ends
// in a shared conference are not announced to Matrix clients, so they
// are left out; so is a participant's second track.
func (c *call) speakerList(list []focus.Speaker) []ActiveSpeaker {
	out := []ActiveSpeaker{}
	seen := make(map[*focus.Participant]bool, len(list))
	for _, sp := range list {
		if sp.Track == nil || seen[sp.Participant] {
			continue
		}
		s := ActiveSpeaker{Level: min(max(sp.Level, 0), 1)}
		if sp.Participant == c.part {
			c.mu.Lock()
			own, ok := c.published[sp.Track]
			c.mu.Unlock()
			if !ok {
				continue
			}
			s.UserID, s.DeviceID, s.StreamID, s.TrackID = c.user, c.device, own.stream, own.track
		} else {
			owner := c.f.callOf(sp.Participant)
			if owner == nil {
				continue
			}
			info := sp.Track.Info()
			s.UserID, s.DeviceID, s.StreamID, s.TrackID = owner.user, owner.device, info.StreamID, string(info.ID)
		}
		seen[sp.Participant] = true
		out = append(out, s)
	}
	return out
}

// sendSpeakers tells the client who speaks now, unless it was told so
// already.
func (c *call) sendSpeakers(list []focus.Speaker) {
	if !c.dcOpen() {
		return
	}
	speakers := c.speakerList(list)
	if slices.Equal(speakers, c.speakers) {
		return
	}
	c.speakers = speakers
	c.sendDC(&ActiveSpeakers{Speakers: speakers})
}

// subscriptionPaused tells the client that the core paused or resumed
// one of its subscriptions for bandwidth.
func (c *call) subscriptionPaused(down *focus.DownTrack) {
	for ref, s := range c.subs {
		if s.down != down {
			continue
		}
		paused := down.PausedForBandwidth()
		if paused == s.paused || !c.dcOpen() {
			return
		}
		s.paused = paused
		c.log.Debug().Str("stream", ref.stream).Str("track", ref.track).Bool("paused", paused).Msg("subscription paused for bandwidth")
		c.sendDC(&SubscriptionState{StreamID: ref.stream, TrackID: ref.track, Paused: paused})
		return
	}
}

// demandChanged records which layers of one of the client's tracks
// anyone needs, and tells the client.
func (c *call) demandChanged(up *focus.UpTrack, wanted []bool) {
	if up.Kind() != focus.KindVideo {
		return // a client keeps sending its audio, for the speaker ranking
	}
	if up.Closed() {
		delete(c.demand, up)
		return
	}
	c.demand[up] = wanted
	c.sendDemand(up, wanted)
}

// resendDemand tells the client the demand for its tracks that changed
// before its data channel opened.
func (c *call) resendDemand() {
	for up, wanted := range c.demand {
		if up.Closed() {
			delete(c.demand, up)
			continue
		}
		c.sendDemand(up, wanted)
	}
}

func (c *call) sendDemand(up *focus.UpTrack, wanted []bool) {
	c.mu.Lock()
	own, ok := c.published[up]
	c.mu.Unlock()
	if !ok {
		return
	}
	c.sendDC(&PublishLayers{StreamID: own.stream, TrackID: own.track, Layers: publishLayers(up.Info().Layers, wanted)})
}

// publishLayers pairs the core's demand for each layer of a track with
// the layer's RID (none for a track of one encoding).
func publishLayers(rids []string, wanted []bool) []PublishLayer {
	out := make([]PublishLayer, len(wanted))
	for i, w := range wanted {
		out[i].Active = w
		if i < len(rids) {
			out[i].RID = rids[i]
		}
	}
	return out
}

// trackMuted reports whether the client's metadata says its track (with
// its own IDs own and MID mid) of kind is muted.
func trackMuted(meta metadata.Metadata, own trackRef, mid string, kind focus.Kind) bool {
	_, s, ok := meta.Resolve(own.stream, own.track, mid)
	if !ok {
		return false
	}
	if kind == focus.KindAudio {
		return s.AudioMuted
	}
	return s.VideoMuted
}

// applyMutesLocked tells the core which of the client's tracks its
// metadata mutes: a muted track's silence is not a stall, so its
// subscribers keep their layers for when it comes back. c.mu is held.
func (c *call) applyMutesLocked() {
	for up, own := range c.published {
		up.SetMuted(trackMuted(c.clientMeta, own, c.mids[up], up.Kind()))
	}
}
