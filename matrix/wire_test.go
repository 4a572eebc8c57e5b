package matrix

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix/event"

	"github.com/focus-sfu/focus/metadata"
)

// Examples of every message, as written in docs/matrix.md. Each is in the
// canonical form the focus writes, so it must survive parse + marshal
// unchanged.
var toDeviceExamples = map[string]string{
	"m.call.invite": `{"call_id":"c1","conf_id":"conf1","party_id":"DEVICEA","device_id":"DEVICEA",
		"sender_session_id":"sessA","dest_session_id":"","version":"1","seq":0,"lifetime":60000,
		"offer":{"type":"offer","sdp":"v=0\r\n"},
		"org.matrix.msc3077.sdp_stream_metadata":{"streamA":{"user_id":"@a:hs","device_id":"DEVICEA",
			"purpose":"m.usermedia","audio_muted":false,"video_muted":false,
			"tracks":{"audioA":{"kind":"audio"},"videoA":{"kind":"video","width":640,"height":480}}}}}`,
	"m.call.answer": `{"call_id":"c1","conf_id":"conf1","party_id":"FOCUSDEV","device_id":"FOCUSDEV",
		"sender_session_id":"focussess","dest_session_id":"sessA","version":"1","seq":0,
		"answer":{"type":"answer","sdp":"v=0\r\n"},
		"org.matrix.msc3077.sdp_stream_metadata":{"streamB":{"user_id":"@b:hs","device_id":"DEVICEB",
			"purpose":"m.usermedia","audio_muted":false,"video_muted":true,
			"tracks":{"videoB":{"kind":"video","width":1280,"height":720}}}}}`,
	"m.call.candidates": `{"call_id":"c1","conf_id":"conf1","party_id":"DEVICEA","device_id":"DEVICEA",
		"sender_session_id":"sessA","dest_session_id":"focussess","version":"1","seq":1,
		"candidates":[{"candidate":"candidate:1 1 udp 2122260223 192.0.2.1 50000 typ host","sdpMid":"0","sdpMLineIndex":0},
			{"candidate":""}]}`,
	"m.call.select_answer": `{"call_id":"c1","conf_id":"conf1","party_id":"DEVICEA","device_id":"DEVICEA",
		"sender_session_id":"sessA","dest_session_id":"focussess","version":"1","seq":2,"selected_party_id":"FOCUSDEV"}`,
	"m.call.hangup": `{"call_id":"c1","conf_id":"conf1","party_id":"DEVICEA","device_id":"DEVICEA",
		"sender_session_id":"sessA","dest_session_id":"focussess","version":"1","seq":3,"reason":"user_hangup"}`,
}

var dataChannelExamples = map[string]string{
	DCTrackSubscription: `{"type":"m.call.track_subscription","content":{
		"subscribe":[{"stream_id":"streamB","track_id":"videoB","width":640,"height":360}],
		"unsubscribe":[{"stream_id":"streamC","track_id":"videoC"}]}}`,
	DCNegotiate: `{"type":"m.call.negotiate","content":{"description":{"type":"offer","sdp":"v=0\r\n"},
		"sdp_stream_metadata":{"streamA":{"purpose":"m.screenshare","audio_muted":false,"video_muted":false,
			"tracks":{"screenA":{"kind":"video","width":1920,"height":1080}}}}}}`,
	DCMetadataChanged: `{"type":"m.call.sdp_stream_metadata_changed","content":{
		"sdp_stream_metadata":{"streamA":{"purpose":"m.usermedia","audio_muted":true,"video_muted":false}}}}`,
	DCPing: `{"type":"m.call.ping","content":{}}`,
	DCPong: `{"type":"m.call.pong","content":{}}`,
	DCActiveSpeakers: `{"type":"org.matrix.msc3898.call.active_speakers","content":{"speakers":[
		{"user_id":"@b:hs","device_id":"DEVICEB","stream_id":"streamB","track_id":"audioB","level":0.42},
		{"user_id":"@a:hs","device_id":"DEVICEA","stream_id":"streamA","track_id":"audioA","level":0.1}]}}`,
	DCSubscriptionState: `{"type":"org.matrix.msc3898.call.subscription_state","content":{
		"stream_id":"streamB","track_id":"videoB","paused":true}}`,
	DCPublishLayers: `{"type":"org.matrix.msc3898.call.publish_layers","content":{"stream_id":"streamA","track_id":"videoA",
		"layers":[{"rid":"q","active":true},{"rid":"h","active":true},{"rid":"f","active":false}]}}`,
}

