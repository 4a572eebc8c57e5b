package matrixclient

import (
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"maunium.net/go/mautrix/id"

	"github.com/focus-sfu/focus/internal/testclient"
)

// fakeFocus is the smallest focus that follows the wire format: it answers
// one invite, pings, forwards synthetic media for the tracks a client
// subscribes to, renegotiates on the data channel as the impolite peer,
// and records everything it receives.
type fakeFocus struct {
	t  *testing.T
	hs *fakeHS
	me deviceKey
	// announce is the metadata its answer announces.
	announce Metadata
	// reject, when set, answers an invite with a hangup of that reason.
	reject string
	// silent, when set, never answers an invite.
	silent bool
	// crossFirstOffer makes the first client offer meet a focus offer, as
	// if the two had crossed: the focus ignores the client's and offers
	// a new track of its own.
	crossFirstOffer bool

	mu       sync.Mutex
	pc       *webrtc.PeerConnection
	dc       *webrtc.DataChannel
	peer     deviceKey
	callID   string
	confID   string
	session  string
	seq      int
	msgs     []fakeMsg
	crossed  bool
	senders  map[TrackRef]*fakeSender
	received map[TrackRef]*testclient.TrackRecorder
	wg       sync.WaitGroup
	// negMu serialises the focus's own negotiation steps.
	negMu sync.Mutex
}

type fakeMsg struct {
	via, typ string
	content  json.RawMessage
}

type fakeSender struct {
	sender *webrtc.RTPSender
	stop   chan struct{}
}

const fakeFocusSession = "focus-session"

func newFakeFocus(t *testing.T, hs *fakeHS, announce Metadata) *fakeFocus {
	f := &fakeFocus{
		t: t, hs: hs, me: deviceKey{"@focus:hs", "FOCUSDEV"}, announce: announce,
		senders: map[TrackRef]*fakeSender{}, received: map[TrackRef]*testclient.TrackRecorder{},
	}
	hs.serve(f.me, f.onToDevice)
	t.Cleanup(f.close)
	return f
}

func (f *fakeFocus) focus() Focus { return Focus{UserID: f.me.user, DeviceID: f.me.device} }

func (f *fakeFocus) close() {
	f.mu.Lock()
	pc := f.pc
	for _, s := range f.senders {
		close(s.stop)
	}
	f.senders = map[TrackRef]*fakeSender{}
	f.mu.Unlock()
	if pc != nil {
		_ = pc.GracefulClose()
	}
	f.wg.Wait()
}

func (f *fakeFocus) record(via, typ string, content json.RawMessage) {
	f.mu.Lock()
	f.msgs = append(f.msgs, fakeMsg{via, typ, content})
	f.mu.Unlock()
}

// messages returns what the focus received of one type.
func (f *fakeFocus) messages(typ string) []json.RawMessage {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []json.RawMessage
	for _, m := range f.msgs {
		if m.typ == typ {
			out = append(out, m.content)
		}
	}
	return out
}

// send sends one to-device message of the call to the client.
func (f *fakeFocus) send(typ string, extra map[string]any) {
	f.mu.Lock()
	content := map[string]any{
		"call_id": f.callID, "conf_id": f.confID, "party_id": string(f.me.device), "device_id": f.me.device,
		"sender_session_id": fakeFocusSession, "dest_session_id": f.session, "version": "1", "seq": f.seq,
	}
	f.seq++
	peer := f.peer
	f.mu.Unlock()
	for k, v := range extra {
		content[k] = v
	}
	raw, err := json.Marshal(content)
	if err != nil {
		f.t.Errorf("fake focus: encode %s: %v", typ, err)
		return
	}
	f.hs.deliver(f.me.user, peer, typ, raw)
}

