package livekit

import (
	"strings"

	"github.com/livekit/protocol/livekit"
	"github.com/pion/webrtc/v4"
	"google.golang.org/protobuf/proto"

	"github.com/focus-sfu/focus/focus"
	"github.com/focus-sfu/focus/rtc"
)

// The publishing side: the client announces a track (add_track), gets
// its sid at once (track_published), then offers it on the publisher
// connection; when its media arrives the track enters the core and the
// others hear of it.

// onOffer answers the client's offer on the publisher connection. The
// answer carries the offer's id, which the client matches.
func (p *participant) onOffer(sd *livekit.SessionDescription) {
	if sd.GetType() != "offer" {
		p.log.Info().Str("type", sd.GetType()).Msg("ignoring a publisher description that is not an offer")
		return
	}
	if err := p.pub.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: rtc.WithoutSimulcastRTX(sd.GetSdp())}); err != nil {
		p.log.Warn().Err(err).Msg("publisher offer rejected")
		return
	}
	p.flushCandidates(p.pub, &p.pubCands)
	answer, err := p.pub.CreateAnswer(nil)
	if err == nil {
		err = p.pub.SetLocalDescription(answer)
	}
	if err != nil {
		p.log.Warn().Err(err).Msg("answer the publisher offer")
		return
	}
	p.send(&livekit.SignalResponse{Message: &livekit.SignalResponse_Answer{Answer: &livekit.SessionDescription{
		Type: "answer",
		Sdp:  p.pub.LocalDescription().SDP,
		Id:   sd.GetId(),
	}}})
	p.joined()
}

// onAddTrack registers a track the client is about to publish and
// answers with its TrackInfo.
func (p *participant) onAddTrack(req *livekit.AddTrackRequest) {
	refuse := func(reason livekit.RequestResponse_Reason, msg string) {
		p.log.Info().Str("cid", req.GetCid()).Str("reason", msg).Msg("add_track refused")
		p.requestResponse(0, reason, msg, &livekit.RequestResponse_AddTrack{AddTrack: req})
	}
	switch {
	case req.GetCid() == "":
		refuse(livekit.RequestResponse_INVALID_REQUEST, "add_track needs a cid")
		return
	case req.GetType() != livekit.TrackType_AUDIO && req.GetType() != livekit.TrackType_VIDEO:
		refuse(livekit.RequestResponse_UNSUPPORTED_TYPE, "only audio and video tracks are supported")
		return
	case !p.grants.Video.GetCanPublishSource(req.GetSource()):
		refuse(livekit.RequestResponse_NOT_ALLOWED, "the token does not allow publishing this source")
		return
	case req.GetSid() != "":
		refuse(livekit.RequestResponse_UNSUPPORTED_TYPE, "adding a codec to a published track is not supported")
		return
	}
	p.mu.Lock()
	for _, pt := range p.pending {
		if pt.cid == req.GetCid() {
			info := proto.CloneOf(pt.info)
			p.mu.Unlock()
			p.send(trackPublished(req.GetCid(), info))
			return
		}
	}
	if len(p.pending) >= maxPending {
		p.mu.Unlock()
		refuse(livekit.RequestResponse_LIMIT_EXCEEDED, "too many tracks awaiting their media")
		return
	}
	info := newTrackInfo(req)
	p.pending = append(p.pending, &pendingTrack{cid: req.GetCid(), info: info})
	info = proto.CloneOf(info)
	p.mu.Unlock()
	p.log.Debug().Str("cid", req.GetCid()).Str("track", info.Sid).Str("source", info.Source.String()).Msg("track announced")
	p.send(trackPublished(req.GetCid(), info))
}

func trackPublished(cid string, info *livekit.TrackInfo) *livekit.SignalResponse {
	return &livekit.SignalResponse{Message: &livekit.SignalResponse_TrackPublished{TrackPublished: &livekit.TrackPublishedResponse{
		Cid:   cid,
		Track: info,
	}}}
}

