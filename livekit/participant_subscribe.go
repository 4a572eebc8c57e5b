package livekit

import (
	"github.com/livekit/protocol/livekit"
	"github.com/pion/webrtc/v4"
	"google.golang.org/protobuf/proto"

	"github.com/focus-sfu/focus/focus"
	"github.com/focus-sfu/focus/rtc"
)

// The subscribing side: the focus adds the tracks a participant receives
// to its subscriber connection and offers; the client answers. Every
// function here runs on the participant's goroutine.

// subscription is one track the participant receives.
type subscription struct {
	up     *focus.UpTrack
	down   *focus.DownTrack
	sender *webrtc.RTPSender
	// paused is the stream state the client was last told: the core
	// holds the track back for lack of bandwidth.
	paused bool
}

// wants reports whether the participant should receive track sid: its
// explicit choice, or else auto_subscribe.
func (p *participant) wants(sid string) bool {
	if v, ok := p.desired[sid]; ok {
		return v
	}
	return p.params.autoSubscribe
}

// subscribeExisting subscribes to the tracks already in the room.
func (p *participant) subscribeExisting() {
	for _, up := range p.part.Conference().Tracks() {
		if p.wants(trackSID(up)) {
			p.subscribe(up)
		}
	}
}

// trackAdded follows a track published in the room.
func (p *participant) trackAdded(up *focus.UpTrack) {
	if p.isClosed() || !p.canSubscribe() || !p.wants(trackSID(up)) {
		return
	}
	if p.subscribe(up) {
		p.negotiate(false)
	}
}

// trackGone follows a track unpublished in the room.
func (p *participant) trackGone(up *focus.UpTrack) {
	sid := trackSID(up)
	if s := p.subs[sid]; s != nil && s.up == up {
		p.unsubscribe(sid)
		p.negotiate(false)
	}
}

// findTrack returns another participant's track sid in the room.
func (p *participant) findTrack(sid string) *focus.UpTrack {
	for _, up := range p.part.Conference().Tracks() {
		if trackSID(up) == sid && up.Owner() != p.part {
			return up
		}
	}
	return nil
}

// subscribe adds up to the subscriber connection; it reports whether it
// did. The forwarded track's stream ID is "PA_sid|TR_sid" and its track
// ID the track sid: clients find the publication from them. The owner
// is a member of the room or a foreign participant; a LiveKit session
// of another room sharing the conference is not shown, nor are its
// tracks.
func (p *participant) subscribe(up *focus.UpTrack) bool {
	sid := trackSID(up)
	owner := up.Owner()
	if p.subs[sid] != nil || owner == p.part || up.Closed() || !p.canSubscribe() || p.isClosed() || !p.s.visible(p.room, owner) {
		return false
	}
	down, err := p.part.Subscribe(up)
	if err != nil {
		p.log.Info().Err(err).Str("track", sid).Msg("subscribe")
		return false
	}
	local := rtc.NewLocalTrack(down, sid, participantSID(owner)+"|"+sid, p.sub, p.log)
	// AddTrack reuses a transceiver a removed track left idle, so the
	// description does not grow with every track that comes and goes.
	sender, err := p.sub.AddTrack(local)
	if err != nil {
		p.log.Warn().Err(err).Str("track", sid).Msg("add a subscribed track")
		down.Close()
		return false
	}
	p.subs[sid] = &subscription{up: up, down: down, sender: sender}
	p.mu.Lock()
	p.locals = append(p.locals, local)
	p.mu.Unlock()
	p.applySetting(sid)
	p.log.Debug().Str("track", sid).Str("publisher", string(owner.ID())).Msg("subscribed")
	if pub := p.s.member(p.room, string(owner.ID())); pub != nil {
		pub.trackSubscribed(sid)
	}
	return true
}

// unsubscribe removes track sid from the subscriber connection.
func (p *participant) unsubscribe(sid string) {
	s := p.subs[sid]
	if s == nil {
		return
	}
	delete(p.subs, sid)
	if err := p.sub.RemoveTrack(s.sender); err != nil {
		p.log.Debug().Err(err).Str("track", sid).Msg("remove a subscribed track")
	}
	s.down.Close()
	p.log.Debug().Str("track", sid).Msg("unsubscribed")
}

