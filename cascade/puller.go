package cascade

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
	"github.com/rs/zerolog"

	"github.com/focus-sfu/focus/focus"
	"github.com/focus-sfu/focus/mesh"
	"github.com/focus-sfu/focus/rtc"
)

// trunkPath is the endpoint a puller POSTs its offer to.
const trunkPath = "/cascade/v1/trunk"

// trunkRequest is the body of a trunk request.
type trunkRequest struct {
	Version int    `json:"version"`
	Offer   string `json:"offer"`
}

// trunkResponse is the body of its success. Node names the answering
// focus, so that a puller sent to the wrong one by a stale or mistaken
// TrunkURL notices.
type trunkResponse struct {
	Version int    `json:"version"`
	Node    string `json:"node"`
	Trunk   string `json:"trunk"`
	Answer  string `json:"answer"`
}

// errorBody is the body of a refusal.
type errorBody struct {
	Errcode string `json:"errcode"`
	Error   string `json:"error"`
}

// dial is the puller's setup: it offers a PeerConnection with the data
// channel and no media (the exporter adds the tracks by renegotiating),
// POSTs the offer with every candidate in it, and applies the answer.
func (t *trunk) dial(base string) error {
	pc, err := t.c.dialer.NewPeerConnection()
	if err != nil {
		return err
	}
	t.pc.Store(pc)
	t.watch(pc)
	pc.OnTrack(t.onTrack)
	dc, err := pc.CreateDataChannel(dcLabel, nil) // ordered and reliable
	if err != nil {
		return fmt.Errorf("create data channel: %w", err)
	}
	t.attach(dc)
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		return fmt.Errorf("create offer: %w", err)
	}
	gathered := webrtc.GatheringCompletePromise(pc.PeerConnection)
	if err := pc.SetLocalDescription(offer); err != nil {
		return fmt.Errorf("apply offer: %w", err)
	}
	ctx, cancel := context.WithTimeout(t.ctx, t.c.timing.connect)
	defer cancel()
	sdp, err := waitGathered(ctx, pc, gathered)
	if err != nil {
		return err
	}
	answer, err := t.c.requestTrunk(ctx, base, t.peer, sdp)
	if err != nil {
		return err
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		return fmt.Errorf("apply the exporter's answer: %w", err)
	}
	return nil
}

// requestTrunk POSTs a signed trunk request to the focus peer at base
// and returns its answer.
func (c *Cascade) requestTrunk(ctx context.Context, base, peer, offer string) (string, error) {
	body, err := json.Marshal(trunkRequest{Version: protocolVersion, Offer: offer})
	if err != nil {
		return "", err
	}
	url := strings.TrimRight(base, "/") + trunkPath
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return "", fmt.Errorf("trunk request to %s: %w", url, err)
	}
	req.Header.Set("Content-Type", "application/json")
	signRequest(req, c.opts.Secret, c.self, trunkPath, body, time.Now())
	resp, err := c.client.Do(req)
	if err != nil {
		return "", fmt.Errorf("trunk request: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return "", fmt.Errorf("trunk request to %s: read the answer: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e errorBody
		_ = json.Unmarshal(b, &e)
		return "", fmt.Errorf("trunk request to %s: status %d %s: %s", url, resp.StatusCode, e.Errcode, e.Error)
	}
	var r trunkResponse
	if err := json.Unmarshal(b, &r); err != nil {
		return "", fmt.Errorf("trunk request to %s: the answer is not JSON: %w", url, err)
	}
	if r.Version != protocolVersion || r.Answer == "" {
		return "", fmt.Errorf("trunk request to %s: an answer of version %d with %d bytes of SDP", url, r.Version, len(r.Answer))
	}
	if r.Node != peer {
		return "", fmt.Errorf("trunk request to %s: it is focus %q, not %q (check its trunk URL)", url, r.Node, peer)
	}
	return r.Answer, nil
}

// answerOffer applies the exporter's offer (the tracks it adds or
// removes) and sends the answer.
func (t *trunk) answerOffer(sdp string) {
	pc := t.peerConn()
	err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: sdp})
	var answer webrtc.SessionDescription
	if err == nil {
		answer, err = pc.CreateAnswer(nil)
	}
	if err == nil {
		err = pc.SetLocalDescription(answer)
	}
	if err != nil {
		t.sendError(codeNegotiation, err.Error(), "", 0)
		t.close(fmt.Sprintf("renegotiation: the exporter's offer was refused: %v", err), closedBroken)
		return
	}
	t.send(message{Type: msgAnswer, SDP: pc.LocalDescription().SDP})
}

// onTrack feeds a track arriving on the trunk into the proxy track layer
// that pulled it, until the exporter removes it.
func (t *trunk) onTrack(track *webrtc.TrackRemote, recv *webrtc.RTPReceiver) {
	if !t.startMedia() {
		return
	}
	defer t.media.Done()
	t.mu.Lock()
	p := t.pulls[track.ID()]
	t.mu.Unlock()
	log := t.log.With().Str("track", track.ID()).Logger()
	if p == nil {
		// Unsubscribed meanwhile: the exporter removes it next.
		log.Debug().Msg("a trunk track nobody pulls; dropped")
		buf := make([]byte, 1500)
		for {
			if _, _, err := track.Read(buf); err != nil {
				return
			}
		}
	}
	p.feed(track, recv, log)
}