func wireJSONEqual(t *testing.T, got, want []byte) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("got invalid JSON %s: %v", got, err)
	}
	if err := json.Unmarshal(want, &w); err != nil {
		t.Fatalf("want invalid JSON %s: %v", want, err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Fatalf("JSON differs\n got %s\nwant %s", got, want)
	}
}

func TestToDeviceExamplesRoundTrip(t *testing.T) {
	for typ, raw := range toDeviceExamples {
		t.Run(typ, func(t *testing.T) {
			msg, err := ParseToDevice(typ, json.RawMessage(raw))
			if err != nil {
				t.Fatal(err)
			}
			if got := msg.(ToDeviceContent).EventType().Type; got != typ {
				t.Fatalf("EventType %q, want %q", got, typ)
			}
			out, err := json.Marshal(msg)
			if err != nil {
				t.Fatal(err)
			}
			wireJSONEqual(t, out, []byte(raw))
		})
	}
}

func TestDataChannelExamplesRoundTrip(t *testing.T) {
	for typ, raw := range dataChannelExamples {
		t.Run(typ, func(t *testing.T) {
			msg, err := ParseDataChannel([]byte(raw))
			if err != nil {
				t.Fatal(err)
			}
			out, err := MarshalDataChannel(msg.(DCContent))
			if err != nil {
				t.Fatal(err)
			}
			wireJSONEqual(t, out, []byte(raw))
		})
	}
}

func TestParseInviteFields(t *testing.T) {
	msg, err := ParseToDevice("m.call.invite", json.RawMessage(toDeviceExamples["m.call.invite"]))
	if err != nil {
		t.Fatal(err)
	}
	inv := msg.(*Invite)
	if inv.CallID != "c1" || inv.ConfID != "conf1" || inv.DeviceID != "DEVICEA" || inv.SenderSessionID != "sessA" ||
		inv.Version != "1" || inv.Seq == nil || *inv.Seq != 0 || inv.Lifetime != 60000 || inv.Offer.SDP != "v=0\r\n" {
		t.Fatalf("bad invite %+v", inv)
	}
	want := metadata.Metadata{"streamA": {UserID: "@a:hs", DeviceID: "DEVICEA", Purpose: metadata.PurposeUsermedia,
		Tracks: map[string]metadata.Track{"audioA": {Kind: "audio"}, "videoA": {Kind: "video", Width: 640, Height: 480}}}}
	if !reflect.DeepEqual(inv.Metadata, want) {
		t.Fatalf("metadata %#v", inv.Metadata)
	}
}

func TestVersionNumberOrString(t *testing.T) {
	for _, tc := range []struct{ in, want string }{{`1`, "1"}, {`"1"`, "1"}, {`0`, "0"}, {`null`, ""}, {`"v2"`, "v2"}} {
		raw := `{"call_id":"c","party_id":"p","version":` + tc.in + `,"reason":"user_hangup"}`
		msg, err := ParseToDevice("m.call.hangup", json.RawMessage(raw))
		if err != nil {
			t.Fatalf("%s: %v", tc.in, err)
		}
		h := msg.(*Hangup)
		if h.Version != Version(tc.want) {
			t.Fatalf("%s: version %q, want %q", tc.in, h.Version, tc.want)
		}
	}
	h := Hangup{CallBase: CallBase{CallID: "c", PartyID: "p", Version: "1"}}
	h.SetSeq(4)
	out, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), `"version":"1"`) || !strings.Contains(string(out), `"seq":4`) {
		t.Fatalf("version or seq not written as expected: %s", out)
	}
	if n, err := ProtocolVersion.Int(); err != nil || n != 1 {
		t.Fatalf("ProtocolVersion.Int() = %d, %v", n, err)
	}
}