// onSubscription applies the client's explicit subscribe and unsubscribe
// requests. A track that does not exist gets a subscription_response
// saying so.
func (p *participant) onSubscription(m *livekit.UpdateSubscription) {
	if m == nil {
		return
	}
	sids := append([]string(nil), m.GetTrackSids()...)
	for _, pt := range m.GetParticipantTracks() {
		sids = append(sids, pt.GetTrackSids()...)
	}
	if len(sids) > maxDesired {
		sids = sids[:maxDesired]
	}
	changed := false
	for _, sid := range sids {
		if _, ok := p.desired[sid]; ok || len(p.desired) < maxDesired {
			p.desired[sid] = m.GetSubscribe()
		}
		if !m.GetSubscribe() {
			if p.subs[sid] != nil {
				p.unsubscribe(sid)
				changed = true
			}
			continue
		}
		if !p.canSubscribe() {
			p.send(subscriptionError(sid, livekit.SubscriptionError_SE_UNKNOWN))
			continue
		}
		up := p.findTrack(sid)
		if up == nil {
			p.log.Info().Str("track", sid).Msg("subscription to a track that does not exist")
			p.send(subscriptionError(sid, livekit.SubscriptionError_SE_TRACK_NOTFOUND))
			continue
		}
		if p.subscribe(up) {
			changed = true
		}
	}
	if changed {
		p.negotiate(false)
	}
}

func subscriptionError(sid string, err livekit.SubscriptionError) *livekit.SignalResponse {
	return &livekit.SignalResponse{Message: &livekit.SignalResponse_SubscriptionResponse{SubscriptionResponse: &livekit.SubscriptionResponse{
		TrackSid: sid,
		Err:      err,
	}}}
}

// onTrackSetting applies what the client wants of tracks it receives:
// enabled or not, and the size it shows them at or the quality it asks
// for, which cap the simulcast layer. Settings of tracks not (yet)
// subscribed are kept for when they are.
func (p *participant) onTrackSetting(m *livekit.UpdateTrackSettings) {
	for _, sid := range m.GetTrackSids() {
		if _, ok := p.settings[sid]; !ok && len(p.settings) >= maxSettings {
			continue
		}
		st := proto.CloneOf(m)
		st.TrackSids = []string{sid}
		p.settings[sid] = st
		p.applySetting(sid)
	}
}

// applySetting applies the client's setting of track sid to its
// subscription. A size caps the layer by the layers' sizes (the core
// knows them from the publisher's add_track and from keyframes); a
// quality caps it by name. Each clears the other cap, so the latest
// setting alone decides. Within the cap, the core picks the layer the
// subscriber's bandwidth allows.
func (p *participant) applySetting(sid string) {
	s, st := p.subs[sid], p.settings[sid]
	if s == nil || st == nil {
		return
	}
	s.down.SetPaused(st.GetDisabled())
	rids := s.up.Info().Layers
	if s.up.Kind() != focus.KindVideo || len(rids) <= 1 {
		return
	}
	if w, h := st.GetWidth(), st.GetHeight(); w > 0 || h > 0 {
		s.down.SetMaxLayer(len(rids) - 1)
		s.down.SetMaxSize(w, h)
		p.log.Debug().Str("track", sid).Uint32("width", w).Uint32("height", h).Msg("layer capped by size")
		return
	}
	var info *livekit.TrackInfo
	if pub := p.s.member(p.room, string(s.up.Owner().ID())); pub != nil {
		info = pub.trackInfo(sid)
	}
	i := chooseLayer(info, rids, st.GetQuality())
	s.down.SetMaxSize(0, 0)
	s.down.SetMaxLayer(i)
	p.log.Debug().Str("track", sid).Str("rid", rids[i]).Str("quality", st.GetQuality().String()).Msg("layer capped by quality")
}

// chooseLayer picks the layer of a simulcast track (whose layers have
// the RIDs rids, and info describes; info may be nil) that quality q
// names. OFF, which clients never ask for with a size absent, means the
// top layer.
func chooseLayer(info *livekit.TrackInfo, rids []string, q livekit.VideoQuality) int {
	if q == livekit.VideoQuality_OFF {
		q = livekit.VideoQuality_HIGH
	}
	rid := map[livekit.VideoQuality]string{livekit.VideoQuality_LOW: "q", livekit.VideoQuality_MEDIUM: "h", livekit.VideoQuality_HIGH: "f"}[q]
	for _, l := range info.GetLayers() {
		if l.GetQuality() == q && l.GetRid() != "" {
			rid = l.GetRid()
		}
	}
	for i, r := range rids {
		if r == rid {
			return i
		}
	}
	switch q {
	case livekit.VideoQuality_LOW:
		return 0
	case livekit.VideoQuality_MEDIUM:
		return min(1, len(rids)-1)
	}
	return len(rids) - 1
}

