package matrix

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/focus-sfu/focus/focus"
	"github.com/focus-sfu/focus/internal/testclient"
	"github.com/focus-sfu/focus/metadata"
	"github.com/focus-sfu/focus/rtc"
)

// These tests drive the call logic in process: to-device messages go
// straight to Focus.ToDevice and come back through a recording Sender;
// the media and the data channel are real pion connections. The whole
// path through a real homeserver is in e2e/matrix_*_test.go.

const (
	callRoom  = id.RoomID("!call:hs")
	focusUser = id.UserID("@focus:hs")
	focusDev  = id.DeviceID("FOCUS")
)

// sent is one to-device message the focus sent.
type sent struct {
	user    id.UserID
	device  id.DeviceID
	typ     string
	content json.RawMessage
}

type recordingSender struct {
	mu   sync.Mutex
	msgs []sent
}

func (s *recordingSender) SendToDevice(_ context.Context, user id.UserID, device id.DeviceID, typ event.Type, content any) error {
	b, err := json.Marshal(content)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.msgs = append(s.msgs, sent{user, device, typ.Type, b})
	s.mu.Unlock()
	return nil
}

func (s *recordingSender) UserID() id.UserID     { return focusUser }
func (s *recordingSender) DeviceID() id.DeviceID { return focusDev }

// wait returns the first message of typ sent to device after skip others.
func (s *recordingSender) wait(t *testing.T, device id.DeviceID, typ string) json.RawMessage {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		s.mu.Lock()
		for _, m := range s.msgs {
			if m.device == device && m.typ == typ {
				s.mu.Unlock()
				return m.content
			}
		}
		s.mu.Unlock()
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no %s sent to %s", typ, device)
	return nil
}