// newTrackInfo describes the track an add_track request announces. The
// encryption, source and layers are echoed: clients decide from them
// whether to decrypt and which sizes exist.
func newTrackInfo(req *livekit.AddTrackRequest) *livekit.TrackInfo {
	info := &livekit.TrackInfo{
		Sid:               newSID("TR_"),
		Type:              req.GetType(),
		Name:              req.GetName(),
		Muted:             req.GetMuted(),
		Width:             req.GetWidth(),
		Height:            req.GetHeight(),
		Simulcast:         len(req.GetLayers()) > 1,
		DisableDtx:        req.GetDisableDtx(),
		Source:            req.GetSource(),
		Layers:            cloneLayers(req.GetLayers()),
		Stereo:            req.GetStereo(),
		DisableRed:        req.GetDisableRed(),
		Encryption:        req.GetEncryption(),
		Stream:            req.GetStream(),
		AudioFeatures:     append([]livekit.AudioTrackFeature(nil), req.GetAudioFeatures()...),
		BackupCodecPolicy: req.GetBackupCodecPolicy(),
	}
	for _, sc := range req.GetSimulcastCodecs() {
		if sc.GetCodec() == "" {
			continue
		}
		layers := sc.GetLayers()
		if len(layers) == 0 {
			layers = req.GetLayers()
		}
		info.Codecs = append(info.Codecs, &livekit.SimulcastCodecInfo{
			MimeType:       mimeType(req.GetType(), sc.GetCodec()),
			Cid:            sc.GetCid(),
			Layers:         cloneLayers(layers),
			VideoLayerMode: sc.GetVideoLayerMode(),
		})
	}
	if len(info.Codecs) > 0 {
		info.MimeType = info.Codecs[0].MimeType
	}
	return info
}

// layerSizes lists the frame sizes the publisher declared for the layers
// of a track whose RIDs are rids, in that order (the core's, lowest
// first): by RID, else by the quality the RID names. A layer declared
// without a size is taken to be a quarter, a half or all of the track's
// size by its quality, as LiveKit clients scale them. Unknown sizes are
// zero.
func layerSizes(info *livekit.TrackInfo, rids []string) []focus.Size {
	declared := info.GetLayers()
	if len(declared) == 0 && len(info.GetCodecs()) > 0 {
		declared = info.GetCodecs()[0].GetLayers()
	}
	n := max(len(rids), 1)
	out := make([]focus.Size, n)
	for i := range out {
		q := livekit.VideoQuality_HIGH
		if len(rids) > 1 {
			q = layerQuality(rids, i)
		}
		var found *livekit.VideoLayer
		for _, l := range declared {
			if i < len(rids) && l.GetRid() != "" && l.GetRid() == rids[i] {
				found = l
				break
			}
			if l.GetQuality() == q && found == nil {
				found = l
			}
		}
		if found.GetWidth() > 0 && found.GetHeight() > 0 {
			out[i] = focus.Size{Width: found.GetWidth(), Height: found.GetHeight()}
			continue
		}
		div := map[livekit.VideoQuality]uint32{livekit.VideoQuality_LOW: 4, livekit.VideoQuality_MEDIUM: 2}[q]
		if div == 0 {
			div = 1
		}
		out[i] = focus.Size{Width: info.GetWidth() / div, Height: info.GetHeight() / div}
	}
	return out
}

func cloneLayers(ls []*livekit.VideoLayer) []*livekit.VideoLayer {
	out := make([]*livekit.VideoLayer, 0, len(ls))
	for _, l := range ls {
		out = append(out, proto.CloneOf(l))
	}
	return out
}

// mimeType turns a codec name ("vp8", or already "video/VP8") into the
// MIME type the focus uses for it.
func mimeType(kind livekit.TrackType, codec string) string {
	if !strings.Contains(codec, "/") {
		prefix := "video/"
		if kind == livekit.TrackType_AUDIO {
			prefix = "audio/"
		}
		codec = prefix + codec
	}
	for _, c := range rtc.Codecs {
		if strings.EqualFold(c.MimeType, codec) {
			return c.MimeType
		}
	}
	return codec
}

// codecName is the codec part of a MIME type, lower case: "vp8".
func codecName(mime string) string {
	_, name, _ := strings.Cut(mime, "/")
	return strings.ToLower(name)
}

