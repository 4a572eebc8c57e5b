package matrixclient

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestMemberStateKey(t *testing.T) {
	if got := memberStateKey("@a:hs", "DEV"); got != "_@a:hs_DEV_m.call" {
		t.Errorf("state key = %q", got)
	}
}

func TestMemberContentJSON(t *testing.T) {
	now := time.UnixMilli(1700000000000)
	f := Focus{UserID: "@focus:hs", DeviceID: "FOCUSDEV"}
	got, err := json.Marshal(newMemberContent("conf1", "DEV", f, time.Hour, now))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"application":"m.call","call_id":"conf1","scope":"m.room","device_id":"DEV","expires":3600000,` +
		`"created_ts":1700000000000,"focus_active":{"type":"org.matrix.msc3898","user_id":"@focus:hs","device_id":"FOCUSDEV"},` +
		`"foci_preferred":[{"type":"org.matrix.msc3898","user_id":"@focus:hs","device_id":"FOCUSDEV"}]}`
	if string(got) != want {
		t.Errorf("membership =\n%s\nwant\n%s", got, want)
	}
	got, err = json.Marshal(newLegacyMemberContent("conf1", "DEV", "sess", f, time.Hour, now))
	if err != nil {
		t.Fatal(err)
	}
	want = `{"m.calls":[{"m.call_id":"conf1","m.devices":[{"device_id":"DEV","session_id":"sess","expires_ts":1700003600000,` +
		`"feeds":[{"purpose":"m.usermedia"}],"m.foci.active":[{"user_id":"@focus:hs","device_id":"FOCUSDEV"}],` +
		`"m.foci.preferred":[{"user_id":"@focus:hs","device_id":"FOCUSDEV"}]}]}]}`
	if string(got) != want {
		t.Errorf("legacy membership =\n%s\nwant\n%s", got, want)
	}
}

func TestDCEnvelope(t *testing.T) {
	b, err := encodeDC(DCTrackSubscription, trackSubscriptionContent{
		Subscribe:   []subscription{{TrackRef: TrackRef{"s", "v"}, Width: 640, Height: 360}},
		Unsubscribe: []TrackRef{{"s", "a"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"type":"m.call.track_subscription","content":{"subscribe":[{"stream_id":"s","track_id":"v","width":640,"height":360}],` +
		`"unsubscribe":[{"stream_id":"s","track_id":"a"}]}}`
	if string(b) != want {
		t.Errorf("envelope =\n%s\nwant\n%s", b, want)
	}
	if b, _ := encodeDC(DCPong, struct{}{}); string(b) != `{"type":"m.call.pong","content":{}}` {
		t.Errorf("pong = %s", b)
	}
}

// TestIncomingMetadataKeys: the focus may use either metadata key.
func TestIncomingMetadataKeys(t *testing.T) {
	for _, key := range []string{metadataKey, metadataStableKey} {
		var in incoming
		raw := `{"call_id":"c","` + key + `":{"s":{"purpose":"m.usermedia","tracks":{"v":{"kind":"video"}}}}}`
		if err := json.Unmarshal([]byte(raw), &in); err != nil {
			t.Fatal(err)
		}
		if m := in.metadata(); m["s"].Tracks["v"].Kind != "video" {
			t.Errorf("%s: metadata = %+v", key, m)
		}
	}
}

// TestCheckCommon: departures from the common fields' contract are
// recorded as problems.
func TestCheckCommon(t *testing.T) {
	tests := []struct {
		name string
		msgs []string
		want []string // substrings, one per problem, in order
	}{
		{"good", []string{
			`{"seq":0,"dest_session_id":"me","sender_session_id":"f","party_id":"F","version":"1","conf_id":"conf"}`,
			`{"seq":1,"dest_session_id":"me","sender_session_id":"f","party_id":"F","version":1,"conf_id":"conf"}`,
		}, nil},
		{"seq", []string{
			`{"seq":1,"dest_session_id":"me","sender_session_id":"f","party_id":"F","version":"1","conf_id":"conf"}`,
			`{"dest_session_id":"me","sender_session_id":"f","party_id":"F","version":"1","conf_id":"conf"}`,
		}, []string{"seq 1, want 0", "no seq"}},
		{"fields", []string{`{"seq":0,"dest_session_id":"x","version":"0","conf_id":"other"}`},
			[]string{`dest_session_id "x"`, "no sender_session_id", "no party_id", `version "0"`, `conf_id "other"`}},
		{"session changes", []string{
			`{"seq":0,"dest_session_id":"me","sender_session_id":"f","party_id":"F","version":"1","conf_id":"conf"}`,
			`{"seq":1,"dest_session_id":"me","sender_session_id":"g","party_id":"F","version":"1","conf_id":"conf"}`,
		}, []string{`sender_session_id "g", answer had "f"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &Client{}
			cl := &call{c: c, sessionID: "me", confID: "conf"}
			for _, raw := range tt.msgs {
				var in incoming
				if err := json.Unmarshal([]byte(raw), &in); err != nil {
					t.Fatal(err)
				}
				cl.checkCommon("m.call.candidates", &in)
				if in.SenderSessionID != "" && cl.focusSession == "" {
					cl.focusSession = in.SenderSessionID
				}
			}
			p := c.Problems()
			if len(p) != len(tt.want) {
				t.Fatalf("problems = %q, want %d", p, len(tt.want))
			}
			for i, w := range tt.want {
				if !strings.Contains(p[i], w) {
					t.Errorf("problem %d = %q, want it to say %q", i, p[i], w)
				}
			}
		})
	}
}

func TestMids(t *testing.T) {
	sdp := "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n" +
		"m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n" +
		"m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:1\r\n" +
		"m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:c1\r\n"
	got, err := mids(sdp)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, ",") != "0,1,c1" {
		t.Errorf("mids = %v", got)
	}
	if _, err := mids("not sdp"); err == nil {
		t.Error("mids accepted garbage")
	}
}