type harness struct {
	t      *testing.T
	f      *Focus
	sfu    *focus.SFU
	sender *recordingSender
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	engine, err := rtc.New(rtc.Config{BindAddress: "127.0.0.1"}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	sfu := focus.New(focus.Options{})
	s := &recordingSender{}
	f, err := New(Options{SFU: sfu, Engine: engine, Sender: s, Memberships: NewMemberships(nil), MembershipWait: 300 * time.Millisecond, PingInterval: 200 * time.Millisecond, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := f.Close(ctx); err != nil {
			t.Error(err)
		}
		sfu.Close()
		_ = engine.Close()
	})
	h := &harness{t: t, f: f, sfu: sfu, sender: s}
	h.stateEvent("m.room.member", focusUser, string(focusUser), `{"membership":"join"}`)
	return h
}

func (h *harness) stateEvent(typ string, sender id.UserID, key, content string) {
	h.t.Helper()
	raw := fmt.Sprintf(`{"type":%q,"room_id":%q,"sender":%q,"state_key":%q,"origin_server_ts":%d,"event_id":"$%d","content":%s}`,
		typ, callRoom, sender, key, time.Now().UnixMilli(), time.Now().UnixNano(), content)
	var evt event.Event
	if err := json.Unmarshal([]byte(raw), &evt); err != nil {
		h.t.Fatal(err)
	}
	h.f.RoomEvent(context.Background(), &evt)
}

func (h *harness) member(user id.UserID, device id.DeviceID, confID string) {
	h.stateEvent("org.matrix.msc3401.call.member", user, "_"+string(user)+"_"+string(device)+"_m.call", fmt.Sprintf(
		`{"application":"m.call","call_id":%q,"scope":"m.room","device_id":%q,"expires":3600000,"created_ts":%d,`+
			`"foci_preferred":[{"type":"org.matrix.msc3898","user_id":%q,"device_id":%q}]}`,
		confID, device, time.Now().UnixMilli(), focusUser, focusDev))
}

func (h *harness) toDevice(sender id.UserID, typ string, content any) {
	h.t.Helper()
	b, err := json.Marshal(content)
	if err != nil {
		h.t.Fatal(err)
	}
	evt := &event.Event{Sender: sender, Type: event.Type{Type: typ, Class: event.ToDeviceEventType}}
	evt.Content.VeryRaw = b
	h.f.ToDevice(context.Background(), evt)
}

// peer is a minimal MSC3898 client: a pion connection that publishes
// synthetic VP8 and Opus and signals over the data channel.
type peer struct {
	t      *testing.T
	user   id.UserID
	device id.DeviceID
	pc     *webrtc.PeerConnection
	dc     *webrtc.DataChannel
	callID string
	stop   chan struct{}
	done   chan struct{}

	mu       sync.Mutex
	dcMsgs   []DCMessage
	received map[string]*atomic.Int64 // by remote track ID, and by "stream/track"
}

func (h *harness) join(user id.UserID, device id.DeviceID, confID string) *peer {
	return h.joinWith(user, device, confID, "stream-"+string(device), "cam-"+string(device), "mic-"+string(device))
}

// joinWith joins with the given stream and track IDs.
func (h *harness) joinWith(user id.UserID, device id.DeviceID, confID, stream, cam, mic string) *peer {
	h.member(user, device, confID)
	return h.call(user, device, confID, stream, cam, mic, nil)
}

// call makes the peer and invites the focus; between the invite and its
// answer it runs meanwhile.
func (h *harness) call(user id.UserID, device id.DeviceID, confID, stream, cam, mic string, meanwhile func(*peer)) *peer {
	t := h.t
	api, err := testclient.NewAPI()
	if err != nil {
		t.Fatal(err)
	}
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	p := &peer{t: t, user: user, device: device, pc: pc, callID: "call-" + string(device),
		stop: make(chan struct{}), done: make(chan struct{}), received: map[string]*atomic.Int64{}}
	t.Cleanup(p.close)
	video, _ := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, cam, stream)
	audio, _ := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, mic, stream)
	for _, tr := range []webrtc.TrackLocal{video, audio} {
		if _, err := pc.AddTransceiverFromTrack(tr, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendrecv}); err != nil {
			t.Fatal(err)
		}
	}
	p.dc, err = pc.CreateDataChannel(DataChannelLabel, nil)
	if err != nil {
		t.Fatal(err)
	}
	p.dc.OnMessage(func(m webrtc.DataChannelMessage) { p.onDC(m.Data) })
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		p.mu.Lock()
		n := &atomic.Int64{}
		p.received[tr.ID()] = n
		p.received[tr.StreamID()+"/"+tr.ID()] = n
		p.mu.Unlock()
		buf := make([]byte, 1500)
		for {
			if _, _, err := tr.Read(buf); err != nil {
				return
			}
			n.Add(1)
		}
	})
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	<-gathered
	inv := &Invite{
		CallBase: CallBase{CallID: p.callID, ConfID: confID, PartyID: string(device), DeviceID: device, SenderSessionID: "s-" + string(device), Version: "1"},
		Lifetime: 60000,
		Offer:    SessionDescription{Type: event.CallDataTypeOffer, SDP: pc.LocalDescription().SDP},
	}
	inv.SetSeq(0)
	h.toDevice(user, TypeInvite.Type, inv)
	if meanwhile != nil {
		meanwhile(p)
	}
	var ans Answer
	if err := json.Unmarshal(h.sender.wait(t, device, TypeAnswer.Type), &ans); err != nil {
		t.Fatal(err)
	}
	if ans.Seq == nil || *ans.Seq != 0 || ans.DestSessionID != "s-"+string(device) || ans.PartyID != string(focusDev) {
		t.Fatalf("answer addressing: %+v", ans.CallBase)
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: ans.Answer.SDP}); err != nil {
		t.Fatal(err)
	}
	go p.sendMedia(video, audio)
	p.waitFor("the data channel to open", func() bool { return p.dc.ReadyState() == webrtc.DataChannelStateOpen })
	return p
}

func (p *peer) sendMedia(video, audio *webrtc.TrackLocalStaticRTP) {
	defer close(p.done)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for seq := uint16(0); ; seq++ {
		select {
		case <-p.stop:
			return
		case <-tick.C:
		}
		m := testclient.Marker{Counter: uint32(seq), Sent: time.Now()}
		_ = video.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, Marker: true, SequenceNumber: seq, Timestamp: uint32(seq) * 1800}, Payload: testclient.AppendVP8(nil, true, true, 200, m)})
		_ = audio.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: uint32(seq) * 960}, Payload: testclient.AppendOpus(nil, 60, m)})
	}
}

