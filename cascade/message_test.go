package cascade

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestDecodeMessage(t *testing.T) {
	cases := []struct {
		in   string
		code string // "" when valid
		typ  string // the type read, valid or not
	}{
		{`{"version":1,"type":"subscribe","conference":"whip:r","track":"TR_1"}`, "", msgSubscribe},
		{`{"version":1,"type":"unsubscribe","track":"TR_1"}`, "", msgUnsubscribe},
		{`{"version":1,"type":"subscribe","conference":"whip:r","track":"TR_1","layer":2}`, "", msgSubscribe},
		{`{"version":1,"type":"unsubscribe","track":"TR_1","layer":7}`, "", msgUnsubscribe},
		{`{"version":1,"type":"error","code":"unknown_layer","track":"TR_1","layer":3}`, "", msgError},
		{`{"version":1,"type":"subscribe","conference":"whip:r","track":"TR_1","layer":8}`, codeBadMessage, msgSubscribe},
		{`{"version":1,"type":"subscribe","conference":"whip:r","track":"TR_1","layer":-1}`, codeBadMessage, msgSubscribe},
		{`{"version":1,"type":"subscribe","conference":"whip:r","track":"TR_1","layer":"1"}`, codeBadMessage, msgSubscribe},
		{`{"version":1,"type":"ping","seq":3}`, "", msgPing},
		{`{"version":1,"type":"pong","seq":3,"later":"ignored"}`, "", msgPong},
		{`{"version":1,"type":"offer","sdp":"v=0"}`, "", msgOffer},
		{`{"version":1,"type":"answer","sdp":"v=0"}`, "", msgAnswer},
		{`{"version":1,"type":"error","code":"unknown_track"}`, "", msgError},
		{`{"version":1,"type":"close"}`, "", msgClose},
		{`{"version":1,"type":"part","data":"eyJ9","more":true}`, "", msgPart},
		{`{"version":1,"type":"subscribe","track":"TR_1"}`, codeBadMessage, msgSubscribe},
		{`{"version":1,"type":"subscribe","conference":"r"}`, codeBadMessage, msgSubscribe},
		{`{"version":1,"type":"unsubscribe"}`, codeBadMessage, msgUnsubscribe},
		{`{"version":1,"type":"offer"}`, codeBadMessage, msgOffer},
		{`{"version":1,"type":"error"}`, codeBadMessage, msgError},
		{`{"version":1,"type":"part"}`, codeBadMessage, msgPart},
		{`{"version":1}`, codeBadMessage, ""},
		{`{"version":1,"type":"dance"}`, codeUnknownType, "dance"},
		{`{"version":2,"type":"ping"}`, codeUnsupportedVersion, msgPing},
		{`{"type":"ping"}`, codeUnsupportedVersion, msgPing},
		{`{"version":1,"type":"error","code":7}`, codeBadMessage, msgError},
		{`{"version":1,"type":"ping"} {}`, codeBadMessage, msgPing},
		{`[1,2]`, codeBadMessage, ""},
		{`not json`, codeBadMessage, ""},
		{``, codeBadMessage, ""},
		{`{"version":1,"type":"subscribe","conference":"r","track":"` + strings.Repeat("x", maxName+1) + `"}`, codeBadMessage, msgSubscribe},
	}
	for _, tc := range cases {
		m, err := decodeMessage([]byte(tc.in))
		code := ""
		if err != nil {
			code = messageCode(err)
		}
		if code != tc.code || m.Type != tc.typ {
			t.Errorf("%.60s: code %q type %q (%v); want %q %q", tc.in, code, m.Type, err, tc.code, tc.typ)
		}
	}
}

// TestFrames: a message too long for one data channel message travels
// in parts and comes out whole; short ones go as they are.
func TestFrames(t *testing.T) {
	long := message{Type: msgOffer, SDP: "v=0\r\n" + strings.Repeat("a=x:\"<&>\"\r\n", 20000)}
	frames, err := encodeFrames(long)
	if err != nil {
		t.Fatal(err)
	}
	if len(frames) < 3 {
		t.Fatalf("%d frames for %d bytes of SDP", len(frames), len(long.SDP))
	}
	var a assembler
	var got []message
	for i, f := range frames {
		if len(f) > 65535 {
			t.Fatalf("frame %d has %d bytes; pion reads 64 KiB at most", i, len(f))
		}
		m, err := decodeMessage(f)
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		whole, ok, err := a.add(m)
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if ok {
			got = append(got, whole)
		}
	}
	if len(got) != 1 || got[0].SDP != long.SDP || got[0].Type != msgOffer {
		t.Fatalf("reassembled %d messages", len(got))
	}

	short, _ := encodeFrames(message{Type: msgPing, Seq: 1})
	if len(short) != 1 || !strings.Contains(string(short[0]), `"type":"ping"`) {
		t.Errorf("a ping: %q", short)
	}

	// A message between the parts drops them and is itself handled.
	m1, _ := decodeMessage(frames[0])
	if _, ok, err := a.add(m1); ok || err != nil {
		t.Fatalf("first part: %v %v", ok, err)
	}
	ping, _ := decodeMessage(short[0])
	if m, ok, err := a.add(ping); !ok || err == nil || m.Type != msgPing {
		t.Errorf("a ping between parts: %v %v %v", m.Type, ok, err)
	}
}

