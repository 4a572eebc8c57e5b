package matrixclient

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"go.uber.org/goleak"
	"maunium.net/go/mautrix/id"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const testRoom = id.RoomID("!room:hs")

// bob's stream, as the fake focus announces it.
var bobMeta = Metadata{"bob-stream": {
	UserID: "@bob:hs", DeviceID: "BOBDEV", Purpose: PurposeUserMedia,
	Tracks: map[string]TrackMeta{
		"bob-video": {Kind: "video", Width: 320, Height: 180},
		"bob-audio": {Kind: "audio"},
	},
}}

func newTestClient(t *testing.T, hs *fakeHS, opts Options) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := New(ctx, hs.srv.URL, hs.user("@alice:hs", "ALICEDEV"), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(c.Transcript())
		}
		if err := c.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return c
}

// decode unmarshals a recorded message into a generic map.
func decode(t *testing.T, raw json.RawMessage) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("decode %s: %v", raw, err)
	}
	return m
}

// TestCallFlow drives the whole client against the fake focus: the
// invite's fields, trickled candidates, select_answer, ping, subscribe and
// media, unsubscribe, a screen share by renegotiation, and the hangup.
func TestCallFlow(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	hs := newFakeHS(t)
	f := newFakeFocus(t, hs, bobMeta)
	c := newTestClient(t, hs, Options{StreamID: "alice-stream", VideoTrackID: "alice-video", AudioTrackID: "alice-audio"})

	if err := c.JoinCall(ctx, testRoom, "conf1", f.focus()); err != nil {
		t.Fatal(err)
	}

	// Membership: per-device, keyed by user and device, naming the focus.
	st := hs.states()
	if len(st) != 1 || st[0].typ != TypeCallMember.Type || st[0].key != "_@alice:hs_ALICEDEV_m.call" || st[0].room != testRoom {
		t.Fatalf("state events = %+v", st)
	}
	mem := decode(t, st[0].content)
	wantFocus := map[string]any{"type": FocusType, "user_id": "@focus:hs", "device_id": "FOCUSDEV"}
	if mem["call_id"] != "conf1" || mem["device_id"] != "ALICEDEV" || mem["application"] != "m.call" ||
		!jsonEqual(mem["focus_active"], wantFocus) || !jsonEqual(mem["foci_preferred"], []any{wantFocus}) {
		t.Errorf("membership = %s", st[0].content)
	}

	// The invite as the plan writes it.
	invites := f.messages(TypeInvite.Type)
	if len(invites) != 1 {
		t.Fatalf("focus got %d invites", len(invites))
	}
	inv := decode(t, invites[0])
	for k, want := range map[string]any{
		"conf_id": "conf1", "party_id": "ALICEDEV", "device_id": "ALICEDEV", "dest_session_id": "",
		"version": "1", "seq": 0.0, "lifetime": 60000.0, "call_id": c.CallID(),
	} {
		if inv[k] != want {
			t.Errorf("invite %s = %v, want %v", k, inv[k], want)
		}
	}
	if s, _ := inv["sender_session_id"].(string); s == "" {
		t.Error("invite has no sender_session_id")
	}
	if o, _ := inv["offer"].(map[string]any); o["type"] != "offer" || !strings.Contains(o["sdp"].(string), "webrtc-datachannel") {
		t.Errorf("invite offer = %v", inv["offer"])
	}
	wantMeta := map[string]any{"alice-stream": map[string]any{
		"user_id": "@alice:hs", "device_id": "ALICEDEV", "purpose": "m.usermedia", "audio_muted": false, "video_muted": false,
		"tracks": map[string]any{
			"alice-video": map[string]any{"kind": "video", "width": 640.0, "height": 360.0},
			"alice-audio": map[string]any{"kind": "audio"},
		},
	}}
	if !jsonEqual(inv[metadataKey], wantMeta) {
		t.Errorf("invite metadata = %v", inv[metadataKey])
	}

	// Trickled candidates follow with seq 1, 2, …, the last one empty;
	// select_answer comes in between with its own seq.
	waitCond(ctx, t, "end of candidates", func() bool {
		cs := f.messages(TypeCandidates.Type)
		if len(cs) == 0 {
			return false
		}
		last := decode(t, cs[len(cs)-1])["candidates"].([]any)
		return last[len(last)-1].(map[string]any)["candidate"] == ""
	})
	var seqs []float64
	for _, m := range f.msgs {
		if m.via == ViaToDevice {
			seqs = append(seqs, decode(t, m.content)["seq"].(float64))
		}
	}
	for i, s := range seqs {
		if s != float64(i) {
			t.Errorf("to-device seqs = %v, want 0, 1, 2, …", seqs)
			break
		}
	}
	if sa := f.messages(TypeSelectAnswer.Type); len(sa) != 1 || decode(t, sa[0])["selected_party_id"] != "FOCUSDEV" ||
		decode(t, sa[0])["dest_session_id"] != fakeFocusSession {
		t.Errorf("select_answer = %s", sa)
	}

	// The announced streams, and a pong for the ping.
	if got := c.AvailableStreams(); len(got) != 1 || got[0].ID != "bob-stream" || got[0].UserID != "@bob:hs" || len(got[0].Refs()) != 2 {
		t.Errorf("available = %+v", got)
	}
	waitCond(ctx, t, "a pong", func() bool { return len(f.messages(DCPong)) == 1 })

	// Subscribe: the focus gets the sizes it announced and offers; media
	// arrives whole and in order, starting at a keyframe.
	video := TrackRef{"bob-stream", "bob-video"}
	audio := TrackRef{"bob-stream", "bob-audio"}
	if err := c.Subscribe(ctx, video, audio); err != nil {
		t.Fatal(err)
	}
	sub := decode(t, waitOne(ctx, t, f, DCTrackSubscription))
	if !jsonEqual(sub["subscribe"], []any{
		map[string]any{"stream_id": "bob-stream", "track_id": "bob-video", "width": 320.0, "height": 180.0},
		map[string]any{"stream_id": "bob-stream", "track_id": "bob-audio"},
	}) {
		t.Errorf("track_subscription = %v", sub)
	}
	for _, ref := range []TrackRef{video, audio} {
		if err := c.WaitPackets(ctx, ref, 50); err != nil {
			t.Fatal(err)
		}
	}
	rt, _ := c.ReceivedTrack(video)
	if s := rt.Stats; !s.FirstKeyframe || s.Seq.Gaps != 0 || s.Corrupt != 0 || s.CounterGaps != 0 || rt.Kind != webrtc.RTPCodecTypeVideo {
		t.Errorf("video received = %+v", rt)
	}

	// Our own media reaches the focus.
	waitCond(ctx, t, "alice's video at the focus", func() bool {
		s, ok := f.receivedStats(TrackRef{"alice-stream", "alice-video"})
		return ok && s.Packets > 20 && s.Intact == s.Packets
	})

	// Unsubscribe: the audio stops.
	if err := c.Unsubscribe(ctx, audio); err != nil {
		t.Fatal(err)
	}
	waitCond(ctx, t, "the answer removing the audio", func() bool { return c.Negotiation().AnswersSent >= 2 })
	time.Sleep(200 * time.Millisecond)
	before, _ := c.ReceivedTrack(audio)
	time.Sleep(300 * time.Millisecond)
	after, _ := c.ReceivedTrack(audio)
	if after.Stats.Packets != before.Stats.Packets {
		t.Errorf("audio still arriving after unsubscribe: %d then %d packets", before.Stats.Packets, after.Stats.Packets)
	}

	// A screen share by renegotiation: the offer carries its metadata and
	// its media reaches the focus.
	ss, err := c.AddScreenShare(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var offer map[string]any
	for _, raw := range f.messages(DCNegotiate) {
		if m := decode(t, raw); m["description"].(map[string]any)["type"] == "offer" {
			offer = m
		}
	}
	meta, _ := offer["sdp_stream_metadata"].(map[string]any)
	if s, _ := meta[ss.StreamID].(map[string]any); s["purpose"] != "m.screenshare" || len(meta) != 2 {
		t.Errorf("screen-share offer metadata = %v", meta)
	}
	waitCond(ctx, t, "the screen share at the focus", func() bool {
		s, ok := f.receivedStats(ss)
		return ok && s.Packets > 20 && s.FirstKeyframe
	})

	// Hang up: the reason and the next seq.
	if err := c.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	h := f.messages(TypeHangup.Type)
	if len(h) != 1 || decode(t, h[0])["reason"] != "user_hangup" {
		t.Errorf("hangup = %s", h)
	}
	if st := hs.states(); len(st) != 2 || string(st[1].content) != "{}" {
		t.Errorf("membership after leaving = %+v", st)
	}
	if p := c.Problems(); len(p) != 0 {
		t.Errorf("problems: %q", p)
	}
}

// TestGlare: the focus's offer crosses the client's screen-share offer.
// The client drops its own, answers the focus, and offers again; the
// focus's new m-line does not land on the screen share's transceiver.
func TestGlare(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	hs := newFakeHS(t)
	f := newFakeFocus(t, hs, Metadata{"cross": {UserID: "@bob:hs", DeviceID: "BOBDEV", Purpose: PurposeUserMedia,
		Tracks: map[string]TrackMeta{"cross-audio": {Kind: "audio"}}}})
	f.crossFirstOffer = true
	c := newTestClient(t, hs, Options{})
	if err := c.JoinCall(ctx, testRoom, "conf1", f.focus()); err != nil {
		t.Fatal(err)
	}
	ss, err := c.AddScreenShare(ctx)
	if err != nil {
		t.Fatal(err)
	}
	n := c.Negotiation()
	if n.Glares != 1 || n.OffersSent != 2 || n.AnswersReceived != 1 || n.OffersReceived != 1 || n.StaleAnswers != 0 {
		t.Errorf("negotiation = %+v", n)
	}
	waitCond(ctx, t, "the screen share at the focus", func() bool {
		s, ok := f.receivedStats(ss)
		return ok && s.Packets > 20
	})
	if err := c.WaitPackets(ctx, TrackRef{"cross", "cross-audio"}, 20); err != nil {
		t.Fatal(err)
	}
	for _, lt := range c.LocalTracks() {
		if lt.TrackRef == ss && lt.Mid != "c1" {
			t.Errorf("screen share MID = %q, want c1", lt.Mid)
		}
	}
	if p := c.Problems(); len(p) != 0 {
		t.Errorf("problems: %q", p)
	}
}

// TestRejectedInvite: a hangup instead of an answer ends Invite with the
// focus's reason.
func TestRejectedInvite(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	hs := newFakeHS(t)
	f := newFakeFocus(t, hs, nil)
	f.reject = "not_a_member"
	c := newTestClient(t, hs, Options{})
	err := c.Invite(ctx, testRoom, "conf1", f.focus())
	var he *HangupError
	if !errors.As(err, &he) || he.Reason != "not_a_member" {
		t.Fatalf("Invite = %v, want a hangup with reason not_a_member", err)
	}
	if len(hs.states()) != 0 {
		t.Error("Invite published a membership")
	}
	if err := c.Subscribe(ctx); !errors.Is(err, ErrNoCall) {
		t.Errorf("Subscribe after the hangup = %v, want ErrNoCall", err)
	}
}

// TestInviteTimeout: an invite nobody answers ends with the context, and
// the client hangs up the call it offered.
func TestInviteTimeout(t *testing.T) {
	hs := newFakeHS(t)
	f := newFakeFocus(t, hs, nil)
	f.silent = true
	c := newTestClient(t, hs, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if err := c.Invite(ctx, testRoom, "conf1", f.focus()); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Invite = %v, want the context's deadline", err)
	}
	h := f.messages(TypeHangup.Type)
	if len(h) != 1 || decode(t, h[0])["reason"] != "invite_timeout" || decode(t, h[0])["call_id"] != c.CallID() {
		t.Errorf("hangups = %s", h)
	}
}

// TestCandidatesInOffer: with the option, the offer carries the
// candidates and no m.call.candidates is sent.
func TestCandidatesInOffer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	hs := newFakeHS(t)
	f := newFakeFocus(t, hs, nil)
	c := newTestClient(t, hs, Options{CandidatesInOffer: true, LegacyMembership: true})
	if err := c.JoinCall(ctx, testRoom, "conf1", f.focus()); err != nil {
		t.Fatal(err)
	}
	inv := decode(t, f.messages(TypeInvite.Type)[0])
	if !strings.Contains(inv["offer"].(map[string]any)["sdp"].(string), "a=candidate:") {
		t.Error("offer carries no candidates")
	}
	if n := len(f.messages(TypeCandidates.Type)); n != 0 {
		t.Errorf("%d m.call.candidates sent", n)
	}
	st := hs.states()
	if len(st) != 1 || st[0].typ != TypeLegacyCallMember.Type || st[0].key != "@alice:hs" {
		t.Fatalf("state = %+v", st)
	}
	dev := decode(t, st[0].content)["m.calls"].([]any)[0].(map[string]any)["m.devices"].([]any)[0].(map[string]any)
	if dev["device_id"] != "ALICEDEV" || !jsonEqual(dev["m.foci.active"], []any{map[string]any{"user_id": "@focus:hs", "device_id": "FOCUSDEV"}}) {
		t.Errorf("legacy membership device = %v", dev)
	}
	if err := c.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	if st := hs.states(); string(st[1].content) != `{"m.calls":[]}` {
		t.Errorf("legacy leave = %s", st[1].content)
	}
}

func waitCond(ctx context.Context, t *testing.T, what string, cond func() bool) {
	t.Helper()
	if err := waitFor(ctx, what, cond); err != nil {
		t.Fatal(err)
	}
}

func waitOne(ctx context.Context, t *testing.T, f *fakeFocus, typ string) json.RawMessage {
	t.Helper()
	var m []json.RawMessage
	waitCond(ctx, t, typ+" at the focus", func() bool {
		m = f.messages(typ)
		return len(m) > 0
	})
	return m[len(m)-1]
}

func jsonEqual(a, b any) bool {
	ja, err1 := json.Marshal(a)
	jb, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && string(ja) == string(jb)
}