func (p *peer) closed() bool {
	select {
	case <-p.stop:
		return true
	default:
		return false
	}
}

func (p *peer) close() {
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	_ = p.pc.Close()
}

// onDC answers pings and the focus's offers, and keeps every message.
func (p *peer) onDC(raw []byte) {
	var env DCMessage
	if err := json.Unmarshal(raw, &env); err != nil {
		p.t.Errorf("focus sent a malformed data-channel message: %v", err)
		return
	}
	p.mu.Lock()
	p.dcMsgs = append(p.dcMsgs, env)
	p.mu.Unlock()
	msg, err := ParseDataChannel(raw)
	if err != nil {
		p.t.Errorf("focus sent an invalid data-channel message: %v", err)
		return
	}
	switch m := msg.(type) {
	case *Ping:
		p.sendDC(&Pong{})
	case *Negotiate:
		if m.Description.Type != event.CallDataTypeOffer {
			return
		}
		go func() { // off pion's callback goroutine
			if p.closed() {
				return
			}
			if err := p.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: m.Description.SDP}); err != nil {
				if !p.closed() {
					p.t.Errorf("apply the focus's offer: %v", err)
				}
				return
			}
			ans, err := p.pc.CreateAnswer(nil)
			if err == nil {
				err = p.pc.SetLocalDescription(ans)
			}
			if err != nil && !p.closed() {
				p.t.Errorf("answer the focus's offer: %v", err)
				return
			}
			p.sendDC(&Negotiate{Description: SessionDescription{Type: event.CallDataTypeAnswer, SDP: p.pc.LocalDescription().SDP}})
		}()
	}
}

func (p *peer) sendDC(m DCContent) {
	b, err := MarshalDataChannel(m)
	if err != nil {
		p.t.Fatal(err)
	}
	if err := p.dc.Send(b); err != nil && p.dc.ReadyState() == webrtc.DataChannelStateOpen {
		p.t.Errorf("send %s: %v", m.DCType(), err)
	}
}

// available returns the newest stream metadata the focus announced.
func (p *peer) lastMetadata() map[string][]string {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := len(p.dcMsgs) - 1; i >= 0; i-- {
		if p.dcMsgs[i].Type == DCMetadataChanged {
			var m MetadataChanged
			_ = json.Unmarshal(p.dcMsgs[i].Content, &m)
			out := map[string][]string{}
			for sid, s := range m.Metadata {
				if s.UserID == "" || s.DeviceID == "" {
					p.t.Errorf("stream %s lacks its publisher: %+v", sid, s)
				}
				for tid := range s.Tracks {
					out[sid] = append(out[sid], tid)
				}
			}
			return out
		}
	}
	return nil
}

func (p *peer) packets(track string) int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	if n := p.received[track]; n != nil {
		return n.Load()
	}
	return 0
}

