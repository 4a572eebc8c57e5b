package livekit

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	jwtlib "github.com/golang-jwt/jwt/v5"
	"github.com/livekit/protocol/auth"
	"github.com/livekit/protocol/livekit"
	"github.com/rs/zerolog"
	"go.uber.org/goleak"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/focus-sfu/focus/focus"
	"github.com/focus-sfu/focus/rtc"
)

const (
	sigKey    = "focus-test"
	sigSecret = "test-secret-0123456789abcdef0123456789abcdef"
)

// sigEnv is a focus with the LiveKit front-end, on loopback.
type sigEnv struct {
	t   *testing.T
	srv *Server
	sfu *focus.SFU
	hs  *httptest.Server
	// wsURL is what LiveKit clients connect to: ws://127.0.0.1:PORT.
	wsURL string
}

func sigLogger(t *testing.T) zerolog.Logger {
	if os.Getenv("FOCUS_TEST_LOG") == "" {
		return zerolog.Nop()
	}
	return zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.DebugLevel).With().Timestamp().Logger()
}

func newSigEnv(t *testing.T, mod func(*Options)) *sigEnv {
	t.Helper()
	// Goroutines of earlier tests of the package (and of the LiveKit
	// SDK's HTTP client) are theirs to check.
	ignore := goleak.IgnoreCurrent()
	log := sigLogger(t)
	engine, err := rtc.New(rtc.Config{BindAddress: "127.0.0.1"}, log)
	if err != nil {
		t.Fatal(err)
	}
	sfu := focus.New(focus.Options{Log: log})
	opts := Options{SFU: sfu, Engine: engine, APIKey: sigKey, APISecret: sigSecret, Log: log}
	if mod != nil {
		mod(&opts)
	}
	srv, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		if err := srv.Close(ctx); err != nil {
			t.Errorf("close: %v", err)
		}
		hs.Close()
		sfu.Close()
		if err := engine.Close(); err != nil {
			t.Errorf("engine close: %v", err)
		}
		goleak.VerifyNone(t, ignore,
			// pion's and the SDK's connections wind down in the background.
			goleak.IgnoreAnyFunction("github.com/pion/interceptor/pkg/nack.(*GeneratorInterceptor).loop"),
			goleak.IgnoreAnyFunction("internal/poll.runtime_pollWait"),
			goleak.IgnoreAnyFunction("time.Sleep"),
		)
	})
	return &sigEnv{t: t, srv: srv, sfu: sfu, hs: hs, wsURL: "ws" + strings.TrimPrefix(hs.URL, "http")}
}

// expiredToken mints a join token that expired an hour ago, beyond the
// verifier's minute of leeway.
func expiredToken(t *testing.T, identity, room string) string {
	t.Helper()
	past := time.Now().Add(-2 * time.Hour)
	jwt, err := jwtlib.NewWithClaims(jwtlib.SigningMethodHS256, jwtlib.MapClaims{
		"iss":   sigKey,
		"sub":   identity,
		"nbf":   past.Unix(),
		"exp":   past.Add(time.Hour).Unix(),
		"video": map[string]any{"roomJoin": true, "room": room},
	}).SignedString([]byte(sigSecret))
	if err != nil {
		t.Fatal(err)
	}
	return jwt
}

// sigToken mints a join token; mod changes its grant.
func sigToken(t *testing.T, identity, room string, valid time.Duration, mod func(*auth.VideoGrant)) string {
	t.Helper()
	g := &auth.VideoGrant{RoomJoin: true, Room: room}
	if mod != nil {
		mod(g)
	}
	jwt, err := auth.NewAccessToken(sigKey, sigSecret).SetIdentity(identity).SetName(identity).
		SetValidFor(valid).SetVideoGrant(g).ToJWT()
	if err != nil {
		t.Fatal(err)
	}
	return jwt
}