func TestSeqOptionalOnInputRequiredOnOutput(t *testing.T) {
	msg, err := ParseToDevice("m.call.hangup", json.RawMessage(`{"call_id":"c","party_id":"p"}`))
	if err != nil {
		t.Fatal(err)
	}
	h := msg.(*Hangup)
	if h.Seq != nil {
		t.Fatalf("seq %d, want absent", *h.Seq)
	}
	_, err = json.Marshal(h)
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "m.call.hangup: seq is not set") {
		t.Fatalf("marshal without seq: %v", err)
	}
	for _, v := range []any{Invite{}, Answer{}, Candidates{}, SelectAnswer{}} {
		if _, err := json.Marshal(v); !errors.Is(err, ErrInvalid) {
			t.Fatalf("%T without seq marshalled: %v", v, err)
		}
	}
	// seq 0 is written, not omitted.
	a := Answer{CallBase: CallBase{CallID: "c", PartyID: "F", Version: ProtocolVersion}}
	a.SetSeq(0)
	out, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"seq":0`, `"org.matrix.msc3077.sdp_stream_metadata":{}`, `"dest_session_id":""`, `"conf_id":""`} {
		if !strings.Contains(string(out), want) {
			t.Fatalf("%s missing from %s", want, out)
		}
	}
}

func TestMetadataKeys(t *testing.T) {
	const offer = `"offer":{"type":"offer","sdp":"x"}`
	base := `"call_id":"c","party_id":"p","device_id":"D",` + offer
	tests := []struct {
		name, extra string
		want        metadata.Metadata
	}{
		{"unstable", `,"org.matrix.msc3077.sdp_stream_metadata":{"u":{"purpose":"m.usermedia"}}`, metadata.Metadata{"u": {Purpose: "m.usermedia"}}},
		{"stable", `,"sdp_stream_metadata":{"s":{"purpose":"m.usermedia"}}`, metadata.Metadata{"s": {Purpose: "m.usermedia"}}},
		{"both: unstable wins", `,"sdp_stream_metadata":{"s":{}},"org.matrix.msc3077.sdp_stream_metadata":{"u":{}}`, metadata.Metadata{"u": {}}},
		{"none", ``, metadata.Metadata{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			msg, err := ParseToDevice("m.call.invite", json.RawMessage("{"+base+tc.extra+"}"))
			if err != nil {
				t.Fatal(err)
			}
			if got := msg.(*Invite).Metadata; !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("metadata %#v, want %#v", got, tc.want)
			}
			// Data channel: the same keys are read.
			dc := `{"type":"m.call.negotiate","content":{"description":{"type":"answer","sdp":"x"}` + tc.extra + `}}`
			msg, err = ParseDataChannel([]byte(dc))
			if err != nil {
				t.Fatal(err)
			}
			if got := msg.(*Negotiate).Metadata; !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("negotiate metadata %#v, want %#v", got, tc.want)
			}
		})
	}
	// Written under the stable key on the data channel.
	out, err := MarshalDataChannel(&MetadataChanged{Metadata: metadata.Metadata{"s": {Purpose: "m.usermedia"}}})
	if err != nil {
		t.Fatal(err)
	}
	wireJSONEqual(t, out, []byte(`{"type":"m.call.sdp_stream_metadata_changed","content":{"sdp_stream_metadata":{"s":{"purpose":"m.usermedia","audio_muted":false,"video_muted":false}}}}`))
}

func TestParseToDeviceErrors(t *testing.T) {
	ok := `"call_id":"c","party_id":"p","device_id":"D"`
	tests := []struct {
		typ, raw string
		is       error
		msg      string // exact error text, or a prefix ending in "…"
	}{
		{"m.call.invite", `{` + ok + `,"offer":{"type":"offer","sdp":""}}`, ErrInvalid, "m.call.invite: offer.sdp is empty"},
		{"m.call.invite", `{` + ok + `}`, ErrInvalid, "m.call.invite: offer.type is empty"},
		{"m.call.invite", `{` + ok + `,"offer":{"type":"answer","sdp":"x"}}`, ErrInvalid, `m.call.invite: offer.type is "answer", want ["offer"]`},
		{"m.call.invite", `{"party_id":"p","device_id":"D","offer":{"type":"offer","sdp":"x"}}`, ErrInvalid, "m.call.invite: call_id is empty"},
		{"m.call.invite", `{"call_id":"c","device_id":"D","offer":{"type":"offer","sdp":"x"}}`, ErrInvalid, "m.call.invite: party_id is empty"},
		{"m.call.invite", `{"call_id":"c","party_id":"p","offer":{"type":"offer","sdp":"x"}}`, ErrInvalid, "m.call.invite: device_id is empty"},
		{"m.call.invite", `{` + ok + `,"seq":-1,"offer":{"type":"offer","sdp":"x"}}`, ErrInvalid, "m.call.invite: seq is negative"},
		{"m.call.invite", `{` + ok + `,"lifetime":-5,"offer":{"type":"offer","sdp":"x"}}`, ErrInvalid, "m.call.invite: lifetime is negative"},
		{"m.call.invite", `{` + ok + `,"version":true,"offer":{"type":"offer","sdp":"x"}}`, ErrInvalid, "m.call.invite: invalid message: version is neither a number nor a string"},
		{"m.call.invite", `{` + ok + `,"offer":{"type":"offer","sdp":"x"},"sdp_stream_metadata":{"":{}}}`, ErrInvalid, "m.call.invite: org.matrix.msc3077.sdp_stream_metadata has an empty stream key"},
		{"m.call.invite", `{` + ok + `,"offer":{"type":"offer","sdp":"x"},"sdp_stream_metadata":{"s":{"tracks":{"t":{"width":-1}}}}}`, ErrInvalid, `m.call.invite: org.matrix.msc3077.sdp_stream_metadata["s"].tracks["t"] has a negative width or height`},
		{"m.call.invite", `[]`, ErrInvalid, "m.call.invite: invalid message: …"},
		{"m.call.invite", `{"call_id":`, ErrInvalid, "m.call.invite: invalid message: …"},
		{"m.call.invite", ``, ErrInvalid, "m.call.invite: invalid message: …"},
		{"m.call.invite", `null`, ErrInvalid, "m.call.invite: call_id is empty"},
		{"m.call.answer", `{` + ok + `,"answer":{"type":"answer"}}`, ErrInvalid, "m.call.answer: answer.sdp is empty"},
		{"m.call.candidates", `{` + ok + `}`, ErrInvalid, "m.call.candidates: candidates is missing"},
		{"m.call.candidates", `{` + ok + `,"candidates":[{"candidate":"x","sdpMLineIndex":-1}]}`, ErrInvalid, "m.call.candidates: invalid message: …"},
		{"m.call.candidates", `{` + ok + `,"candidates":{}}`, ErrInvalid, "m.call.candidates: invalid message: …"},
		{"m.call.select_answer", `{` + ok + `}`, ErrInvalid, "m.call.select_answer: selected_party_id is empty"},
		{"m.call.hangup", `{"party_id":"p"}`, ErrInvalid, "m.call.hangup: call_id is empty"},
		{"m.call.reject", `{}`, ErrUnknownType, `unknown message type: to-device "m.call.reject"`},
		{"m.room.encrypted", `{}`, ErrUnknownType, `unknown message type: to-device "m.room.encrypted"`},
		{"m.call.invite", `{"x":"` + strings.Repeat("a", MaxMessageSize) + `"}`, ErrTooLarge, "m.call.invite: message too large: 65544 bytes, limit 65536"},
	}
	for i, tc := range tests {
		t.Run(fmt.Sprintf("%d_%s", i, tc.typ), func(t *testing.T) {
			msg, err := ParseToDevice(tc.typ, json.RawMessage(tc.raw))
			wireCheckErr(t, msg, err, tc.is, tc.msg)
		})
	}
}

func wireCheckErr(t *testing.T, msg any, err, is error, want string) {
	t.Helper()
	if err == nil {
		t.Fatalf("parsed %#v, want error %q", msg, want)
	}
	if msg != nil {
		t.Fatalf("returned %#v with the error", msg)
	}
	if !errors.Is(err, is) {
		t.Fatalf("error %q does not match %v", err, is)
	}
	if prefix, ok := strings.CutSuffix(want, "…"); ok {
		if !strings.HasPrefix(err.Error(), prefix) {
			t.Fatalf("error %q, want prefix %q", err, prefix)
		}
	} else if err.Error() != want {
		t.Fatalf("error %q, want %q", err, want)
	}
}

func wireCandidatesJSON(n int) string {
	c := make([]string, n)
	for i := range c {
		c[i] = `{"candidate":"candidate:1 1 udp 1 192.0.2.1 1 typ host","sdpMid":"0","sdpMLineIndex":0}`
	}
	return `{"call_id":"c","party_id":"p","candidates":[` + strings.Join(c, ",") + `]}`
}

func TestCandidatesBound(t *testing.T) {
	msg, err := ParseToDevice("m.call.candidates", json.RawMessage(wireCandidatesJSON(MaxCandidates)))
	if err != nil {
		t.Fatal(err)
	}
	c := msg.(*Candidates)
	if len(c.Candidates) != MaxCandidates || *c.Candidates[0].SDPMid != "0" || *c.Candidates[0].SDPMLineIndex != 0 {
		t.Fatalf("bad candidates %+v", c.Candidates[0])
	}
	msg, err = ParseToDevice("m.call.candidates", json.RawMessage(wireCandidatesJSON(MaxCandidates+1)))
	wireCheckErr(t, msg, err, ErrInvalid, "m.call.candidates: candidates has 257 entries, more than 256")

	// End of candidates: an empty candidate, null mid and index allowed.
	msg, err = ParseToDevice("m.call.candidates", json.RawMessage(`{"call_id":"c","party_id":"p","candidates":[{"candidate":"","sdpMid":null,"sdpMLineIndex":null}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if end := msg.(*Candidates).Candidates[0]; !end.IsEnd() || end.SDPMid != nil || end.SDPMLineIndex != nil {
		t.Fatalf("bad end of candidates %+v", end)
	}
	// An empty list is allowed and written as [], not null.
	out, err := json.Marshal(Candidates{CallBase: CallBase{CallID: "c", PartyID: "p", Seq: new(int)}})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), `"candidates":[]`) {
		t.Fatalf("nil candidates written as %s", out)
	}
}