// claimTrack finds the add_track request a remote track answers: by its
// client ID (the msid track ID), or else the oldest of its kind, since a
// browser may change a track's ID once it is in a transceiver. The
// request becomes a published track; without one the track is
// published with what its media says.
func (p *participant) claimTrack(track *webrtc.TrackRemote) *livekit.TrackInfo {
	kind := livekit.TrackType_AUDIO
	if track.Kind() == webrtc.RTPCodecTypeVideo {
		kind = livekit.TrackType_VIDEO
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	at := -1
	for i, pt := range p.pending {
		if pt.cid == track.ID() {
			at = i
			break
		}
		for _, c := range pt.info.Codecs {
			if c.Cid == track.ID() {
				at = i
			}
		}
		if at >= 0 {
			break
		}
	}
	if at < 0 {
		for i, pt := range p.pending {
			if pt.info.Type == kind {
				at = i
				break
			}
		}
	}
	var info *livekit.TrackInfo
	if at >= 0 {
		info = p.pending[at].info
		p.pending = append(p.pending[:at], p.pending[at+1:]...)
	} else {
		p.log.Info().Str("cid", track.ID()).Msg("media of a track that was not announced; publishing it as it is")
		info = &livekit.TrackInfo{Sid: newSID("TR_"), Type: kind, Stream: track.StreamID()}
	}
	info.MimeType = track.Codec().MimeType
	// Listed from now on: the core announces the track as soon as it has it.
	p.published = append(p.published, &publishedTrack{info: info})
	p.changedLocked()
	return proto.CloneOf(info)
}

// dropTrack forgets a published track; it reports whether it was there.
func (p *participant) dropTrack(sid string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, t := range p.published {
		if t.info.Sid == sid {
			p.published = append(p.published[:i], p.published[i+1:]...)
			p.changedLocked()
			return true
		}
	}
	return false
}

// published returns the published track sid; mu must be held.
func (p *participant) publishedLocked(sid string) *publishedTrack {
	for _, t := range p.published {
		if t.info.Sid == sid {
			return t
		}
	}
	return nil
}

// trackInfo returns a copy of the info of published track sid, or nil.
func (p *participant) trackInfo(sid string) *livekit.TrackInfo {
	p.mu.Lock()
	defer p.mu.Unlock()
	if t := p.publishedLocked(sid); t != nil {
		return proto.CloneOf(t.info)
	}
	return nil
}

// onTrack publishes a track the client sends; it runs on pion's
// goroutine for the track until the track ends.
func (p *participant) onTrack(track *webrtc.TrackRemote, recv *webrtc.RTPReceiver) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.receivers.Add(1)
	p.mu.Unlock()
	defer p.receivers.Done()
	p.pubs.Receive(track, recv, func(info focus.TrackInfo) (*focus.UpTrack, error) {
		ti := p.claimTrack(track)
		for _, t := range p.pub.GetTransceivers() {
			if t.Receiver() == recv {
				p.setMid(ti.Sid, t.Mid())
			}
		}
		info.ID = focus.TrackID(ti.Sid)
		info.StreamID = track.StreamID()
		info.Source = coreSource(ti.Source, info.Kind)
		up, err := p.part.Publish(info, p.pub)
		if err != nil {
			p.dropTrack(ti.Sid)
			return nil, err
		}
		up.SetLayerSizes(layerSizes(ti, info.Layers))
		// Read after publishing: a mute that came meanwhile either is
		// in the info now or found the track in the core (onMute).
		if cur := p.trackInfo(ti.Sid); cur != nil && cur.Muted {
			up.SetMuted(true)
		}
		p.log.Info().Str("track", ti.Sid).Str("source", ti.Source.String()).Str("codec", ti.MimeType).
			Strs("layers", info.Layers).Bool("encrypted", ti.Encryption != livekit.Encryption_NONE).Msg("track published")
		return up, nil
	}, p.log)
}

func (p *participant) setMid(sid, mid string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if t := p.publishedLocked(sid); t != nil {
		t.info.Mid = mid
		for _, c := range t.info.Codecs {
			if strings.EqualFold(c.MimeType, t.info.MimeType) {
				c.Mid = mid
			}
		}
	}
}

// coreSource maps a LiveKit track source to the core's.
func coreSource(s livekit.TrackSource, kind focus.Kind) focus.Source {
	switch s {
	case livekit.TrackSource_CAMERA:
		return focus.SourceCamera
	case livekit.TrackSource_MICROPHONE:
		return focus.SourceMicrophone
	case livekit.TrackSource_SCREEN_SHARE:
		return focus.SourceScreenShare
	case livekit.TrackSource_SCREEN_SHARE_AUDIO:
		return focus.SourceScreenShareAudio
	}
	if kind == focus.KindAudio {
		return focus.SourceMicrophone
	}
	return focus.SourceCamera
}