// FuzzDecodeMessage: no input makes the decoder or the assembler panic,
// and whatever decodes encodes and decodes again to the same message.
func FuzzDecodeMessage(f *testing.F) {
	for _, s := range []string{
		`{"version":1,"type":"subscribe","conference":"whip:r","track":"TR_1"}`,
		`{"version":1,"type":"subscribe","conference":"whip:r","track":"TR_1","layer":2}`,
		`{"version":1,"type":"unsubscribe","track":"TR_1","layer":9}`,
		`{"version":1,"type":"ping","seq":3}`,
		`{"version":1,"type":"part","data":"eyJ2ZXJzaW9uIjoxLCJ0eXBlIjoicGluZyJ9"}`,
		`{"version":1,"type":"part","data":"eyJ2","more":true}`,
		`{"version":1,"type":"error","code":"x","error":"y","track":"z"}`,
		`{"version":2}`, `[]`, `null`, `{"data":"!!"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeMessage(b)
		var a assembler
		if err != nil {
			_ = messageCode(err)
			return
		}
		_, _, _ = a.add(m)
		frames, err := encodeFrames(m)
		if err != nil {
			t.Fatalf("encode %+v: %v", m, err)
		}
		var b2 assembler
		for _, fr := range frames {
			m2, err := decodeMessage(fr)
			if err != nil {
				t.Fatalf("re-decode %q: %v", fr, err)
			}
			whole, ok, err := b2.add(m2)
			if m.Type == msgPart {
				// A part re-encoded is a part again; it is no message yet
				// unless it was the last and held a whole one.
				continue
			}
			if err != nil || !ok {
				t.Fatalf("re-assemble: %v %v", ok, err)
			}
			j1, _ := json.Marshal(m)
			j2, _ := json.Marshal(whole)
			if string(j1) != string(j2) {
				t.Fatalf("round trip changed the message:\n%s\n%s", j1, j2)
			}
		}
	})
}

// FuzzTrunkRequest: no body makes the trunk request decoder panic, and
// what it accepts is of this version with a data channel offered.
func FuzzTrunkRequest(f *testing.F) {
	for _, s := range []string{
		`{"version":1,"offer":"v=0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n"}`,
		`{"version":1}`, `{"version":"1"}`, `{}{}`, `[`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		req, e := decodeTrunkRequest(b)
		if e != nil {
			if e.status != 400 || e.errcode == "" {
				t.Fatalf("refusal %+v", e)
			}
			return
		}
		if req.Version != protocolVersion || !strings.Contains(req.Offer, "m=application") {
			t.Fatalf("accepted %+v", req)
		}
	})
}

// TestLayerField: a layer travels as "layer", absent for layer 0 (what a
// focus that knows no layers sends and reads), and names the trunk track
// that carries it.
func TestLayerField(t *testing.T) {
	frames, err := encodeFrames(message{Type: msgSubscribe, Conference: "whip:r", Track: "TR_1"})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(frames[0]), "layer") {
		t.Errorf("layer 0 encoded: %s", frames[0])
	}
	frames, _ = encodeFrames(message{Type: msgUnsubscribe, Track: "TR_1", Layer: 2})
	m, err := decodeMessage(frames[0])
	if err != nil || m.Layer != 2 || m.Track != "TR_1" {
		t.Errorf("%s decoded as %+v (%v)", frames[0], m, err)
	}
	m, err = decodeMessage([]byte(`{"version":1,"type":"subscribe","conference":"whip:r","track":"TR_1"}`))
	if err != nil || m.Layer != 0 {
		t.Errorf("no layer decoded as %+v (%v)", m, err)
	}
	for _, tc := range []struct {
		track string
		layer int
		id    string
	}{{"TR_1", 0, "TR_1"}, {"TR_1", 1, "TR_1~1"}, {"TR_1", 2, "TR_1~2"}} {
		if got := trunkTrackID(tc.track, tc.layer); got != tc.id {
			t.Errorf("trunkTrackID(%q, %d) = %q, want %q", tc.track, tc.layer, got, tc.id)
		}
	}
}