func wireSubscriptionJSON(n int, list string) string {
	s := make([]string, n)
	for i := range s {
		s[i] = fmt.Sprintf(`{"stream_id":"s","track_id":"t%d"}`, i)
	}
	return `{"type":"m.call.track_subscription","content":{"` + list + `":[` + strings.Join(s, ",") + `]}}`
}

func TestParseDataChannelErrors(t *testing.T) {
	tests := []struct {
		raw string
		is  error
		msg string
	}{
		{`{"content":{}}`, ErrInvalid, "data channel: type is empty"},
		{`{"type":"m.call.invite","content":{}}`, ErrUnknownType, `unknown message type: data channel "m.call.invite"`},
		{`{"type":"m.call.negotiate","content":{"description":{"type":"pranswer","sdp":"x"}}}`, ErrInvalid, `m.call.negotiate: description.type is "pranswer", want ["offer" "answer"]`},
		{`{"type":"m.call.negotiate","content":{"description":{"type":"offer"}}}`, ErrInvalid, "m.call.negotiate: description.sdp is empty"},
		{`{"type":"m.call.negotiate"}`, ErrInvalid, "m.call.negotiate: description.type is empty"},
		{`{"type":"m.call.sdp_stream_metadata_changed","content":{}}`, ErrInvalid, "m.call.sdp_stream_metadata_changed: sdp_stream_metadata is missing"},
		{`{"type":"m.call.sdp_stream_metadata_changed","content":{"sdp_stream_metadata":{"s":{"tracks":{"":{}}}}}}`, ErrInvalid, `m.call.sdp_stream_metadata_changed: sdp_stream_metadata["s"].tracks has an empty track key`},
		{`{"type":"m.call.track_subscription","content":{"subscribe":[{"stream_id":"s"}]}}`, ErrInvalid, "m.call.track_subscription: subscribe[0].track_id is empty"},
		{`{"type":"m.call.track_subscription","content":{"unsubscribe":[{"track_id":"t"}]}}`, ErrInvalid, "m.call.track_subscription: unsubscribe[0].stream_id is empty"},
		{`{"type":"m.call.track_subscription","content":{"subscribe":[{"stream_id":"s","track_id":"t","width":-2}]}}`, ErrInvalid, "m.call.track_subscription: subscribe[0] has a negative width or height"},
		{`{"type":"m.call.track_subscription","content":{"subscribe":"all"}}`, ErrInvalid, "m.call.track_subscription: invalid message: …"},
		{wireSubscriptionJSON(MaxSubscriptions+1, "subscribe"), ErrInvalid, "m.call.track_subscription: subscribe has 257 entries, more than 256"},
		{wireSubscriptionJSON(MaxSubscriptions+1, "unsubscribe"), ErrInvalid, "m.call.track_subscription: unsubscribe has 257 entries, more than 256"},
		{`{"type":"m.call.ping","content":[]}`, ErrInvalid, "m.call.ping: invalid message: …"},
		{`{"type":"org.matrix.msc3898.call.active_speakers","content":{}}`, ErrInvalid, "org.matrix.msc3898.call.active_speakers: speakers is missing"},
		{`{"type":"org.matrix.msc3898.call.active_speakers","content":{"speakers":[{"stream_id":"s","track_id":"t","level":1.5}]}}`, ErrInvalid,
			"org.matrix.msc3898.call.active_speakers: speakers[0].level is not between 0 and 1"},
		{`{"type":"org.matrix.msc3898.call.active_speakers","content":{"speakers":[{"stream_id":"s","level":0}]}}`, ErrInvalid,
			"org.matrix.msc3898.call.active_speakers: speakers[0].track_id is empty"},
		{`{"type":"org.matrix.msc3898.call.subscription_state","content":{"track_id":"t"}}`, ErrInvalid, "org.matrix.msc3898.call.subscription_state: stream_id is empty"},
		{`{"type":"org.matrix.msc3898.call.publish_layers","content":{"stream_id":"s","track_id":"t"}}`, ErrInvalid,
			"org.matrix.msc3898.call.publish_layers: layers has 0 entries, want 1 to 16"},
		{`{"type":5}`, ErrInvalid, "data channel: invalid message: …"},
		{`not json`, ErrInvalid, "data channel: invalid message: …"},
		{``, ErrInvalid, "data channel: invalid message: …"},
		{`{"type":"m.call.pong","content":{"x":"` + strings.Repeat("a", MaxMessageSize) + `"}}`, ErrTooLarge, "data channel: message too large: 65577 bytes, limit 65536"},
	}
	for i, tc := range tests {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			msg, err := ParseDataChannel([]byte(tc.raw))
			wireCheckErr(t, msg, err, tc.is, tc.msg)
		})
	}
}