// streamStateChanged tells the client that the core stopped forwarding
// one of its tracks for lack of bandwidth, or resumed it
// (stream_state_update; clients show the track as paused).
func (p *participant) streamStateChanged(up *focus.UpTrack, down *focus.DownTrack) {
	s := p.subs[trackSID(up)]
	if s == nil || s.down != down {
		return
	}
	paused := down.PausedForBandwidth()
	if paused == s.paused {
		return
	}
	s.paused = paused
	p.log.Debug().Str("track", trackSID(up)).Bool("paused", paused).Msg("stream state changed")
	p.send(streamStates(streamState(s, paused)))
}

// resendStreamStates tells a resumed client the state of every track it
// receives: updates sent while it was away went nowhere.
func (p *participant) resendStreamStates() {
	var states []*livekit.StreamStateInfo
	for _, s := range p.subs {
		s.paused = s.down.PausedForBandwidth()
		states = append(states, streamState(s, s.paused))
	}
	if len(states) > 0 {
		p.send(streamStates(states...))
	}
}

func streamState(s *subscription, paused bool) *livekit.StreamStateInfo {
	st := livekit.StreamState_ACTIVE
	if paused {
		st = livekit.StreamState_PAUSED
	}
	return &livekit.StreamStateInfo{
		ParticipantSid: participantSID(s.up.Owner()),
		TrackSid:       trackSID(s.up),
		State:          st,
	}
}

func streamStates(states ...*livekit.StreamStateInfo) *livekit.SignalResponse {
	return &livekit.SignalResponse{Message: &livekit.SignalResponse_StreamStateUpdate{StreamStateUpdate: &livekit.StreamStateUpdate{
		StreamStates: states,
	}}}
}

// onSyncState takes the state a resuming client reports: with
// auto_subscribe its unsubscribed tracks, else its subscribed ones, and
// the tracks it disabled.
func (p *participant) onSyncState(m *livekit.SyncState) {
	if sub := m.GetSubscription(); sub != nil && (len(sub.GetTrackSids()) > 0 || len(sub.GetParticipantTracks()) > 0) {
		p.onSubscription(sub)
	}
	if disabled := m.GetTrackSidsDisabled(); len(disabled) > 0 {
		p.onTrackSetting(&livekit.UpdateTrackSettings{TrackSids: disabled, Disabled: true})
	}
}

// negotiate offers the subscriber connection's current state to the
// client. One offer is out at a time: changes meanwhile wait for its
// answer and go in the next one. restart restarts ICE, which a resumed
// client waits for.
//
// pion can neither roll back nor replace a local offer, so an offer the
// client never answered (it was away) is sent again as it is; the
// changes and the ICE restart follow once that one is answered.
func (p *participant) negotiate(restart bool) {
	if restart {
		p.restartICE = true
	}
	p.mu.Lock()
	away, closed := p.conn == nil, p.closed
	p.mu.Unlock()
	if closed {
		return
	}
	if away || p.offerOut {
		p.wantOffer = true
		return
	}
	if p.sub.SignalingState() == webrtc.SignalingStateHaveLocalOffer {
		p.wantOffer = true
		p.sendOffer(p.sub.LocalDescription().SDP)
		return
	}
	p.wantOffer = false
	offer, err := p.sub.CreateOffer(&webrtc.OfferOptions{ICERestart: p.restartICE})
	if err == nil {
		err = p.sub.SetLocalDescription(offer)
	}
	if err != nil {
		p.log.Warn().Err(err).Msg("subscriber offer")
		return
	}
	p.restartICE = false
	p.sendOffer(p.sub.LocalDescription().SDP)
}

func (p *participant) sendOffer(sdp string) {
	p.offerOut = true
	p.offerID++
	p.send(&livekit.SignalResponse{Message: &livekit.SignalResponse_Offer{Offer: &livekit.SessionDescription{
		Type: "offer",
		Sdp:  sdp,
		Id:   p.offerID,
	}}})
}

// onAnswer takes the client's answer to the last subscriber offer.
func (p *participant) onAnswer(sd *livekit.SessionDescription) {
	if sd.GetType() != "answer" {
		p.log.Info().Str("type", sd.GetType()).Msg("ignoring a subscriber description that is not an answer")
		return
	}
	if !p.offerOut || p.sub.SignalingState() != webrtc.SignalingStateHaveLocalOffer {
		p.log.Info().Msg("an answer to no subscriber offer; ignored")
		return
	}
	if id := sd.GetId(); id != 0 && id != p.offerID {
		p.log.Info().Uint32("answered", id).Uint32("offer", p.offerID).Msg("an answer to an older subscriber offer; ignored")
		return
	}
	p.offerOut = false
	if err := p.sub.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: sd.GetSdp()}); err != nil {
		p.log.Warn().Err(err).Msg("subscriber answer rejected")
	} else {
		p.flushCandidates(p.sub, &p.subCands)
		p.joined()
	}
	if p.wantOffer {
		p.negotiate(false)
	}
}
