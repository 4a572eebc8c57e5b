package cascade

import (
	"fmt"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/focus-sfu/focus/focus"
	"github.com/focus-sfu/focus/rtc"
)

// exporter is the sending side of a trunk: it serves each subscription
// of the puller (one layer of one track) as a down track of a hidden
// viewer participant, one per conference, capped at that layer, and
// offers the tracks it adds over the data channel, one offer at a time.
// It is owned by the trunk's loop.
type exporter struct {
	t       *trunk
	viewers map[focus.ConferenceID]*focus.Participant
	exports map[string]*export // by trunk track ID
	// locals are every local track added, for the teardown to wait
	// for their RTCP loops.
	locals []*rtc.LocalTrack

	offering  bool // an offer is out, waiting for its answer
	again     bool // something changed since that offer
	offeredAt time.Time
}

// export is one layer of a track sent over the trunk.
type export struct {
	conf   *focus.Conference
	name   string // the conference name the puller used
	track  string // the track's ID
	layer  int
	up     *focus.UpTrack
	viewer *focus.Participant
	down   *focus.DownTrack
	sender *webrtc.RTPSender
}

func newExporter(t *trunk) *exporter {
	return &exporter{t: t, viewers: make(map[focus.ConferenceID]*focus.Participant), exports: make(map[string]*export)}
}

// viewerIdentity is the identity of the hidden viewer that stands for a
// pulling focus in a conference.
func viewerIdentity(node string) string { return "focus:" + node }

// refuse logs a refused subscription and tells the puller.
func (e *exporter) refuse(code, track string, layer int, format string, args ...any) {
	text := fmt.Sprintf(format, args...)
	e.t.log.Info().Str("code", code).Str("track", track).Int("layer", layer).Str("reason", text).Msg("subscription refused")
	e.t.sendError(code, text, track, layer)
}

// subscribe starts sending layer of track of conference name to the
// puller.
func (e *exporter) subscribe(name, track string, layer int) {
	sfu := e.t.c.sfu
	conf := sfu.Conference(focus.ConferenceID(name))
	id := trunkTrackID(track, layer)
	if old := e.exports[id]; old != nil {
		if conf == old.conf && old.track == track && old.layer == layer {
			return // subscribed already
		}
		e.refuse(codeDuplicateTrack, track, layer, "track %q layer %d of conference %q is exported on this trunk as %q already", old.track, old.layer, old.name, id)
		return
	}
	if conf == nil {
		e.refuse(codeUnknownConference, track, layer, "no conference %q on focus %q", name, e.t.c.self)
		return
	}
	var up *focus.UpTrack
	for _, u := range conf.Tracks() {
		if string(u.ID()) == track {
			up = u
			break
		}
	}
	if up == nil {
		e.refuse(codeUnknownTrack, track, layer, "conference %q has no track %q", name, track)
		return
	}
	if origin := up.Owner().Info().Origin; origin != "" {
		// It came over a trunk from origin: relaying it again could
		// loop, and the puller can pull it from origin itself.
		e.refuse(codeNotExportable, track, layer, "track %q came from focus %q; pull it from there", track, origin)
		return
	}
	if layer >= up.Layers() {
		e.refuse(codeUnknownLayer, track, layer, "track %q has %d layers; no layer %d", track, up.Layers(), layer)
		return
	}
	viewer, err := e.viewer(conf)
	if err != nil {
		e.refuse(codeSubscribeFailed, track, layer, "join conference %q: %v", name, err)
		return
	}
	down, err := viewer.Subscribe(up)
	if err != nil {
		e.dropViewerIfIdle(conf.ID(), viewer)
		e.refuse(codeSubscribeFailed, track, layer, "subscribe: %v", err)
		return
	}
	// The relay has no bandwidth estimate, so the allocator gives it
	// the highest live layer up to the cap: this layer while it is live,
	// a lower one while it stalls at the origin.
	down.SetMaxLayer(layer)
	// The origin's stream ID, and the track's ID with the layer in it,
	// so that the puller can tell the layers apart.
	log := e.t.log.With().Str("conf", string(conf.ID())).Str("track", track).Int("layer", layer).Logger()
	local := rtc.NewLocalTrack(down, id, up.Info().StreamID, e.t.peerConn(), log)
	sender, err := e.t.peerConn().AddTrack(local)
	if err != nil {
		down.Close()
		e.dropViewerIfIdle(conf.ID(), viewer)
		e.refuse(codeSubscribeFailed, track, layer, "add track to the trunk: %v", err)
		return
	}
	e.locals = append(e.locals, local)
	e.exports[id] = &export{conf: conf, name: name, track: track, layer: layer, up: up, viewer: viewer, down: down, sender: sender}
	e.t.setCarried(id, carried{Conference: name, Track: track, Layer: layer, Kind: up.Kind().String()})
	log.Info().Msg("exporting track")
	e.negotiate()
}