func TestParseDataChannelAccepts(t *testing.T) {
	tests := []struct {
		raw  string
		want any
	}{
		{`{"type":"m.call.ping"}`, &Ping{}},
		{`{"type":"m.call.pong","content":null}`, &Pong{}},
		{`{"type":"m.call.pong","content":{"extra":1}}`, &Pong{}},
		{`{"type":"org.matrix.msc3898.call.active_speakers","content":{"speakers":[]}}`, &ActiveSpeakers{Speakers: []ActiveSpeaker{}}},
		{`{"type":"org.matrix.msc3898.call.publish_layers","content":{"stream_id":"s","track_id":"t","layers":[{"active":false}]}}`,
			&PublishLayers{StreamID: "s", TrackID: "t", Layers: []PublishLayer{{}}}},
		{`{"type":"m.call.track_subscription","content":{}}`, &TrackSubscription{}},
		{wireSubscriptionJSON(MaxSubscriptions, "unsubscribe"), nil},
		{`{"type":"m.call.sdp_stream_metadata_changed","content":{"sdp_stream_metadata":{}}}`, &MetadataChanged{Metadata: metadata.Metadata{}}},
		{`{"type":"m.call.sdp_stream_metadata_changed","content":{"org.matrix.msc3077.sdp_stream_metadata":{"s":{}}}}`, &MetadataChanged{Metadata: metadata.Metadata{"s": {}}}},
		{`{"type":"m.call.track_subscription","content":{"subscribe":[{"stream_id":"s","track_id":"t","width":320,"height":180}]}}`,
			&TrackSubscription{Subscribe: []SubscribeTrack{{StreamID: "s", TrackID: "t", Width: 320, Height: 180}}}},
	}
	for i, tc := range tests {
		msg, err := ParseDataChannel([]byte(tc.raw))
		if err != nil {
			t.Fatalf("%d: %v", i, err)
		}
		if tc.want != nil && !reflect.DeepEqual(msg, tc.want) {
			t.Fatalf("%d: got %#v, want %#v", i, msg, tc.want)
		}
	}
}