func (e *sigEnv) get(path string, header http.Header) (int, string) {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodGet, e.hs.URL+path, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestValidate(t *testing.T) {
	e := newSigEnv(t, nil)
	good := sigToken(t, "alice", "room", time.Hour, nil)
	expired := expiredToken(t, "alice", "room")
	noJoin := sigToken(t, "alice", "room", time.Hour, func(g *auth.VideoGrant) { g.RoomJoin = false })
	otherSecret, _ := auth.NewAccessToken(sigKey, "another-secret-0123456789abcdef0123456789").
		SetIdentity("alice").SetValidFor(time.Hour).SetVideoGrant(&auth.VideoGrant{RoomJoin: true, Room: "room"}).ToJWT()
	otherKey, _ := auth.NewAccessToken("other", sigSecret).
		SetIdentity("alice").SetValidFor(time.Hour).SetVideoGrant(&auth.VideoGrant{RoomJoin: true, Room: "room"}).ToJWT()
	noRoom := sigToken(t, "alice", "", time.Hour, nil)

	tests := []struct {
		name   string
		path   string
		header http.Header
		status int
		body   string
	}{
		{"valid", "/rtc/validate?access_token=" + good, nil, 200, "success"},
		{"valid bearer", "/rtc/validate", http.Header{"Authorization": {"Bearer " + good}}, 200, "success"},
		{"no token", "/rtc/validate", nil, 401, "no access token"},
		{"not a bearer", "/rtc/validate", http.Header{"Authorization": {"Basic abc"}}, 401, "no access token"},
		{"garbage", "/rtc/validate?access_token=xyz", nil, 401, "invalid authorization token"},
		{"expired", "/rtc/validate?access_token=" + expired, nil, 401, "expired"},
		{"wrong secret", "/rtc/validate?access_token=" + otherSecret, nil, 401, "signature is invalid"},
		{"wrong key", "/rtc/validate?access_token=" + otherKey, nil, 401, "invalid API key"},
		{"no roomJoin", "/rtc/validate?access_token=" + noJoin, nil, 401, "roomJoin"},
		{"no room", "/rtc/validate?access_token=" + noRoom, nil, 400, "no room"},
		{"websocket with a bad token", "/rtc?access_token=" + expired, nil, 401, "expired"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := e.get(tt.path, tt.header)
			if status != tt.status || !strings.Contains(body, tt.body) {
				t.Errorf("got %d %q, want %d containing %q", status, body, tt.status, tt.body)
			}
		})
	}
}

// TestV1PathsFallBack: livekit-client tries /rtc/v1 first and falls back
// to /rtc only on a 404 whose body does not say the room is missing, and
// it reads that body cross-origin.
func TestV1PathsFallBack(t *testing.T) {
	e := newSigEnv(t, nil)
	good := sigToken(t, "alice", "room", time.Hour, nil)
	for _, path := range []string{"/rtc/v1", "/rtc/v1/validate"} {
		req, _ := http.NewRequest(http.MethodGet, e.hs.URL+path+"?access_token="+good, nil)
		req.Header.Set("Origin", "https://call.example")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s: status %d, want 404", path, resp.StatusCode)
		}
		if strings.Contains(string(b), "requested room does not exist") {
			t.Errorf("%s: body %q would stop the fallback", path, b)
		}
		if resp.Header.Get("Access-Control-Allow-Origin") != "*" {
			t.Errorf("%s: no CORS header; a browser could not read the 404", path)
		}
	}
}

func TestRequireRoomCreate(t *testing.T) {
	e := newSigEnv(t, func(o *Options) { o.RequireRoomCreate = true })
	joinOnly := sigToken(t, "bob", "room", time.Hour, nil)
	status, body := e.get("/rtc/validate?access_token="+joinOnly, nil)
	if status != http.StatusNotFound || !strings.Contains(body, "requested room does not exist") {
		t.Fatalf("join-only token for a room that is not running: %d %q", status, body)
	}
	creator := dialRaw(t, e, sigToken(t, "alice", "room", time.Hour, func(g *auth.VideoGrant) { g.RoomCreate = true }), "")
	defer creator.close()
	if status, body := e.get("/rtc/validate?access_token="+joinOnly, nil); status != http.StatusOK {
		t.Fatalf("join-only token for a running room: %d %q", status, body)
	}
	if !e.srv.RoomExists("room") || e.srv.RoomExists("other") {
		t.Fatal("RoomExists is wrong")
	}
}

// rawClient is a bare websocket client of /rtc, for what the SDKs
// would never send.
type rawClient struct {
	t     *testing.T
	ws    *websocket.Conn
	join  *livekit.JoinResponse
	first *livekit.SignalResponse // the first response when it is not a join
}

