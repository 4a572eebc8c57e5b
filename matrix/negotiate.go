package matrix

import (
	"github.com/pion/webrtc/v4"
	"maunium.net/go/mautrix/event"

	"github.com/focus-sfu/focus/focus"
	"github.com/focus-sfu/focus/rtc"
)

// onTrackSubscription adds and removes the tracks sent to the client,
// then renegotiates.
func (c *call) onTrackSubscription(m *TrackSubscription) {
	changed := false
	for _, u := range m.Unsubscribe {
		ref := trackRef{u.StreamID, u.TrackID}
		if s := c.subs[ref]; s != nil {
			c.removeSubscription(ref, s)
			changed = true
		}
	}
	for _, s := range m.Subscribe {
		ref := trackRef{s.StreamID, s.TrackID}
		if sub := c.subs[ref]; sub != nil {
			// Subscribing again changes the size the client wants.
			sub.down.SetMaxSize(uint32(s.Width), uint32(s.Height))
			continue
		}
		up := c.findTrack(ref)
		if up == nil {
			c.log.Info().Str("stream", s.StreamID).Str("track", s.TrackID).Msg("subscription to a track that is not published")
			continue
		}
		down, err := c.part.Subscribe(up)
		if err != nil {
			c.log.Warn().Err(err).Msg("subscribe")
			continue
		}
		local := rtc.NewLocalTrack(down, s.TrackID, s.StreamID, c.pc, c.log)
		tr, err := c.pc.AddTransceiverFromTrack(local, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
		if err != nil {
			c.log.Warn().Err(err).Msg("add subscribed track")
			down.Close()
			continue
		}
		// The size the client shows the track at caps its layer: the
		// smallest at least that large will do. None means no cap.
		down.SetMaxSize(uint32(s.Width), uint32(s.Height))
		c.subs[ref] = &subscription{down: down, local: local, sender: tr.Sender()}
		c.mu.Lock()
		c.locals = append(c.locals, local)
		c.mu.Unlock()
		changed = true
	}
	if changed {
		c.negotiate()
	}
}

func (c *call) findTrack(ref trackRef) *focus.UpTrack {
	for _, t := range c.part.Conference().Tracks() {
		if t.Owner() != c.part && t.Info().StreamID == ref.stream && string(t.ID()) == ref.track {
			return t
		}
	}
	return nil
}

func (c *call) removeSubscription(ref trackRef, s *subscription) {
	if err := c.pc.RemoveTrack(s.sender); err != nil {
		c.log.Debug().Err(err).Msg("remove track")
	}
	s.down.Close()
	delete(c.subs, ref)
}

// dropSubscriptionsTo ends the subscriptions to a track that was
// unpublished.
func (c *call) dropSubscriptionsTo(gone *focus.UpTrack) {
	changed := false
	for ref, s := range c.subs {
		if c.findTrack(ref) == nil || s.down.Source() == nil && ref.track == string(gone.ID()) {
			c.removeSubscription(ref, s)
			changed = true
		}
	}
	if changed {
		c.negotiate()
	}
}

// negotiate sends the focus's offer over the data channel. The focus is
// the impolite peer: it never rolls back, so while one of its offers is
// out, further changes wait and go in the next offer.
func (c *call) negotiate() {
	if c.dc == nil || c.makingOffer || c.pc.SignalingState() != webrtc.SignalingStateStable {
		c.wantOffer = true
		return
	}
	c.wantOffer = false
	offer, err := c.pc.CreateOffer(nil)
	if err != nil {
		c.log.Warn().Err(err).Msg("create offer")
		return
	}
	if err := c.pc.SetLocalDescription(offer); err != nil {
		c.log.Warn().Err(err).Msg("apply own offer")
		return
	}
	c.makingOffer = true
	c.sendDC(&Negotiate{
		Description: SessionDescription{Type: event.CallDataTypeOffer, SDP: c.pc.LocalDescription().SDP},
		Metadata:    c.available(),
	})
}

// onNegotiate applies the client's offer or its answer to ours.
func (c *call) onNegotiate(m *Negotiate) {
	switch m.Description.Type {
	case event.CallDataTypeAnswer:
		if !c.makingOffer {
			c.log.Info().Msg("an answer to no offer; ignored")
			return
		}
		if err := c.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: m.Description.SDP}); err != nil {
			c.log.Warn().Err(err).Msg("client's answer rejected")
		}
		c.makingOffer = false
		if m.Metadata != nil {
			c.setClientMeta(m.Metadata)
		}
		if c.wantOffer {
			c.negotiate()
		}
	case event.CallDataTypeOffer:
		if c.makingOffer {
			// Glare: the focus keeps its offer; the client rolls back
			// and offers again once it has answered ours.
			c.log.Info().Msg("offer collision; keeping the focus's offer")
			return
		}
		if err := c.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: rtc.WithoutSimulcastRTX(m.Description.SDP)}); err != nil {
			c.log.Warn().Err(err).Msg("client's offer rejected")
			return
		}
		answer, err := c.pc.CreateAnswer(nil)
		if err == nil {
			err = c.pc.SetLocalDescription(answer)
		}
		if err != nil {
			c.log.Warn().Err(err).Msg("answer the client's offer")
			return
		}
		if m.Metadata != nil {
			c.setClientMeta(m.Metadata)
		}
		c.sendDC(&Negotiate{
			Description: SessionDescription{Type: event.CallDataTypeAnswer, SDP: c.pc.LocalDescription().SDP},
			Metadata:    c.available(),
		})
		if c.wantOffer {
			c.negotiate()
		}
	}
}