// trackRemoved follows the end of one of the participant's tracks in the
// core: everyone hears of it, and so does the client, in case it still
// thinks it publishes the track. It runs on the goroutine that ended it.
func (p *participant) trackRemoved(up *focus.UpTrack) {
	if !p.dropTrack(string(up.ID())) || p.isClosed() {
		return
	}
	p.log.Info().Str("track", string(up.ID())).Msg("track unpublished")
	p.s.broadcast(p.room, p, true)
	p.send(&livekit.SignalResponse{Message: &livekit.SignalResponse_TrackUnpublished{TrackUnpublished: &livekit.TrackUnpublishedResponse{
		TrackSid: string(up.ID()),
	}}})
}

// onMute records that the client muted or unmuted a track, and tells
// everyone.
func (p *participant) onMute(m *livekit.MuteTrackRequest) {
	p.mu.Lock()
	found, listed := false, false
	if t := p.publishedLocked(m.GetSid()); t != nil {
		found, listed = true, true
		if t.info.Muted != m.GetMuted() {
			t.info.Muted = m.GetMuted()
			p.changedLocked()
		}
	} else {
		for _, pt := range p.pending {
			if pt.info.Sid == m.GetSid() {
				found = true
				pt.info.Muted = m.GetMuted()
			}
		}
	}
	p.mu.Unlock()
	if listed {
		// A muted track's silence is not a stall: its subscribers keep
		// their layers for when it comes back.
		for _, up := range p.part.Tracks() {
			if string(up.ID()) == m.GetSid() {
				up.SetMuted(m.GetMuted())
			}
		}
	}
	switch {
	case !found:
		p.log.Info().Str("track", m.GetSid()).Msg("mute of a track the participant does not publish")
	case listed:
		p.log.Debug().Str("track", m.GetSid()).Bool("muted", m.GetMuted()).Msg("track mute changed")
		p.s.broadcast(p.room, p, true)
	}
}

// trackSubscribed tells the client, once per track, that someone
// receives it.
func (p *participant) trackSubscribed(sid string) {
	p.mu.Lock()
	t := p.publishedLocked(sid)
	first := t != nil && !t.subscribed
	if first {
		t.subscribed = true
	}
	p.mu.Unlock()
	if first {
		p.send(&livekit.SignalResponse{Message: &livekit.SignalResponse_TrackSubscribed{TrackSubscribed: &livekit.TrackSubscribed{TrackSid: sid}}})
	}
}

// demandChanged tells the client which simulcast layers of a video track
// anyone wants (dynacast). It runs on the goroutine that changed the
// demand.
func (p *participant) demandChanged(up *focus.UpTrack, wanted []bool) {
	if up.Kind() != focus.KindVideo {
		return
	}
	sid := string(up.ID())
	on := enabledQualities(up.Info().Layers, wanted)
	p.mu.Lock()
	t := p.publishedLocked(sid)
	if t == nil || (t.qualitySet && equalBools(t.quality, on)) {
		p.mu.Unlock()
		return
	}
	t.quality, t.qualitySet = on, true
	codec := codecName(t.info.MimeType)
	p.mu.Unlock()

	qs := []*livekit.SubscribedQuality{
		{Quality: livekit.VideoQuality_LOW, Enabled: on[0]},
		{Quality: livekit.VideoQuality_MEDIUM, Enabled: on[1]},
		{Quality: livekit.VideoQuality_HIGH, Enabled: on[2]},
	}
	p.log.Debug().Str("track", sid).Bools("qualities", on).Msg("subscribed qualities changed")
	p.send(&livekit.SignalResponse{Message: &livekit.SignalResponse_SubscribedQualityUpdate{SubscribedQualityUpdate: &livekit.SubscribedQualityUpdate{
		TrackSid:            sid,
		SubscribedQualities: qs,
		SubscribedCodecs:    []*livekit.SubscribedCodec{{Codec: codec, Qualities: qs}},
	}}})
}

