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
		t.sendError(codeNegotiation, err.Error(), "")
		t.close(fmt.Sprintf("renegotiation: the exporter's offer was refused: %v", err), closedBroken)
		return
	}
	t.send(message{Type: msgAnswer, SDP: pc.LocalDescription().SDP})
}

// onTrack feeds a track arriving on the trunk into the proxy track that
// pulled it, until the exporter removes it.
func (t *trunk) onTrack(track *webrtc.TrackRemote, recv *webrtc.RTPReceiver) {
	if !t.startMedia() {
		return
	}
	defer t.media.Done()
	t.mu.Lock()
	pt := t.pulls[track.ID()]
	t.mu.Unlock()
	log := t.log.With().Str("track", track.ID()).Logger()
	if pt == nil {
		// Unsubscribed meanwhile: the exporter removes it next.
		log.Debug().Msg("a trunk track nobody pulls; dropped")
		buf := make([]byte, 1500)
		for {
			if _, _, err := track.Read(buf); err != nil {
				return
			}
		}
	}
	pt.feed(track, recv, log)
}

// subscribe pulls pt over the trunk.
func (t *trunk) subscribe(pt *proxyTrack) {
	t.mu.Lock()
	t.pulls[pt.id] = pt
	t.carried[pt.id] = carried{Conference: pt.conf, Track: pt.id, Kind: pt.up.Kind().String()}
	t.mu.Unlock()
	t.send(message{Type: msgSubscribe, Conference: pt.conf, Track: pt.id})
}

// unsubscribe ends the pull of pt; tell says whether the exporter must
// be told (not when it refused or ended the pull itself).
func (t *trunk) unsubscribe(pt *proxyTrack, tell bool) {
	t.mu.Lock()
	if t.pulls[pt.id] == pt {
		delete(t.pulls, pt.id)
		delete(t.carried, pt.id)
	}
	t.mu.Unlock()
	if tell {
		t.send(message{Type: msgUnsubscribe, Track: pt.id})
	}
}

// pulled returns the proxy track pulled as track ID id, or nil.
func (t *trunk) pulled(id string) *proxyTrack {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.pulls[id]
}

// pullCount returns how many tracks the trunk pulls.
func (t *trunk) pullCount() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.pulls)
}

// proxyTrack is a published track of a proxy participant.
type proxyTrack struct {
	node string // origin focus
	conf string // the conference name to subscribe with at the origin
	id   string
	mime string
	up   *focus.UpTrack

	// feedMu makes one trunk track at a time feed up: a track pulled
	// again may arrive before the previous one has ended.
	feedMu sync.Mutex

	// Owned by the control loop.
	demandKnown   bool // a DemandChanged was seen
	wanted        bool // what it said
	unwantedSince time.Time
	trunk         *trunk // pulled over; nil when not pulled
	retryAt       time.Time
}

// isWanted reports whether anyone here wants the track. Until the core
// has said (DemandChanged), a track that has subscribers is wanted: a
// new track starts out wanted in the core, which raises no event when a
// subscriber arrives before its first control round.
func (pt *proxyTrack) isWanted() bool {
	if pt.demandKnown {
		return pt.wanted
	}
	return pt.up.Subscribers() > 0
}

// feed reads a trunk track into the proxy track until the track ends.
func (pt *proxyTrack) feed(track *webrtc.TrackRemote, recv *webrtc.RTPReceiver, log zerolog.Logger) {
	pt.feedMu.Lock()
	defer pt.feedMu.Unlock()
	log.Info().Str("codec", track.Codec().MimeType).Msg("receiving trunk track")
	remap := newExtRemap(recv.GetParameters().HeaderExtensions, pt.up.Info().Extensions)
	if remap == nil {
		rtc.Receive(pt.up, track, recv, log)
		return
	}
	log.Debug().Msg("the exporter numbers header extensions otherwise; renumbering them")
	rtc.ReceiveRewritten(pt.up, track, recv, remap.apply, log)
}

// upstream carries a proxy track's keyframe requests to its origin over
// whatever trunk pulls from there now.
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