// dialRaw connects with token; query adds parameters.
func dialRaw(t *testing.T, e *sigEnv, token, query string) *rawClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	u := e.wsURL + "/rtc?access_token=" + url.QueryEscape(token) + "&protocol=16&sdk=go&" + query
	ws, resp, err := websocket.Dial(ctx, u, nil)
	if err != nil {
		if resp != nil {
			b, _ := io.ReadAll(resp.Body)
			t.Fatalf("dial: %v: %d %s", err, resp.StatusCode, b)
		}
		t.Fatalf("dial: %v", err)
	}
	ws.SetReadLimit(maxFrameSize)
	c := &rawClient{t: t, ws: ws}
	res := c.read(5 * time.Second)
	if j := res.GetJoin(); j != nil {
		c.join = j
	} else if res.GetLeave() != nil || res.GetReconnect() != nil {
		c.first = res
	} else {
		t.Fatalf("first message is %T, want join", res.Message)
	}
	return c
}

func (c *rawClient) read(timeout time.Duration) *livekit.SignalResponse {
	c.t.Helper()
	res, err := c.tryRead(timeout)
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	return res
}

func (c *rawClient) tryRead(timeout time.Duration) (*livekit.SignalResponse, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	typ, b, err := c.ws.Read(ctx)
	if err != nil {
		return nil, err
	}
	res := &livekit.SignalResponse{}
	if typ == websocket.MessageText {
		err = protojson.Unmarshal(b, res)
	} else {
		err = proto.Unmarshal(b, res)
	}
	if err != nil {
		return nil, err
	}
	return res, nil
}

// waitFor reads until a response satisfies ok.
func (c *rawClient) waitFor(timeout time.Duration, ok func(*livekit.SignalResponse) bool) *livekit.SignalResponse {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			c.t.Fatal("timed out waiting for a response")
		}
		res, err := c.tryRead(left)
		if err != nil {
			c.t.Fatalf("read: %v", err)
		}
		if ok(res) {
			return res
		}
	}
}

func (c *rawClient) send(req *livekit.SignalRequest) {
	c.t.Helper()
	b, err := proto.Marshal(req)
	if err != nil {
		c.t.Fatal(err)
	}
	c.sendFrame(websocket.MessageBinary, b)
}

func (c *rawClient) sendFrame(typ websocket.MessageType, b []byte) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.ws.Write(ctx, typ, b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// closedWith reads until the server closes, and returns the status.
func (c *rawClient) closedWith(timeout time.Duration) (websocket.StatusCode, string) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		_, err := c.tryRead(time.Until(deadline))
		if err == nil {
			continue
		}
		var ce websocket.CloseError
		if ok := asCloseError(err, &ce); ok {
			return ce.Code, ce.Reason
		}
		return -1, err.Error()
	}
	c.t.Fatal("the server did not close the connection")
	return 0, ""
}

func (c *rawClient) close() { _ = c.ws.CloseNow() }

func asCloseError(err error, ce *websocket.CloseError) bool {
	code := websocket.CloseStatus(err)
	if code == -1 {
		return false
	}
	*ce = websocket.CloseError{Code: code, Reason: closeReason(err)}
	return true
}

func closeReason(err error) string {
	s := err.Error()
	if i := strings.LastIndex(s, "reason = "); i >= 0 {
		return s[i+len("reason = "):]
	}
	return s
}