func TestGoValuesRoundTrip(t *testing.T) {
	mid, idx := "1", uint16(1)
	base := CallBase{CallID: "c", ConfID: "k", PartyID: "F", DeviceID: "F", SenderSessionID: "s1", DestSessionID: "s2", Version: ProtocolVersion}
	base.SetSeq(7)
	md := metadata.Metadata{"s": {UserID: "@u:hs", DeviceID: "D", Purpose: metadata.PurposeScreenshare, VideoMuted: true,
		Tracks: map[string]metadata.Track{"t": {Kind: "video", Width: 2, Height: 4}}}}
	for _, v := range []ToDeviceContent{
		&Invite{CallBase: base, Lifetime: 1, Offer: SessionDescription{Type: "offer", SDP: "o"}, Metadata: md},
		&Answer{CallBase: base, Answer: SessionDescription{Type: "answer", SDP: "a"}, Metadata: md},
		&Candidates{CallBase: base, Candidates: []Candidate{{Candidate: "c", SDPMid: &mid, SDPMLineIndex: &idx, UsernameFragment: &mid}, {}}},
		&SelectAnswer{CallBase: base, SelectedPartyID: "F"},
		&Hangup{CallBase: base, Reason: "ice_failed"},
	} {
		out, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		back, err := ParseToDevice(v.EventType().Type, out)
		if err != nil {
			t.Fatalf("%s: %v", out, err)
		}
		if !reflect.DeepEqual(back, v) {
			t.Fatalf("round trip of %T:\n got %#v\nwant %#v", v, back, v)
		}
	}
	for _, v := range []DCContent{
		&TrackSubscription{Subscribe: []SubscribeTrack{{StreamID: "s", TrackID: "t", Width: 1}}, Unsubscribe: []UnsubscribeTrack{{StreamID: "s", TrackID: "u"}}},
		&Negotiate{Description: SessionDescription{Type: "answer", SDP: "a"}, Metadata: md},
		&MetadataChanged{Metadata: md},
		&Ping{},
		&Pong{},
		&ActiveSpeakers{Speakers: []ActiveSpeaker{{UserID: "@u:hs", DeviceID: "D", StreamID: "s", TrackID: "t", Level: 0.25}, {StreamID: "s2", TrackID: "t2"}}},
		&ActiveSpeakers{Speakers: []ActiveSpeaker{}},
		&SubscriptionState{StreamID: "s", TrackID: "t", Paused: true},
		&SubscriptionState{StreamID: "s", TrackID: "t"},
		&PublishLayers{StreamID: "s", TrackID: "t", Layers: []PublishLayer{{RID: "q", Active: true}, {RID: "h"}}},
	} {
		out, err := MarshalDataChannel(v)
		if err != nil {
			t.Fatal(err)
		}
		back, err := ParseDataChannel(out)
		if err != nil {
			t.Fatalf("%s: %v", out, err)
		}
		if !reflect.DeepEqual(back, v) {
			t.Fatalf("round trip of %T:\n got %#v\nwant %#v", v, back, v)
		}
	}
}

