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
	layer  int // the simulcast layer forwarded
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
	p.subs[sid] = &subscription{up: up, down: down, sender: sender, layer: len(up.Info().Layers) - 1}
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
// enabled or not, and the size it shows them at, which picks the
// simulcast layer. Settings of tracks not (yet) subscribed are kept for
// when they are.
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
// subscription.
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
	var info *livekit.TrackInfo
	if pub := p.s.member(p.room, string(s.up.Owner().ID())); pub != nil {
		info = pub.trackInfo(sid)
	}
	i := chooseLayer(info, rids, st)
	if i == s.layer {
		return
	}
	s.down.SetMaxLayer(i)
	p.log.Debug().Str("track", sid).Str("rid", rids[i]).Uint32("width", st.GetWidth()).Uint32("height", st.GetHeight()).Msg("layer chosen")
	s.layer = i
}

// chooseLayer picks the layer of a simulcast track (whose layers have
// the RIDs rids, and info describes) that a setting asks for: the
// smallest layer at least as large as the wanted size, or the quality
// asked for when no size is; info may be nil.
func chooseLayer(info *livekit.TrackInfo, rids []string, st *livekit.UpdateTrackSettings) int {
	q := livekit.VideoQuality_HIGH
	switch {
	case st.GetWidth() > 0 || st.GetHeight() > 0:
		q = qualityForSize(info, max(st.GetWidth(), st.GetHeight()))
	case st.GetQuality() != livekit.VideoQuality_OFF:
		q = st.GetQuality()
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

// qualityForSize is the lowest quality whose larger side is at least
// size. Without layer sizes, the layers are taken to be a quarter, half
// and all of the track's size, as LiveKit clients send them.
func qualityForSize(info *livekit.TrackInfo, size uint32) livekit.VideoQuality {
	type dim struct {
		q    livekit.VideoQuality
		side uint32
	}
	var dims []dim
	for _, l := range info.GetLayers() {
		if side := max(l.GetWidth(), l.GetHeight()); side > 0 && l.GetQuality() != livekit.VideoQuality_OFF {
			dims = append(dims, dim{l.GetQuality(), side})
		}
	}
	if len(dims) == 0 {
		full := max(info.GetWidth(), info.GetHeight())
		if full == 0 {
			return livekit.VideoQuality_HIGH
		}
		dims = []dim{{livekit.VideoQuality_LOW, full / 4}, {livekit.VideoQuality_MEDIUM, full / 2}, {livekit.VideoQuality_HIGH, full}}
	}
	best := dims[0]
	for _, d := range dims[1:] {
		if d.q > best.q {
			best = d
		}
	}
	for _, d := range dims {
		if d.side >= size && (d.q < best.q || best.side < size) {
			best = d
		}
	}
	return best.q
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