func (p *peer) waitFor(what string, cond func() bool) {
	p.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			p.t.Fatalf("%s: timed out waiting for %s", p.device, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestCallSubscribeAndMembershipEnd(t *testing.T) {
	h := newHarness(t)
	a := h.join("@a:hs", "A", "conf")
	b := h.join("@b:hs", "B", "conf")

	// A learns of B's stream once B's tracks arrive, and subscribes.
	a.waitFor("B's stream", func() bool { return len(a.lastMetadata()["stream-B"]) == 2 })
	a.sendDC(&TrackSubscription{Subscribe: []SubscribeTrack{{StreamID: "stream-B", TrackID: "cam-B"}, {StreamID: "stream-B", TrackID: "mic-B"}}})
	a.waitFor("B's media", func() bool { return a.packets("cam-B") > 20 && a.packets("mic-B") > 20 })
	a.waitFor("pings", func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		for _, m := range a.dcMsgs {
			if m.Type == DCPing {
				return true
			}
		}
		return false
	})

	// B's membership goes: B's call ends with a hangup, and A is told.
	h.stateEvent("org.matrix.msc3401.call.member", b.user, "_@b:hs_B_m.call", `{}`)
	var hang Hangup
	if err := json.Unmarshal(h.sender.wait(t, "B", TypeHangup.Type), &hang); err != nil {
		t.Fatal(err)
	}
	if hang.Reason != ReasonMembershipEnded || hang.CallID != b.callID {
		t.Fatalf("hangup %+v", hang)
	}
	a.waitFor("B's stream to go", func() bool { md := a.lastMetadata(); return md != nil && len(md["stream-B"]) == 0 })
	if c := h.sfu.Conference(conferenceID(callRoom, "conf")); c == nil || len(c.Participants()) != 1 {
		t.Fatal("B is still in the conference")
	}
}

func TestInviteRejections(t *testing.T) {
	h := newHarness(t)
	base := func(device string) CallBase {
		b := CallBase{CallID: "c-" + device, ConfID: "conf", PartyID: device, DeviceID: id.DeviceID(device), SenderSessionID: "s", Version: "1"}
		b.SetSeq(0)
		return b
	}
	// Not a member of the call.
	h.toDevice("@stranger:hs", TypeInvite.Type, &Invite{CallBase: base("X"), Offer: SessionDescription{Type: "offer", SDP: "v=0"}})
	var hang Hangup
	if err := json.Unmarshal(h.sender.wait(t, "X", TypeHangup.Type), &hang); err != nil || hang.Reason != ReasonNotMember {
		t.Fatalf("stranger: %+v %v", hang, err)
	}
	// A member of another call.
	h.member("@m:hs", "M", "other-conf")
	h.toDevice("@m:hs", TypeInvite.Type, &Invite{CallBase: base("M"), Offer: SessionDescription{Type: "offer", SDP: "v=0"}})
	if err := json.Unmarshal(h.sender.wait(t, "M", TypeHangup.Type), &hang); err != nil || hang.Reason != ReasonNotMember {
		t.Fatalf("member of another call: %+v %v", hang, err)
	}
	// A member with a broken offer.
	h.member("@g:hs", "G", "conf")
	h.toDevice("@g:hs", TypeInvite.Type, &Invite{CallBase: base("G"), Offer: SessionDescription{Type: "offer", SDP: "garbage"}})
	if err := json.Unmarshal(h.sender.wait(t, "G", TypeHangup.Type), &hang); err != nil || hang.Reason != ReasonInvalidOffer {
		t.Fatalf("broken offer: %+v %v", hang, err)
	}
	// A malformed invite that names its call is answered; one that does
	// not is only logged.
	h.toDevice("@g:hs", TypeInvite.Type, map[string]any{"call_id": "c-bad", "party_id": "Q", "device_id": "Q"})
	if err := json.Unmarshal(h.sender.wait(t, "Q", TypeHangup.Type), &hang); err != nil || hang.Reason != "invalid_message" {
		t.Fatalf("malformed invite: %+v %v", hang, err)
	}
	h.toDevice("@g:hs", TypeCandidates.Type, map[string]any{"call_id": "nope", "party_id": "G", "device_id": "G", "candidates": []any{}})
	h.toDevice("@g:hs", "m.room_key", map[string]any{})
	h.f.mu.Lock()
	n := len(h.f.calls)
	h.f.mu.Unlock()
	if n != 0 {
		t.Fatalf("rejected invites left %d calls", n)
	}
}

// renegotiate sends the client's own offer over the data channel and
// applies the focus's answer.
func (p *peer) renegotiate(meta map[string]any) {
	p.t.Helper()
	offer, err := p.pc.CreateOffer(nil)
	if err != nil {
		p.t.Fatal(err)
	}
	if err := p.pc.SetLocalDescription(offer); err != nil {
		p.t.Fatal(err)
	}
	b, _ := json.Marshal(map[string]any{"type": DCNegotiate, "content": map[string]any{
		"description": map[string]string{"type": "offer", "sdp": p.pc.LocalDescription().SDP}, "sdp_stream_metadata": meta}})
	before := p.countDC(DCNegotiate)
	if err := p.dc.Send(b); err != nil {
		p.t.Fatal(err)
	}
	p.waitFor("the focus's answer", func() bool { return p.countDC(DCNegotiate) > before })
	// The answer is the latest negotiate message; other messages (layer
	// demand, speakers) may have come after it.
	p.mu.Lock()
	var last DCMessage
	for i := len(p.dcMsgs) - 1; i >= 0; i-- {
		if p.dcMsgs[i].Type == DCNegotiate {
			last = p.dcMsgs[i]
			break
		}
	}
	p.mu.Unlock()
	var ans Negotiate
	if err := json.Unmarshal(last.Content, &ans); err != nil || ans.Description.Type != event.CallDataTypeAnswer {
		p.t.Fatalf("focus's reply to an offer: %s %v", last.Content, err)
	}
	if err := p.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: ans.Description.SDP}); err != nil {
		p.t.Fatal(err)
	}
}