func TestJoinResponse(t *testing.T) {
	e := newSigEnv(t, func(o *Options) {
		o.ICEServers = []rtc.ICEServer{{URLs: []string{"stun:stun.example:3478"}}}
		o.Version = "1.2.3"
	})
	a := dialRaw(t, e, sigToken(t, "alice", "room", time.Hour, nil), "")
	defer a.close()
	j := a.join
	switch {
	case !strings.HasPrefix(j.GetRoom().GetSid(), "RM_") || j.GetRoom().GetName() != "room":
		t.Errorf("room %v", j.GetRoom())
	case !strings.HasPrefix(j.GetParticipant().GetSid(), "PA_") || j.GetParticipant().GetIdentity() != "alice":
		t.Errorf("participant %v", j.GetParticipant())
	case !j.GetSubscriberPrimary():
		t.Error("subscriber_primary is off: clients would wait for a publisher connection they need not open")
	case j.GetPingInterval() == 0 || j.GetPingTimeout() <= j.GetPingInterval():
		t.Errorf("ping %d/%d", j.GetPingInterval(), j.GetPingTimeout())
	case j.GetServerInfo().GetVersion() != "1.2.3" || j.GetServerInfo().GetProtocol() != ProtocolVersion:
		t.Errorf("server info %v", j.GetServerInfo())
	case len(j.GetIceServers()) != 1 || j.GetIceServers()[0].GetUrls()[0] != "stun:stun.example:3478":
		t.Errorf("ice servers %v", j.GetIceServers())
	case len(j.GetSifTrailer()) == 0:
		t.Error("no sif trailer")
	case !j.GetParticipant().GetPermission().GetCanPublish() || !j.GetParticipant().GetPermission().GetCanSubscribe():
		t.Errorf("permission %v", j.GetParticipant().GetPermission())
	}
	// The focus offers the subscriber connection right away: the client
	// waits for it to connect before the room counts as joined.
	offer := a.waitFor(5*time.Second, func(r *livekit.SignalResponse) bool { return r.GetOffer() != nil }).GetOffer()
	if offer.GetId() == 0 || !strings.Contains(offer.GetSdp(), "m=application") {
		t.Errorf("first subscriber offer %d has no data channels:\n%s", offer.GetId(), offer.GetSdp())
	}

	// A fresh token for the same grant. Nobody speaks, so no
	// speakers_changed comes.
	b := dialRaw(t, e, sigToken(t, "bob", "room", time.Hour, nil), "")
	defer b.close()
	var refreshed string
	b.waitFor(5*time.Second, func(r *livekit.SignalResponse) bool {
		if r.GetSpeakersChanged() != nil {
			t.Errorf("speakers_changed while nobody speaks: %v", r.GetSpeakersChanged())
		}
		if tok := r.GetRefreshToken(); tok != "" {
			refreshed = tok
		}
		return refreshed != ""
	})
	v, err := auth.ParseAPIToken(refreshed)
	if err != nil {
		t.Fatal(err)
	}
	claims, grants, err := v.Verify(sigSecret)
	if err != nil || grants.Identity != "bob" || !grants.Video.RoomJoin || grants.Video.Room != "room" ||
		time.Until(claims.ExpiresAt.Time) < 50*time.Minute {
		t.Errorf("refresh token: %v %+v %v", err, grants, claims)
	}
	if len(b.join.GetOtherParticipants()) != 1 || b.join.GetOtherParticipants()[0].GetIdentity() != "alice" {
		t.Errorf("bob's others: %v", b.join.GetOtherParticipants())
	}
	if b.join.GetRoom().GetSid() != j.GetRoom().GetSid() {
		t.Error("two sids for one room")
	}
	upd := a.waitFor(5*time.Second, func(r *livekit.SignalResponse) bool {
		for _, p := range r.GetUpdate().GetParticipants() {
			if p.GetIdentity() == "bob" {
				return true
			}
		}
		return false
	})
	_ = upd
}

// TestPingPong: both ping forms are answered, pong_resp with the ping's
// timestamp.
func TestPingPong(t *testing.T) {
	e := newSigEnv(t, nil)
	a := dialRaw(t, e, sigToken(t, "alice", "room", time.Hour, nil), "")
	defer a.close()
	a.send(&livekit.SignalRequest{Message: &livekit.SignalRequest_Ping{Ping: 5}})
	a.send(&livekit.SignalRequest{Message: &livekit.SignalRequest_PingReq{PingReq: &livekit.Ping{Timestamp: 1234, Rtt: 7}}})
	a.waitFor(5*time.Second, func(r *livekit.SignalResponse) bool { return r.GetPong() != 0 })
	res := a.waitFor(5*time.Second, func(r *livekit.SignalResponse) bool { return r.GetPongResp() != nil })
	if res.GetPongResp().GetLastPingTimestamp() != 1234 {
		t.Errorf("pong_resp %v", res.GetPongResp())
	}
}

// TestJSONClient: a client sending text frames gets text frames back.
func TestJSONClient(t *testing.T) {
	e := newSigEnv(t, nil)
	a := dialRaw(t, e, sigToken(t, "alice", "room", time.Hour, nil), "")
	defer a.close()
	a.sendFrame(websocket.MessageText, []byte(`{"pingReq":{"timestamp":"99"}}`))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for {
		typ, b, err := a.ws.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if typ == websocket.MessageText && strings.Contains(string(b), "pongResp") {
			if !strings.Contains(string(b), `"99"`) {
				t.Errorf("pong_resp %s", b)
			}
			return
		}
	}
}

