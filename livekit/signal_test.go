package livekit

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/livekit/protocol/livekit"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

func mustBinary(t testing.TB, req *livekit.SignalRequest) []byte {
	t.Helper()
	b, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustJSON(t testing.TB, req *livekit.SignalRequest) []byte {
	t.Helper()
	b, err := protojson.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDecodeSignal(t *testing.T) {
	offer := &livekit.SignalRequest{Message: &livekit.SignalRequest_Offer{Offer: &livekit.SessionDescription{Type: "offer", Sdp: "v=0\r\n", Id: 3}}}
	ping := &livekit.SignalRequest{Message: &livekit.SignalRequest_PingReq{PingReq: &livekit.Ping{Timestamp: 42}}}
	tests := []struct {
		name    string
		typ     websocket.MessageType
		data    []byte
		want    string // requestName, "" when an error is expected
		enc     encoding
		wantErr error
	}{
		{"binary offer", websocket.MessageBinary, mustBinary(t, offer), "Offer", encBinary, nil},
		{"json ping", websocket.MessageText, mustJSON(t, ping), "PingReq", encJSON, nil},
		{"json camelCase from livekit-client", websocket.MessageText, []byte(`{"pingReq":{"timestamp":"42","rtt":"3"}}`), "PingReq", encJSON, nil},
		{"json unknown field is ignored", websocket.MessageText, []byte(`{"someFutureRequest":{"x":1}}`), "unknown", encJSON, nil},
		{"empty binary frame has no message", websocket.MessageBinary, nil, "unknown", encBinary, nil},
		{"unknown field number has no message", websocket.MessageBinary, []byte{0xfa, 0x01, 0x00}, "unknown", encBinary, nil},
		{"truncated protobuf", websocket.MessageBinary, mustBinary(t, offer)[:5], "", encBinary, errMalformed},
		{"garbage", websocket.MessageBinary, []byte{0xff, 0xff, 0xff, 0xff}, "", encBinary, errMalformed},
		{"json that is not json", websocket.MessageText, []byte(`{"offer":`), "", encJSON, errMalformed},
		{"json of the wrong shape", websocket.MessageText, []byte(`{"offer":"yes"}`), "", encJSON, errMalformed},
		{"too large", websocket.MessageBinary, make([]byte, maxFrameSize+1), "", 0, errFrameTooBig},
		{"frame type", websocket.MessageType(9), []byte{1}, "", 0, errFrameType},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, enc, err := decodeSignal(tt.typ, tt.data)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := requestName(req); got != tt.want {
				t.Errorf("message = %s, want %s", got, tt.want)
			}
			if enc != tt.enc {
				t.Errorf("encoding = %d, want %d", enc, tt.enc)
			}
		})
	}
}

func TestEncodeSignalFollowsTheClient(t *testing.T) {
	res := &livekit.SignalResponse{Message: &livekit.SignalResponse_Pong{Pong: 7}}
	typ, b, err := encodeSignal(encJSON, res)
	if err != nil || typ != websocket.MessageText || !strings.Contains(string(b), `"pong"`) {
		t.Fatalf("json: %v %s %v", typ, b, err)
	}
	typ, b, err = encodeSignal(encBinary, res)
	if err != nil || typ != websocket.MessageBinary {
		t.Fatalf("binary: %v %v", typ, err)
	}
	var back livekit.SignalResponse
	if err := proto.Unmarshal(b, &back); err != nil || back.GetPong() != 7 {
		t.Fatalf("round trip: %v %v", back.GetPong(), err)
	}
}

func TestRequestRate(t *testing.T) {
	now := time.Unix(1000, 0)
	c := &signalConn{tokens: requestBurst, last: now, now: func() time.Time { return now }}
	for i := 0; i < requestBurst; i++ {
		if !c.allow() {
			t.Fatalf("request %d of the burst refused", i)
		}
	}
	if c.allow() {
		t.Fatal("request over the burst allowed")
	}
	now = now.Add(time.Second)
	for i := 0; i < requestRate; i++ {
		if !c.allow() {
			t.Fatalf("request %d of the next second refused", i)
		}
	}
	if c.allow() {
		t.Fatal("request over the rate allowed")
	}
}

// FuzzDecodeRequest feeds the signalling frame decoder arbitrary frames:
// it must never panic, and what it accepts must encode again.
func FuzzDecodeRequest(f *testing.F) {
	seeds := []*livekit.SignalRequest{
		{Message: &livekit.SignalRequest_Offer{Offer: &livekit.SessionDescription{Type: "offer", Sdp: "v=0\r\n", Id: 1}}},
		{Message: &livekit.SignalRequest_Trickle{Trickle: &livekit.TrickleRequest{CandidateInit: `{"candidate":"candidate:1 1 udp 1 127.0.0.1 9 typ host"}`, Target: livekit.SignalTarget_SUBSCRIBER}}},
		{Message: &livekit.SignalRequest_AddTrack{AddTrack: &livekit.AddTrackRequest{Cid: "c", Type: livekit.TrackType_VIDEO, Layers: []*livekit.VideoLayer{{Quality: livekit.VideoQuality_HIGH, Rid: "f"}}}}},
		{Message: &livekit.SignalRequest_Subscription{Subscription: &livekit.UpdateSubscription{TrackSids: []string{"TR_x"}, Subscribe: true}}},
		{Message: &livekit.SignalRequest_Leave{Leave: &livekit.LeaveRequest{}}},
	}
	for _, s := range seeds {
		b, _ := proto.Marshal(s)
		f.Add(true, b)
		j, _ := protojson.Marshal(s)
		f.Add(false, j)
	}
	f.Add(true, []byte{0xff, 0x00})
	f.Add(false, []byte(`{"offer":null}`))
	f.Fuzz(func(t *testing.T, binary bool, data []byte) {
		typ := websocket.MessageText
		if binary {
			typ = websocket.MessageBinary
		}
		req, _, err := decodeSignal(typ, data)
		if err != nil {
			if !errors.Is(err, errMalformed) && !errors.Is(err, errFrameTooBig) {
				t.Fatalf("unexpected error class: %v", err)
			}
			return
		}
		if _, err := proto.Marshal(req); err != nil {
			t.Fatalf("accepted request does not encode: %v", err)
		}
		_ = requestName(req)
	})
}