func (p *peer) countDC(typ string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, m := range p.dcMsgs {
		if m.Type == typ {
			n++
		}
	}
	return n
}

func TestScreenShareAndUnsubscribe(t *testing.T) {
	h := newHarness(t)
	a := h.join("@a:hs", "A", "conf")
	b := h.join("@b:hs", "B", "conf")

	// B adds a screen share mid-call and offers it over the data channel.
	screen, _ := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "screen-B", "share-B")
	if _, err := b.pc.AddTransceiverFromTrack(screen, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
		t.Fatal(err)
	}
	b.renegotiate(map[string]any{
		"stream-B": map[string]any{"purpose": "m.usermedia", "audio_muted": false, "video_muted": false},
		"share-B":  map[string]any{"purpose": "m.screenshare", "audio_muted": true, "video_muted": false},
	})
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for seq := uint16(0); ; seq++ {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			_ = screen.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, Marker: true, SequenceNumber: seq, Timestamp: uint32(seq) * 1800},
				Payload: testclient.AppendVP8(nil, true, true, 200, testclient.Marker{Counter: uint32(seq), Sent: time.Now()})})
		}
	}()
	a.waitFor("B's screen share", func() bool { return len(a.lastMetadata()["share-B"]) == 1 })
	a.mu.Lock()
	var purpose string
	for i := len(a.dcMsgs) - 1; i >= 0 && purpose == ""; i-- {
		var m MetadataChanged
		if a.dcMsgs[i].Type == DCMetadataChanged && json.Unmarshal(a.dcMsgs[i].Content, &m) == nil {
			purpose = string(m.Metadata["share-B"].Purpose)
		}
	}
	a.mu.Unlock()
	if purpose != "m.screenshare" {
		t.Fatalf("screen share announced with purpose %q", purpose)
	}
	a.sendDC(&TrackSubscription{Subscribe: []SubscribeTrack{{StreamID: "share-B", TrackID: "screen-B"}, {StreamID: "stream-B", TrackID: "cam-B"}}})
	a.waitFor("the screen share", func() bool { return a.packets("screen-B") > 20 && a.packets("cam-B") > 20 })

	// Unsubscribing stops the packets of that track only.
	a.sendDC(&TrackSubscription{Unsubscribe: []UnsubscribeTrack{{StreamID: "stream-B", TrackID: "cam-B"}}})
	time.Sleep(300 * time.Millisecond)
	cam, scr := a.packets("cam-B"), a.packets("screen-B")
	time.Sleep(500 * time.Millisecond)
	if a.packets("cam-B") != cam {
		t.Fatal("packets of an unsubscribed track still arrive")
	}
	if a.packets("screen-B") <= scr {
		t.Fatal("the remaining subscription stopped")
	}
}

// Two clients that use the same stream and track IDs must not collide:
// the second one's stream is announced under another ID, and a third
// client can subscribe to both and gets both.
func TestStreamIDCollision(t *testing.T) {
	h := newHarness(t)
	h.joinWith("@a:hs", "A", "conf", "media", "video", "audio")
	h.joinWith("@b:hs", "B", "conf", "media", "video", "audio")
	c := h.join("@c:hs", "C", "conf")
	var streams map[string][]string
	c.waitFor("both streams", func() bool { streams = c.lastMetadata(); return len(streams) == 2 })
	var refs []SubscribeTrack
	for sid, tracks := range streams {
		for _, tid := range tracks {
			refs = append(refs, SubscribeTrack{StreamID: sid, TrackID: tid})
		}
	}
	if _, ok := streams["media"]; !ok {
		t.Fatalf("the first publisher's stream ID was not kept: %v", streams)
	}
	if len(refs) != 4 {
		t.Fatalf("announced %v, want two streams of two tracks", streams)
	}
	c.sendDC(&TrackSubscription{Subscribe: refs})
	// Each publisher's tracks arrive under its own announced stream.
	c.waitFor("four tracks from two publishers", func() bool {
		for _, r := range refs {
			if c.packets(r.StreamID+"/"+r.TrackID) < 10 {
				return false
			}
		}
		return true
	})
}