// TestBadInput: a malformed frame, an unknown message and requests about
// tracks that do not exist: the bad frame closes only its own
// connection, with a reason; the rest is answered or ignored.
func TestBadInput(t *testing.T) {
	e := newSigEnv(t, nil)
	a := dialRaw(t, e, sigToken(t, "alice", "room", time.Hour, nil), "")
	defer a.close()
	b := dialRaw(t, e, sigToken(t, "bob", "room", time.Hour, nil), "")
	defer b.close()

	// An unknown message type (a field this version does not know) is
	// ignored; the connection goes on.
	a.sendFrame(websocket.MessageBinary, []byte{0xfa, 0x07, 0x02, 0x08, 0x01})
	// Requests about tracks that do not exist.
	a.send(&livekit.SignalRequest{Message: &livekit.SignalRequest_Mute{Mute: &livekit.MuteTrackRequest{Sid: "TR_nope", Muted: true}}})
	a.send(&livekit.SignalRequest{Message: &livekit.SignalRequest_TrackSetting{TrackSetting: &livekit.UpdateTrackSettings{TrackSids: []string{"TR_nope"}, Width: 10}}})
	a.send(&livekit.SignalRequest{Message: &livekit.SignalRequest_Subscription{Subscription: &livekit.UpdateSubscription{TrackSids: []string{"TR_nope"}, Subscribe: true}}})
	res := a.waitFor(5*time.Second, func(r *livekit.SignalResponse) bool { return r.GetSubscriptionResponse() != nil })
	if sr := res.GetSubscriptionResponse(); sr.GetTrackSid() != "TR_nope" || sr.GetErr() != livekit.SubscriptionError_SE_TRACK_NOTFOUND {
		t.Errorf("subscription response %v", sr)
	}
	// An answer to no offer, an offer that is not SDP, a bad candidate.
	a.send(&livekit.SignalRequest{Message: &livekit.SignalRequest_Answer{Answer: &livekit.SessionDescription{Type: "answer", Sdp: "nonsense", Id: 99}}})
	a.send(&livekit.SignalRequest{Message: &livekit.SignalRequest_Offer{Offer: &livekit.SessionDescription{Type: "offer", Sdp: "nonsense"}}})
	a.send(&livekit.SignalRequest{Message: &livekit.SignalRequest_Trickle{Trickle: &livekit.TrickleRequest{CandidateInit: "{", Target: livekit.SignalTarget_SUBSCRIBER}}})
	a.send(&livekit.SignalRequest{Message: &livekit.SignalRequest_AddTrack{AddTrack: &livekit.AddTrackRequest{Type: livekit.TrackType_VIDEO}}})
	res = a.waitFor(5*time.Second, func(r *livekit.SignalResponse) bool { return r.GetRequestResponse() != nil })
	if rr := res.GetRequestResponse(); rr.GetReason() != livekit.RequestResponse_INVALID_REQUEST || rr.GetAddTrack() == nil {
		t.Errorf("add_track without cid: %v", rr)
	}
	a.send(&livekit.SignalRequest{Message: &livekit.SignalRequest_PingReq{PingReq: &livekit.Ping{Timestamp: 1}}})
	a.waitFor(5*time.Second, func(r *livekit.SignalResponse) bool { return r.GetPongResp() != nil })

	// A malformed frame closes that connection, with a reason.
	a.sendFrame(websocket.MessageBinary, []byte{0x0a, 0xff, 0xff, 0xff})
	code, reason := a.closedWith(5 * time.Second)
	if code != websocket.StatusInvalidFramePayloadData || !strings.Contains(reason, "malformed") {
		t.Errorf("closed with %d %q", code, reason)
	}
	// Alice never connected media, so she is gone at once; Bob is told
	// and goes on.
	b.waitFor(5*time.Second, func(r *livekit.SignalResponse) bool {
		for _, p := range r.GetUpdate().GetParticipants() {
			if p.GetIdentity() == "alice" && p.GetState() == livekit.ParticipantInfo_DISCONNECTED {
				return true
			}
		}
		return false
	})
	b.send(&livekit.SignalRequest{Message: &livekit.SignalRequest_PingReq{PingReq: &livekit.Ping{Timestamp: 2}}})
	b.waitFor(5*time.Second, func(r *livekit.SignalResponse) bool { return r.GetPongResp().GetLastPingTimestamp() == 2 })
}