func (f *fakeFocus) onToDevice(sender id.UserID, typ string, content json.RawMessage) {
	f.record(ViaToDevice, typ, content)
	var in struct {
		CallID          string              `json:"call_id"`
		ConfID          string              `json:"conf_id"`
		DeviceID        id.DeviceID         `json:"device_id"`
		SenderSessionID string              `json:"sender_session_id"`
		Offer           *sessionDescription `json:"offer"`
		Candidates      []wireCandidate     `json:"candidates"`
	}
	if err := json.Unmarshal(content, &in); err != nil {
		f.t.Errorf("fake focus: decode %s: %v", typ, err)
		return
	}
	switch typ {
	case TypeInvite.Type:
		f.mu.Lock()
		f.peer = deviceKey{sender, in.DeviceID}
		f.callID, f.confID, f.session, f.seq = in.CallID, in.ConfID, in.SenderSessionID, 0
		f.mu.Unlock()
		if f.silent {
			return
		}
		if f.reject != "" {
			f.send(TypeHangup.Type, map[string]any{"reason": f.reject})
			return
		}
		f.answer(in.Offer.SDP)
	case TypeCandidates.Type:
		f.mu.Lock()
		pc := f.pc
		f.mu.Unlock()
		for _, c := range in.Candidates {
			if c.Candidate == "" || pc == nil {
				continue
			}
			if err := pc.AddICECandidate(webrtc.ICECandidateInit{Candidate: c.Candidate, SDPMid: c.SDPMid, SDPMLineIndex: c.SDPMLineIndex}); err != nil {
				f.t.Errorf("fake focus: add candidate: %v", err)
			}
		}
	}
}

// answer answers the invite with all candidates in the SDP, then sends
// an end of candidates.
func (f *fakeFocus) answer(offer string) {
	api, err := testclient.NewAPI()
	if err != nil {
		f.t.Error(err)
		return
	}
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		f.t.Error(err)
		return
	}
	f.mu.Lock()
	f.pc = pc
	f.mu.Unlock()
	pc.OnDataChannel(func(dc *webrtc.DataChannel) {
		f.mu.Lock()
		f.dc = dc
		f.mu.Unlock()
		dc.OnOpen(func() { f.sendDC(DCPing, struct{}{}) })
		dc.OnMessage(f.onDC)
	})
	pc.OnTrack(f.onTrack)
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		f.t.Errorf("fake focus: apply invite offer: %v", err)
		return
	}
	a, err := pc.CreateAnswer(nil)
	if err != nil {
		f.t.Error(err)
		return
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(a); err != nil {
		f.t.Error(err)
		return
	}
	<-gathered
	f.send(TypeAnswer.Type, map[string]any{
		"answer":    sessionDescription{Type: "answer", SDP: pc.LocalDescription().SDP},
		metadataKey: f.announce,
	})
	f.send(TypeCandidates.Type, map[string]any{"candidates": []wireCandidate{{Candidate: ""}}})
}

func (f *fakeFocus) onTrack(t *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
	ref := TrackRef{StreamID: t.StreamID(), TrackID: t.ID()}
	rec := testclient.NewTrackRecorder(t.Kind())
	f.mu.Lock()
	f.received[ref] = rec
	f.mu.Unlock()
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		var pkt rtp.Packet
		buf := make([]byte, 1500)
		for {
			n, _, err := t.Read(buf)
			if err != nil {
				return
			}
			if pkt.Unmarshal(buf[:n]) == nil {
				f.mu.Lock()
				rec.Record(&pkt, time.Now())
				f.mu.Unlock()
			}
		}
	}()
}

// receivedStats is what the focus received of one client track.
func (f *fakeFocus) receivedStats(ref TrackRef) (testclient.TrackStats, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.received[ref]
	if !ok {
		return testclient.TrackStats{}, false
	}
	return r.Stats(), true
}

func (f *fakeFocus) sendDC(typ string, content any) {
	b, err := encodeDC(typ, content)
	if err != nil {
		f.t.Error(err)
		return
	}
	f.mu.Lock()
	dc := f.dc
	f.mu.Unlock()
	if err := dc.SendText(string(b)); err != nil {
		f.t.Errorf("fake focus: send %s: %v", typ, err)
	}
}

func (f *fakeFocus) onDC(msg webrtc.DataChannelMessage) {
	var env dcMessage
	if err := json.Unmarshal(msg.Data, &env); err != nil {
		f.t.Errorf("fake focus: data channel: %v", err)
		return
	}
	f.record(ViaDataChannel, env.Type, env.Content)
	switch env.Type {
	case DCTrackSubscription:
		var ts trackSubscriptionContent
		if err := json.Unmarshal(env.Content, &ts); err != nil {
			f.t.Errorf("fake focus: %v", err)
			return
		}
		for _, s := range ts.Subscribe {
			f.addSender(s.TrackRef)
		}
		for _, r := range ts.Unsubscribe {
			f.removeSender(r)
		}
		f.offer()
	case DCNegotiate:
		var n negotiateContent
		if err := json.Unmarshal(env.Content, &n); err != nil {
			f.t.Errorf("fake focus: %v", err)
			return
		}
		f.onNegotiate(n)
	}
}