// viewer returns the hidden viewer of conf, joining it when needed. Its
// Origin names the puller, so it counts as no local participant (it is
// in no holdings, and keeps no proxies here).
func (e *exporter) viewer(conf *focus.Conference) (*focus.Participant, error) {
	if v := e.viewers[conf.ID()]; v != nil && conf.Participant(v.ID()) == v {
		return v, nil
	}
	v, err := e.t.c.sfu.Join(conf.ID(), focus.ParticipantInfo{
		Identity: viewerIdentity(e.t.peer),
		Role:     focus.RoleViewer,
		Origin:   e.t.peer,
	})
	if err != nil {
		return nil, err
	}
	e.viewers[conf.ID()] = v
	return v, nil
}

// dropViewerIfIdle makes a hidden viewer without exports leave.
func (e *exporter) dropViewerIfIdle(id focus.ConferenceID, v *focus.Participant) {
	for _, ex := range e.exports {
		if ex.viewer == v {
			return
		}
	}
	v.Leave()
	if e.viewers[id] == v {
		delete(e.viewers, id)
	}
}

// unsubscribe stops sending layer of track.
func (e *exporter) unsubscribe(track string, layer int) {
	id := trunkTrackID(track, layer)
	ex := e.exports[id]
	if ex == nil || ex.track != track || ex.layer != layer {
		return
	}
	e.remove(id, ex)
	e.t.log.Info().Str("track", track).Int("layer", layer).Msg("track no longer exported")
	e.negotiate()
}

// remove ends the export sent as trunk track id; the caller
// renegotiates.
func (e *exporter) remove(id string, ex *export) {
	if err := e.t.peerConn().RemoveTrack(ex.sender); err != nil {
		e.t.log.Debug().Err(err).Str("track", id).Msg("remove track from the trunk")
	}
	ex.down.Close()
	delete(e.exports, id)
	e.t.setCarried(id, carried{})
	e.dropViewerIfIdle(ex.conf.ID(), ex.viewer)
}

// sourceGone ends the exports of a track unpublished at this focus, and
// tells the puller.
func (e *exporter) sourceGone(up *focus.UpTrack) {
	changed := false
	for id, ex := range e.exports {
		if ex.up == up {
			e.remove(id, ex)
			e.t.sendError(codeTrackEnded, "the track was unpublished", ex.track, ex.layer)
			changed = true
		}
	}
	if changed {
		e.negotiate()
	}
}

// viewerLeft forgets a hidden viewer that left by other means (the SFU
// closing); its down tracks are closed already.
func (e *exporter) viewerLeft(p *focus.Participant) {
	changed := false
	for id, ex := range e.exports {
		if ex.viewer == p {
			e.remove(id, ex)
			changed = true
		}
	}
	for id, v := range e.viewers {
		if v == p {
			delete(e.viewers, id)
		}
	}
	if changed {
		e.negotiate()
	}
}

// negotiate offers the trunk's current tracks, unless an offer is out:
// then it offers again once that one is answered.
func (e *exporter) negotiate() {
	if e.offering {
		e.again = true
		return
	}
	e.again = false
	pc := e.t.peerConn()
	offer, err := pc.CreateOffer(nil)
	if err == nil {
		err = pc.SetLocalDescription(offer)
	}
	if err != nil {
		e.t.close(fmt.Sprintf("renegotiation: make an offer: %v", err), closedBroken)
		return
	}
	e.offering, e.offeredAt = true, time.Now()
	e.t.send(message{Type: msgOffer, SDP: pc.LocalDescription().SDP})
}

// answer applies the puller's answer to the offer that is out.
func (e *exporter) answer(sdp string) {
	if !e.offering {
		e.t.log.Info().Msg("an answer to no offer; ignored")
		return
	}
	e.offering = false
	if err := e.t.peerConn().SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: sdp}); err != nil {
		e.t.sendError(codeNegotiation, err.Error(), "", 0)
		e.t.close(fmt.Sprintf("renegotiation: the puller's answer was refused: %v", err), closedBroken)
		return
	}
	if e.again {
		e.negotiate()
	}
}

// tick ends a trunk whose puller does not answer an offer.
func (e *exporter) tick(now time.Time) {
	if e.offering && now.Sub(e.offeredAt) > e.t.c.timing.answer {
		e.t.close(fmt.Sprintf("renegotiation: no answer within %v", e.t.c.timing.answer), closedBroken)
	}
}

// release ends every export and makes the hidden viewers leave.
func (e *exporter) release() {
	for id, ex := range e.exports {
		ex.down.Close()
		delete(e.exports, id)
		e.t.setCarried(id, carried{})
	}
	for id, v := range e.viewers {
		v.Leave()
		delete(e.viewers, id)
	}
}

// wait waits for the RTCP loops of the local tracks, which end once the
// PeerConnection is closed.
func (e *exporter) wait() {
	for _, l := range e.locals {
		l.Wait()
	}
}