// An invite may arrive before the membership it needs (the two come by
// different paths): it waits for it, and so do the candidates sent after
// it.
func TestInviteBeforeMembership(t *testing.T) {
	h := newHarness(t)
	p := h.call("@late:hs", "L", "conf", "stream-L", "cam-L", "mic-L", func(p *peer) {
		cands := &Candidates{CallBase: CallBase{CallID: p.callID, ConfID: "conf", PartyID: "L", DeviceID: "L", SenderSessionID: "s-L", Version: "1"},
			Candidates: []Candidate{{Candidate: ""}}}
		cands.SetSeq(1)
		h.toDevice("@late:hs", TypeCandidates.Type, cands)
		time.Sleep(100 * time.Millisecond)
		h.member("@late:hs", "L", "conf")
	})
	p.waitFor("media to flow", func() bool {
		c := h.sfu.Conference(conferenceID(callRoom, "conf"))
		return c != nil && len(c.Tracks()) == 2
	})
}

// A call member on another focus, shown here by the cascade as a proxy
// participant, is announced to local members like a local one: its
// streams with its user and device, purpose and mute state. A proxy
// that is not a Matrix member (a WHIP ingress) is not.
func TestRemoteMemberIsAnnounced(t *testing.T) {
	h := newHarness(t)
	a := h.join("@a:hs", "A", "conf")
	proxy, err := h.sfu.Join(conferenceID(callRoom, "conf"), focus.ParticipantInfo{Identity: "@carol:other.example:DEVC", Role: focus.RoleMember, Origin: "b"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := proxy.Publish(focus.TrackInfo{ID: "mic-C", StreamID: "stream-C", Kind: focus.KindAudio, Source: focus.SourceMicrophone, Codec: focus.Codec{MimeType: "audio/opus", ClockRate: 48000, Channels: 2}}, nil); err != nil {
		t.Fatal(err)
	}
	cam, err := proxy.Publish(focus.TrackInfo{ID: "cam-C", StreamID: "stream-C", Kind: focus.KindVideo, Source: focus.SourceCamera, Codec: focus.Codec{MimeType: "video/VP8", ClockRate: 90000}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	cam.SetMuted(true)
	ingress, err := h.sfu.Join(conferenceID(callRoom, "conf"), focus.ParticipantInfo{Identity: "whip", Role: focus.RoleIngress, Origin: "b"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ingress.Publish(focus.TrackInfo{ID: "v", StreamID: "whip-stream", Kind: focus.KindVideo, Codec: focus.Codec{MimeType: "video/VP8", ClockRate: 90000}}, nil); err != nil {
		t.Fatal(err)
	}

	a.waitFor("carol's stream", func() bool { return len(a.lastMetadata()["stream-C"]) == 2 })
	a.mu.Lock()
	var got metadata.Metadata
	for i := len(a.dcMsgs) - 1; i >= 0 && got == nil; i-- {
		var m MetadataChanged
		if a.dcMsgs[i].Type == DCMetadataChanged && json.Unmarshal(a.dcMsgs[i].Content, &m) == nil {
			got = m.Metadata
		}
	}
	a.mu.Unlock()
	s := got["stream-C"]
	if s.UserID != "@carol:other.example" || s.DeviceID != "DEVC" || s.Purpose != metadata.PurposeUsermedia || !s.VideoMuted || s.AudioMuted {
		t.Errorf("carol's stream = %+v", s)
	}
	if _, ok := got["whip-stream"]; ok {
		t.Errorf("a WHIP ingress on another focus is announced: %+v", got)
	}
}