// wireRoundTrip checks that what parses re-encodes to a fixed point:
// marshal(parse(marshal(v))) == marshal(v).
func wireRoundTrip(t *testing.T, v any, marshal func(any) ([]byte, error), parse func([]byte) (any, error)) {
	b1, err := marshal(v)
	if err != nil {
		if errors.Is(err, ErrInvalid) && strings.HasSuffix(err.Error(), "seq is not set") {
			return // input without seq: correctly refused on output
		}
		t.Fatalf("marshal %#v: %v", v, err)
	}
	v2, err := parse(b1)
	if err != nil {
		t.Fatalf("re-parse %s: %v", b1, err)
	}
	b2, err := marshal(v2)
	if err != nil {
		t.Fatalf("re-marshal: %v", err)
	}
	if string(b1) != string(b2) {
		t.Fatalf("not a fixed point:\n%s\n%s", b1, b2)
	}
}

func FuzzParseToDevice(f *testing.F) {
	for typ, raw := range toDeviceExamples {
		f.Add(typ, []byte(raw))
	}
	f.Add("m.call.hangup", []byte(`{"call_id":"c","party_id":"p","version":1}`))
	f.Add("m.call.invite", []byte(`{"call_id":"c","party_id":"p","device_id":"D","offer":{"type":"offer","sdp":"x"},"sdp_stream_metadata":{"s":{"tracks":{"t":{}}}}}`))
	f.Add("m.call.candidates", []byte(wireCandidatesJSON(3)))
	f.Add("m.call.invite", []byte(`null`))
	f.Add("x", []byte(`{}`))
	f.Fuzz(func(t *testing.T, typ string, raw []byte) {
		msg, err := ParseToDevice(typ, raw)
		if err != nil {
			if msg != nil {
				t.Fatal("message and error")
			}
			if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrUnknownType) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("unclassified error %v", err)
			}
			return
		}
		wireRoundTrip(t, msg, json.Marshal, func(b []byte) (any, error) { return ParseToDevice(typ, b) })
	})
}