// enabledQualities turns the core's demand for the layers of a track
// (with RIDs rids) into whether LOW, MEDIUM and HIGH stay enabled: every
// quality up to the highest one wanted, as LiveKit does, so that lower
// layers stay warm for a switch down. A track of one encoding, which
// clients treat as LOW, is on or off as a whole.
func enabledQualities(rids []string, wanted []bool) []bool {
	max := livekit.VideoQuality_OFF
	for i, w := range wanted {
		if !w {
			continue
		}
		if q := layerQuality(rids, i); max == livekit.VideoQuality_OFF || q > max {
			max = q
		}
	}
	if max == livekit.VideoQuality_OFF {
		return []bool{false, false, false}
	}
	if len(rids) <= 1 {
		return []bool{true, true, true}
	}
	return []bool{true, max >= livekit.VideoQuality_MEDIUM, max >= livekit.VideoQuality_HIGH}
}

// layerQuality is the quality of layer i of a track whose layers have
// the RIDs rids: LiveKit clients name them q, h and f; other names go
// by position, lowest first.
func layerQuality(rids []string, i int) livekit.VideoQuality {
	if i < len(rids) {
		switch rids[i] {
		case "q":
			return livekit.VideoQuality_LOW
		case "h":
			return livekit.VideoQuality_MEDIUM
		case "f":
			return livekit.VideoQuality_HIGH
		}
	}
	switch {
	case len(rids) <= 1:
		return livekit.VideoQuality_HIGH
	case i == 0:
		return livekit.VideoQuality_LOW
	case i == 1 && len(rids) > 2:
		return livekit.VideoQuality_MEDIUM
	}
	return livekit.VideoQuality_HIGH
}

func equalBools(a, b []bool) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// onUpdateMetadata changes the participant's name, metadata or
// attributes, if the token allows it. The client waits for its own
// update to show the change.
func (p *participant) onUpdateMetadata(m *livekit.UpdateParticipantMetadata) {
	refuse := func(reason livekit.RequestResponse_Reason, msg string) {
		p.requestResponse(m.GetRequestId(), reason, msg, &livekit.RequestResponse_UpdateMetadata{UpdateMetadata: m})
	}
	if !p.grants.Video.GetCanUpdateOwnMetadata() {
		refuse(livekit.RequestResponse_NOT_ALLOWED, "the token does not allow updating metadata")
		return
	}
	if len(m.GetMetadata()) > maxMetadata || len(m.GetName()) > maxName {
		refuse(livekit.RequestResponse_LIMIT_EXCEEDED, "metadata or name too large")
		return
	}
	p.mu.Lock()
	attrs := make(map[string]string, len(p.attributes)+len(m.GetAttributes()))
	for k, v := range p.attributes {
		attrs[k] = v
	}
	for k, v := range m.GetAttributes() {
		if v == "" {
			delete(attrs, k)
		} else {
			attrs[k] = v
		}
	}
	size := 0
	for k, v := range attrs {
		size += len(k) + len(v)
	}
	if size > maxAttributes {
		p.mu.Unlock()
		refuse(livekit.RequestResponse_LIMIT_EXCEEDED, "attributes too large")
		return
	}
	if m.GetName() != "" {
		p.name = m.GetName()
	}
	if m.GetMetadata() != "" {
		p.metadata = m.GetMetadata()
	}
	p.attributes = attrs
	p.changedLocked()
	p.mu.Unlock()
	p.s.broadcast(p.room, p, true)
}

// onUpdateAudioTrack records a published audio track's features.
func (p *participant) onUpdateAudioTrack(m *livekit.UpdateLocalAudioTrack) {
	p.mu.Lock()
	t := p.publishedLocked(m.GetTrackSid())
	if t != nil {
		t.info.AudioFeatures = append([]livekit.AudioTrackFeature(nil), m.GetFeatures()...)
		p.changedLocked()
	}
	p.mu.Unlock()
	if t != nil {
		p.s.broadcast(p.room, p, true)
	}
}

// onUpdateVideoTrack records a published video track's new size.
func (p *participant) onUpdateVideoTrack(m *livekit.UpdateLocalVideoTrack) {
	p.mu.Lock()
	t := p.publishedLocked(m.GetTrackSid())
	if t != nil {
		t.info.Width, t.info.Height = m.GetWidth(), m.GetHeight()
		p.changedLocked()
	}
	p.mu.Unlock()
	if t != nil {
		p.s.broadcast(p.room, p, true)
	}
}