func (f *fakeFocus) onNegotiate(n negotiateContent) {
	f.negMu.Lock()
	defer f.negMu.Unlock()
	pc := f.pc
	switch n.Description.Type {
	case "answer":
		if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: n.Description.SDP}); err != nil {
			f.t.Errorf("fake focus: apply answer: %v", err)
		}
	case "offer":
		f.mu.Lock()
		cross := f.crossFirstOffer && !f.crossed
		f.crossed = f.crossed || cross
		f.mu.Unlock()
		if cross {
			// As if an offer of ours had been on its way: a new track,
			// and the client's offer ignored.
			f.addSender(TrackRef{StreamID: "cross", TrackID: "cross-audio"})
			f.offerLocked()
			return
		}
		if pc.SignalingState() != webrtc.SignalingStateStable {
			return // impolite: keep our offer
		}
		if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: n.Description.SDP}); err != nil {
			f.t.Errorf("fake focus: apply client offer: %v", err)
			return
		}
		a, err := pc.CreateAnswer(nil)
		if err == nil {
			err = pc.SetLocalDescription(a)
		}
		if err != nil {
			f.t.Errorf("fake focus: answer client offer: %v", err)
			return
		}
		f.sendDC(DCNegotiate, negotiateContent{Description: sessionDescription{Type: "answer", SDP: a.SDP}, Metadata: f.announce})
	}
}

func (f *fakeFocus) offer() {
	f.negMu.Lock()
	defer f.negMu.Unlock()
	f.offerLocked()
}

func (f *fakeFocus) offerLocked() {
	o, err := f.pc.CreateOffer(nil)
	if err == nil {
		err = f.pc.SetLocalDescription(o)
	}
	if err != nil {
		f.t.Errorf("fake focus: offer: %v", err)
		return
	}
	f.sendDC(DCNegotiate, negotiateContent{Description: sessionDescription{Type: "offer", SDP: o.SDP}, Metadata: f.announce})
}

// addSender starts forwarding synthetic media as track ref: video if the
// announced kind says so, audio otherwise.
func (f *fakeFocus) addSender(ref TrackRef) {
	kind := webrtc.RTPCodecTypeAudio
	if f.announce[ref.StreamID].Tracks[ref.TrackID].Kind == "video" {
		kind = webrtc.RTPCodecTypeVideo
	}
	codec := webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}
	if kind == webrtc.RTPCodecTypeVideo {
		codec = webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}
	}
	track, err := webrtc.NewTrackLocalStaticRTP(codec, ref.TrackID, ref.StreamID)
	if err != nil {
		f.t.Error(err)
		return
	}
	tc, err := f.pc.AddTransceiverFromTrack(track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
	if err != nil {
		f.t.Error(err)
		return
	}
	s := &fakeSender{sender: tc.Sender(), stop: make(chan struct{})}
	f.mu.Lock()
	f.senders[ref] = s
	f.mu.Unlock()
	f.wg.Add(2)
	go func() {
		defer f.wg.Done()
		for {
			if _, _, err := s.sender.ReadRTCP(); err != nil {
				return
			}
		}
	}()
	go func() {
		defer f.wg.Done()
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		pkt := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: ptOpus, SequenceNumber: 100, Timestamp: 1000}}
		if kind == webrtc.RTPCodecTypeVideo {
			pkt.PayloadType = ptVP8
		}
		var n uint32
		for {
			select {
			case <-s.stop:
				return
			case <-tick.C:
			}
			m := testclient.Marker{Session: 7, Counter: n, Sent: time.Now()}
			if kind == webrtc.RTPCodecTypeVideo {
				// Every packet a one-packet keyframe: the fake needs no PLI.
				pkt.Payload = testclient.AppendVP8(nil, true, true, 300, m)
				pkt.Marker = true
			} else {
				pkt.Payload = testclient.AppendOpus(nil, 80, m)
			}
			_ = track.WriteRTP(pkt)
			n++
			pkt.SequenceNumber++
			pkt.Timestamp += 900
		}
	}()
}

func (f *fakeFocus) removeSender(ref TrackRef) {
	f.mu.Lock()
	s, ok := f.senders[ref]
	delete(f.senders, ref)
	f.mu.Unlock()
	if !ok {
		return
	}
	close(s.stop)
	if err := f.pc.RemoveTrack(s.sender); err != nil {
		f.t.Errorf("fake focus: remove track: %v", err)
	}
}