// subscribe pulls p over the trunk. A pull whose trunk track ID another
// pull of this trunk has is refused (see trunkTrackID), and reports
// false.
func (t *trunk) subscribe(p *pull) bool {
	pt := p.pt
	id := p.id()
	t.mu.Lock()
	if other := t.pulls[id]; other != nil && other != p {
		t.mu.Unlock()
		t.log.Warn().Str("track", pt.id).Int("layer", p.layer).Str("other", other.pt.id).
			Msg("two pulls would share one trunk track ID; not pulled")
		return false
	}
	t.pulls[id] = p
	t.carried[id] = carried{Conference: pt.conf, Track: pt.id, Layer: p.layer, Kind: pt.up.Kind().String()}
	t.mu.Unlock()
	t.send(message{Type: msgSubscribe, Conference: pt.conf, Track: pt.id, Layer: p.layer})
	return true
}

// unsubscribe ends pull p; tell says whether the exporter must be told
// (not when it refused or ended the pull itself).
func (t *trunk) unsubscribe(p *pull, tell bool) {
	id := p.id()
	t.mu.Lock()
	if t.pulls[id] == p {
		delete(t.pulls, id)
		delete(t.carried, id)
	}
	t.mu.Unlock()
	if tell {
		t.send(message{Type: msgUnsubscribe, Track: p.pt.id, Layer: p.layer})
	}
}

// pulled returns the pull carried as trunk track id, or nil.
func (t *trunk) pulled(id string) *pull {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.pulls[id]
}

// pullCount returns how many track layers the trunk pulls.
func (t *trunk) pullCount() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.pulls)
}

// proxyTrack is a published track of a proxy participant. It has the
// origin's layers, each pulled on its own.
type proxyTrack struct {
	node   string // origin focus
	conf   string // the conference name to subscribe with at the origin
	id     string
	mime   string
	rids   []string         // the origin's simulcast RIDs
	sizes  []mesh.LayerSize // the origin's layer sizes, as last set
	up     *focus.UpTrack
	layers []*pull // one per layer of up

	// Owned by the control loop.
	demandKnown bool   // a DemandChanged was seen
	wanted      []bool // what it said, per layer
}

// pull is the pulling of one layer of a proxy track. Its fields after
// feedMu are owned by the control loop.
type pull struct {
	pt    *proxyTrack
	layer int

	// feedMu makes one trunk track at a time feed the layer: a layer
	// pulled again may arrive before the previous track has ended.
	feedMu sync.Mutex

	unwantedSince time.Time
	trunk         *trunk // pulled over; nil when not pulled
	retryAt       time.Time
}

// id is the ID of the trunk track that carries the pull.
func (p *pull) id() string { return trunkTrackID(p.pt.id, p.layer) }

// isWanted reports whether anyone here wants layer i. Until the core has
// said (DemandChanged), every layer of a track that has subscribers is
// wanted: a new track starts out with every layer wanted in the core,
// which raises no event while that stays so (or when a subscriber
// arrives before its first control round).
func (pt *proxyTrack) isWanted(i int) bool {
	if pt.demandKnown {
		return i < len(pt.wanted) && pt.wanted[i]
	}
	return pt.up.Subscribers() > 0
}

// feed reads a trunk track into the pull's layer until the track ends.
func (p *pull) feed(track *webrtc.TrackRemote, recv *webrtc.RTPReceiver, log zerolog.Logger) {
	p.feedMu.Lock()
	defer p.feedMu.Unlock()
	up := p.pt.up
	log = log.With().Int("layer", p.layer).Logger()
	log.Info().Str("codec", track.Codec().MimeType).Msg("receiving trunk track")
	var rewrite func([]byte)
	if remap := newExtRemap(recv.GetParameters().HeaderExtensions, up.Info().Extensions); remap != nil {
		log.Debug().Msg("the exporter numbers header extensions otherwise; renumbering them")
		rewrite = remap.apply
	}
	rtc.ReceiveLayer(up, p.layer, track, recv, rewrite, log)
}

// upstream carries a proxy track's keyframe requests to its origin over
// whatever trunk pulls from there now. The core addresses a request for
// layer i to the SSRC that layer receives, the SSRC of the trunk track
// that carries it; the exporter's pion hands it to that track's sender,
// and the relay down track behind it asks the origin for a keyframe of
// the layer it forwards, layer i. So requests stay with their layer.
type upstream struct {
	c    *Cascade
	node string
}

// errNoTrunk is returned for RTCP with no trunk to send it on.
var errNoTrunk = errors.New("cascade: no trunk to the track's origin")

// WriteRTCP implements focus.RTCPWriter.
func (u upstream) WriteRTCP(pkts []rtcp.Packet) error {
	t := u.c.pullTrunk(u.node)
	if t == nil {
		return errNoTrunk
	}
	pc := t.peerConn()
	if pc == nil || t.getState() != stateOpen {
		return errNoTrunk
	}
	return pc.WriteRTCP(pkts)
}