// TestFlood: a client over the request rate is disconnected with a
// reason; others are not.
func TestFlood(t *testing.T) {
	e := newSigEnv(t, nil)
	a := dialRaw(t, e, sigToken(t, "alice", "room", time.Hour, nil), "")
	defer a.close()
	b := dialRaw(t, e, sigToken(t, "bob", "room", time.Hour, nil), "")
	defer b.close()
	req, _ := proto.Marshal(&livekit.SignalRequest{Message: &livekit.SignalRequest_Mute{Mute: &livekit.MuteTrackRequest{Sid: "TR_x"}}})
	go func() {
		for i := 0; i < 5*requestBurst; i++ {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			err := a.ws.Write(ctx, websocket.MessageBinary, req)
			cancel()
			if err != nil {
				return
			}
		}
	}()
	code, reason := a.closedWith(10 * time.Second)
	if code != websocket.StatusPolicyViolation || !strings.Contains(reason, "too many") {
		t.Errorf("closed with %d %q", code, reason)
	}
	b.send(&livekit.SignalRequest{Message: &livekit.SignalRequest_PingReq{PingReq: &livekit.Ping{Timestamp: 3}}})
	b.waitFor(5*time.Second, func(r *livekit.SignalResponse) bool { return r.GetPongResp().GetLastPingTimestamp() == 3 })
}

// TestResumeUnknownSession: a resume the focus cannot honour gets a leave
// asking for a full reconnect.
func TestResumeUnknownSession(t *testing.T) {
	e := newSigEnv(t, nil)
	c := dialRaw(t, e, sigToken(t, "alice", "room", time.Hour, nil), "reconnect=1&sid=PA_gone")
	defer c.close()
	if c.join != nil {
		t.Fatal("a resume got a join response")
	}
}

// TestDuplicateIdentity: a second session of an identity replaces the
// first, which is told why.
func TestDuplicateIdentity(t *testing.T) {
	e := newSigEnv(t, nil)
	a1 := dialRaw(t, e, sigToken(t, "alice", "room", time.Hour, nil), "")
	defer a1.close()
	b := dialRaw(t, e, sigToken(t, "bob", "room", time.Hour, nil), "")
	defer b.close()
	a2 := dialRaw(t, e, sigToken(t, "alice", "room", time.Hour, nil), "")
	defer a2.close()
	res := a1.waitFor(5*time.Second, func(r *livekit.SignalResponse) bool { return r.GetLeave() != nil })
	if res.GetLeave().GetReason() != livekit.DisconnectReason_DUPLICATE_IDENTITY {
		t.Errorf("leave %v", res.GetLeave())
	}
	others := a2.join.GetOtherParticipants()
	if len(others) != 1 || others[0].GetIdentity() != "bob" {
		t.Errorf("second alice sees %v", others)
	}
	// Bob hears of the old session leaving, then of the new one.
	old, fresh := a1.join.GetParticipant().GetSid(), a2.join.GetParticipant().GetSid()
	b.waitFor(5*time.Second, func(r *livekit.SignalResponse) bool {
		for _, p := range r.GetUpdate().GetParticipants() {
			if p.GetSid() == old && p.GetState() == livekit.ParticipantInfo_DISCONNECTED {
				return true
			}
		}
		return false
	})
	b.waitFor(5*time.Second, func(r *livekit.SignalResponse) bool {
		for _, p := range r.GetUpdate().GetParticipants() {
			if p.GetSid() == fresh {
				return true
			}
		}
		return false
	})
}

// TestEveryRequestEmpty sends every request type empty and as JSON null:
// nothing panics, and the connection still answers.
func TestEveryRequestEmpty(t *testing.T) {
	e := newSigEnv(t, nil)
	a := dialRaw(t, e, sigToken(t, "alice", "room", time.Hour, nil), "")
	defer a.close()
	fields := (&livekit.SignalRequest{}).ProtoReflect().Descriptor().Oneofs().ByName("message").Fields()
	for i := 0; i < fields.Len(); i++ {
		f := fields.Get(i)
		name := f.JSONName()
		if name == "leave" {
			continue
		}
		if f.Kind() == protoreflect.MessageKind {
			a.sendFrame(websocket.MessageText, []byte(`{"`+name+`":{}}`))
		}
		a.sendFrame(websocket.MessageText, []byte(`{"`+name+`":null}`))
	}
	// Requests run in order: this answer comes after all of the above ran.
	a.send(&livekit.SignalRequest{Message: &livekit.SignalRequest_Subscription{Subscription: &livekit.UpdateSubscription{TrackSids: []string{"TR_last"}, Subscribe: true}}})
	a.waitFor(5*time.Second, func(r *livekit.SignalResponse) bool { return r.GetSubscriptionResponse().GetTrackSid() == "TR_last" })
}