func FuzzParseDataChannel(f *testing.F) {
	for _, raw := range dataChannelExamples {
		f.Add([]byte(raw))
	}
	f.Add([]byte(wireSubscriptionJSON(4, "subscribe")))
	f.Add([]byte(`{"type":"m.call.sdp_stream_metadata_changed","content":{"org.matrix.msc3077.sdp_stream_metadata":{}}}`))
	f.Add([]byte(`{"type":"m.call.ping"}`))
	f.Add([]byte(`{"type":"m.call.negotiate","content":null}`))
	f.Add([]byte(`{"type":"org.matrix.msc3898.call.active_speakers","content":{"speakers":[{"stream_id":"s","track_id":"t","level":1e-7}]}}`))
	f.Add([]byte(`{"type":"org.matrix.msc3898.call.publish_layers","content":{"stream_id":"s","track_id":"t","layers":[{"rid":"q"}]}}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		msg, err := ParseDataChannel(raw)
		if err != nil {
			if msg != nil {
				t.Fatal("message and error")
			}
			if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrUnknownType) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("unclassified error %v", err)
			}
			return
		}
		wireRoundTrip(t, msg, func(v any) ([]byte, error) { return MarshalDataChannel(v.(DCContent)) }, ParseDataChannel)
	})
}

// TestDocExamples parses every JSON example in the "Wire protocol"
// section of docs/matrix.md, and checks that every message type has one.
func TestDocExamples(t *testing.T) {
	doc, err := os.ReadFile("../docs/matrix.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(doc), "\n## Wire protocol\n")
	if !ok {
		t.Fatal(`docs/matrix.md has no "## Wire protocol" section`)
	}
	if end := strings.Index(section, "\n## "); end >= 0 {
		section = section[:end]
	}
	seen := map[string]bool{}
	// The examples' created_ts is 1700000000000.
	m := NewMemberships(func() time.Time { return time.UnixMilli(1700000001000) })
	blocks := strings.Split(section, "```json\n")[1:]
	for i, b := range blocks {
		block, _, _ := strings.Cut(b, "```")
		var env struct {
			Type    string          `json:"type"`
			Content json.RawMessage `json:"content"`
		}
		if err := json.Unmarshal([]byte(block), &env); err != nil {
			t.Fatalf("example %d is not JSON: %v\n%s", i, err, block)
		}
		seen[env.Type] = true
		switch env.Type {
		case TypeInvite.Type, TypeAnswer.Type, TypeCandidates.Type, TypeSelectAnswer.Type, TypeHangup.Type:
			msg, err := ParseToDevice(env.Type, env.Content)
			if err != nil {
				t.Fatalf("example %d: %v", i, err)
			}
			if _, err := json.Marshal(msg); err != nil {
				t.Fatalf("example %d does not re-encode: %v", i, err)
			}
		case DCTrackSubscription, DCNegotiate, DCMetadataChanged, DCPing, DCPong, DCActiveSpeakers, DCSubscriptionState, DCPublishLayers:
			if _, err := ParseDataChannel([]byte(block)); err != nil {
				t.Fatalf("example %d: %v", i, err)
			}
		case StateCallMember.Type, StateCallMemberUnstable.Type:
			var evt event.Event
			if err := json.Unmarshal([]byte(block), &evt); err != nil {
				t.Fatalf("example %d: %v", i, err)
			}
			evt.RoomID = "!doc:example.org"
			cs, err := m.Update(&evt)
			if err != nil {
				t.Fatalf("example %d: %v", i, err)
			}
			if string(env.Content) != "{}" && (len(cs) != 1 || cs[0].Kind != MemberJoined ||
				!cs[0].Member.UsesFocus("@focus:example.org", "FOCUSDEV")) {
				t.Fatalf("example %d: changes %+v, want one member joining with the focus", i, cs)
			}
		default:
			t.Fatalf("example %d has an unexpected type %q", i, env.Type)
		}
	}
	for _, typ := range []string{TypeInvite.Type, TypeAnswer.Type, TypeCandidates.Type, TypeSelectAnswer.Type, TypeHangup.Type,
		DCTrackSubscription, DCNegotiate, DCMetadataChanged, DCPing, DCPong, DCActiveSpeakers, DCSubscriptionState, DCPublishLayers,
		StateCallMember.Type, StateCallMemberUnstable.Type} {
		if !seen[typ] {
			t.Errorf("docs/matrix.md has no example of %s", typ)
		}
	}
}
