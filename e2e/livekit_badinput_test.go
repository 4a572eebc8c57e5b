package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"
	"github.com/livekit/protocol/livekit"
	"github.com/pion/webrtc/v4"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// TestLiveKitBadInput: a raw websocket client with a valid token sends
// the focus's LiveKit signalling what no client should: frames that are not
// protobuf, messages of unknown and unimplemented types, requests naming
// tracks that do not exist or belong to someone else, offers and
// candidates that do not parse, and floods. After each, the connection
// either still answers a ping or was closed with a close frame (then the
// client reconnects for the next case). Wrong, expired and missing JWTs
// get 401 before any websocket. Alice and Bob, two Go SDK clients in the
// same room, keep receiving each other throughout, and no one mutes Bob's
// camera but Bob.
func TestLiveKitBadInput(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	env := startLiveKit(t, nil)
	const room = "bad-input"
	alice := env.join(ctx, t, "alice", room, lkPublish{Audio: true, Video: lkVideoSingle})
	bob := env.join(ctx, t, "bob", room, lkPublish{Audio: true, Video: lkVideoSingle})
	flows := allFlows(alice, bob)
	waitFlowing(ctx, t, "before the bad input", flows, lkMore)
	bobVideo := bob.senders[webrtc.RTPCodecTypeVideo].pub.SID()

	token := lkToken(t, "mallory", room, time.Hour)
	raw := lkDialRaw(ctx, t, env, token)
	if raw.join == nil {
		t.Fatal("mallory: no join response")
	}
	t.Logf("mallory joined as %s in room %q; server %q, protocol %d", raw.join.GetParticipant().GetSid(), raw.join.GetRoom().GetName(),
		raw.join.GetServerInfo().GetVersion(), raw.join.GetServerInfo().GetProtocol())

	binary := func(b []byte) func(context.Context, *lkRaw) error {
		return func(ctx context.Context, r *lkRaw) error { return r.c.Write(ctx, websocket.MessageBinary, b) }
	}
	text := func(s string) func(context.Context, *lkRaw) error {
		return func(ctx context.Context, r *lkRaw) error { return r.c.Write(ctx, websocket.MessageText, []byte(s)) }
	}
	req := func(m *livekit.SignalRequest) []byte {
		b, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	flood := func(n int, m func(i int) *livekit.SignalRequest) func(context.Context, *lkRaw) error {
		return func(ctx context.Context, r *lkRaw) error {
			for i := range n {
				if err := r.c.Write(ctx, websocket.MessageBinary, req(m(i))); err != nil {
					return fmt.Errorf("after %d of %d: %w", i, n, err)
				}
			}
			return nil
		}
	}
	offer := req(&livekit.SignalRequest{Message: &livekit.SignalRequest_Offer{Offer: &livekit.SessionDescription{Type: "offer", Sdp: "v=0\r\n"}}})
	unknownField := protowire.AppendVarint(protowire.AppendTag(nil, 250, protowire.VarintType), 1)

	cases := []struct {
		name string
		send func(context.Context, *lkRaw) error
	}{
		{"garbage bytes", binary([]byte{0xff, 0xff, 0xff, 0xff, 0x0f})},
		{"a truncated offer", binary(offer[:len(offer)/2])},
		{"an empty frame", binary(nil)},
		{"an unknown field only (no message type)", binary(unknownField)},
		{"text that is not JSON", text("{not json")},
		{"JSON of no known message", text(`{"nonsense": {"a": 1}}`)},
		{"an unimplemented message type (simulate)", binary(req(&livekit.SignalRequest{Message: &livekit.SignalRequest_Simulate{Simulate: &livekit.SimulateScenario{Scenario: &livekit.SimulateScenario_NodeFailure{NodeFailure: true}}}}))},
		{"an unimplemented message type (data blob)", binary(req(&livekit.SignalRequest{Message: &livekit.SignalRequest_GetDataBlobRequest{GetDataBlobRequest: &livekit.GetDataBlobRequest{}}}))},
		{"mute of a track that does not exist", binary(req(&livekit.SignalRequest{Message: &livekit.SignalRequest_Mute{Mute: &livekit.MuteTrackRequest{Sid: "TR_doesnotexist", Muted: true}}}))},
		{"mute of bob's camera", binary(req(&livekit.SignalRequest{Message: &livekit.SignalRequest_Mute{Mute: &livekit.MuteTrackRequest{Sid: bobVideo, Muted: true}}}))},
		{"track settings for a track that does not exist", binary(req(&livekit.SignalRequest{Message: &livekit.SignalRequest_TrackSetting{TrackSetting: &livekit.UpdateTrackSettings{TrackSids: []string{"TR_doesnotexist"}, Width: 1, Height: 1}}}))},
		{"subscription to a track that does not exist", binary(req(&livekit.SignalRequest{Message: &livekit.SignalRequest_Subscription{Subscription: &livekit.UpdateSubscription{TrackSids: []string{"TR_doesnotexist"}, Subscribe: true, ParticipantTracks: []*livekit.ParticipantTracks{{ParticipantSid: "PA_nobody", TrackSids: []string{"TR_nothing"}}}}}}))},
		{"layers for a track that does not exist", binary(req(&livekit.SignalRequest{Message: &livekit.SignalRequest_UpdateLayers{UpdateLayers: &livekit.UpdateVideoLayers{TrackSid: "TR_doesnotexist"}}}))},
		{"an offer that does not parse", binary(offer)},
		{"an answer with no offer", binary(req(&livekit.SignalRequest{Message: &livekit.SignalRequest_Answer{Answer: &livekit.SessionDescription{Type: "answer", Sdp: "v=0\r\n"}}}))},
		{"a candidate that does not parse", binary(req(&livekit.SignalRequest{Message: &livekit.SignalRequest_Trickle{Trickle: &livekit.TrickleRequest{CandidateInit: "{not json", Target: livekit.SignalTarget_PUBLISHER}}}))},
		{"a flood of 5000 pings", flood(5000, func(i int) *livekit.SignalRequest {
			return &livekit.SignalRequest{Message: &livekit.SignalRequest_PingReq{PingReq: &livekit.Ping{Timestamp: int64(i + 1)}}}
		})},
		{"a flood of 5000 track settings", flood(5000, func(i int) *livekit.SignalRequest {
			return &livekit.SignalRequest{Message: &livekit.SignalRequest_TrackSetting{TrackSetting: &livekit.UpdateTrackSettings{TrackSids: []string{fmt.Sprintf("TR_%d", i)}}}}
		})},
		{"a flood of 300 add_track requests", flood(300, func(i int) *livekit.SignalRequest {
			return &livekit.SignalRequest{Message: &livekit.SignalRequest_AddTrack{AddTrack: &livekit.AddTrackRequest{Cid: fmt.Sprintf("flood-%d", i), Name: "flood", Type: livekit.TrackType_AUDIO, Source: livekit.TrackSource_MICROPHONE}}}
		})},
		{"a mute flood of 2000 on bob's camera", flood(2000, func(i int) *livekit.SignalRequest {
			return &livekit.SignalRequest{Message: &livekit.SignalRequest_Mute{Mute: &livekit.MuteTrackRequest{Sid: bobVideo, Muted: i%2 == 0}}}
		})},
	}
	for _, c := range cases {
		before := raw.count()
		if err := c.send(ctx, raw); err != nil {
			// The focus may close in the middle of a flood; what matters is
			// how it closed.
			t.Logf("%s: sending: %v", c.name, err)
		}
		outcome := raw.healthy(ctx)
		answers := raw.since(before)
		t.Logf("%s: %s; the focus sent %s", c.name, outcome, lkSummarize(answers))
		if raw.closedBadly() {
			t.Errorf("%s: the connection ended without a close frame: %v", c.name, raw.readErr())
		}
		if !raw.alive() {
			raw = lkDialRaw(ctx, t, env, token)
		}
		if rp := alice.remotePub(bob, webrtc.RTPCodecTypeVideo); rp != nil && rp.IsMuted() {
			t.Errorf("%s: alice sees bob's camera muted", c.name)
		}
		waitFlowing(ctx, t, "alice and bob after "+c.name, flows, lkMore/3)
	}
	raw.close()

	// Tokens that must not get a websocket. (auth.AccessToken cannot make
	// an expired one: it treats a validity of zero or less as the default.)
	signed := func(secret string, exp time.Time) string {
		claims := jwt.MapClaims{
			"iss": lkAPIKey, "sub": "eve", "nbf": exp.Add(-time.Hour).Unix(), "exp": exp.Unix(),
			"video": map[string]any{"roomJoin": true, "room": room, "canPublish": true, "canSubscribe": true},
		}
		s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(secret))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	for _, c := range []struct{ name, token string }{
		{"a JWT signed with another secret", signed(strings.Repeat("w", 40), time.Now().Add(time.Hour))},
		{"an expired JWT", signed(lkAPISecret, time.Now().Add(-time.Minute))},
		{"a token that is not a JWT", "not-a-jwt"},
		{"no token", ""},
	} {
		q := lkRawQuery(c.token)
		status, body := lkValidate(ctx, t, env, q)
		if status != http.StatusUnauthorized {
			t.Errorf("%s: /rtc/validate answered %d %q, want 401", c.name, status, body)
		}
		dctx, dcancel := context.WithTimeout(ctx, lkWait)
		conn, res, err := websocket.Dial(dctx, env.wsURL+"/rtc?"+q.Encode(), nil)
		dcancel()
		switch {
		case err == nil:
			conn.CloseNow()
			t.Errorf("%s: the websocket was accepted", c.name)
		case res == nil:
			t.Errorf("%s: no HTTP answer: %v", c.name, err)
		case res.StatusCode != http.StatusUnauthorized:
			t.Errorf("%s: /rtc answered %d, want 401", c.name, res.StatusCode)
		default:
			t.Logf("%s: /rtc %d, /rtc/validate %d %q", c.name, res.StatusCode, status, body)
		}
	}
	// The same claims, signed with the secret and not expired, pass.
	if status, body := lkValidate(ctx, t, env, lkRawQuery(signed(lkAPISecret, time.Now().Add(time.Hour)))); status != http.StatusOK {
		t.Errorf("/rtc/validate with a good token: %d %q, want 200", status, body)
	}

	waitFlowing(ctx, t, "alice and bob at the end", flows, lkMore)
	checkIntact(t, alice, bob)
	if strings.Contains(env.focus.Log(), "panic") {
		t.Errorf("the focus log mentions a panic")
	}
}

// lkRaw is a bare LiveKit signalling connection: protobuf frames over a
// websocket, no WebRTC.
type lkRaw struct {
	c    *websocket.Conn
	join *livekit.JoinResponse

	mu      sync.Mutex
	got     []*livekit.SignalResponse
	notify  chan struct{} // a message arrived or reading ended
	done    chan struct{} // reading ended
	err     error         // why reading ended
	pingSeq int64
}

// lkRawQuery is the query of /rtc and /rtc/validate as livekit-client
// builds it, with the token in access_token.
func lkRawQuery(token string) url.Values {
	q := url.Values{"protocol": {"16"}, "auto_subscribe": {"0"}, "sdk": {"js"}, "version": {"2.23.0"}}
	if token != "" {
		q.Set("access_token", token)
	}
	return q
}

// lkDialRaw connects and reads the join response.
func lkDialRaw(ctx context.Context, t *testing.T, env *lkEnv, token string) *lkRaw {
	t.Helper()
	dctx, cancel := context.WithTimeout(ctx, lkWait)
	defer cancel()
	c, res, err := websocket.Dial(dctx, env.wsURL+"/rtc?"+lkRawQuery(token).Encode(), nil)
	if err != nil {
		status := 0
		if res != nil {
			status = res.StatusCode
		}
		t.Fatalf("raw websocket: %v (HTTP %d)", err, status)
	}
	c.SetReadLimit(4 << 20)
	r := &lkRaw{c: c, notify: make(chan struct{}, 1), done: make(chan struct{})}
	t.Cleanup(r.close)
	go r.read()
	if err := r.wait(ctx, func(m *livekit.SignalResponse) bool { return m.GetJoin() != nil }); err != nil {
		t.Fatalf("raw websocket: no join response: %v", err)
	}
	r.mu.Lock()
	for _, m := range r.got {
		if j := m.GetJoin(); j != nil {
			r.join = j
		}
	}
	r.mu.Unlock()
	return r
}

func (r *lkRaw) read() {
	defer close(r.done)
	for {
		typ, b, err := r.c.Read(context.Background())
		if err != nil {
			r.mu.Lock()
			r.err = err
			r.mu.Unlock()
			r.signal()
			return
		}
		m := &livekit.SignalResponse{}
		if typ == websocket.MessageBinary {
			err = proto.Unmarshal(b, m)
		} else {
			err = fmt.Errorf("a text frame: %.80q", b)
		}
		r.mu.Lock()
		if err != nil {
			r.err = fmt.Errorf("undecodable message from the focus: %w", err)
			r.mu.Unlock()
			r.signal()
			r.c.CloseNow()
			return
		}
		r.got = append(r.got, m)
		r.mu.Unlock()
		r.signal()
	}
}

func (r *lkRaw) signal() {
	select {
	case r.notify <- struct{}{}:
	default:
	}
}

func (r *lkRaw) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.got)
}

func (r *lkRaw) since(n int) []*livekit.SignalResponse {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*livekit.SignalResponse(nil), r.got[n:]...)
}

func (r *lkRaw) alive() bool {
	select {
	case <-r.done:
		return false
	default:
		return true
	}
}

func (r *lkRaw) readErr() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

// closedBadly reports a connection that ended other than by a close frame.
func (r *lkRaw) closedBadly() bool {
	return !r.alive() && websocket.CloseStatus(r.readErr()) == -1
}

// wait waits for a message that matches, or for the connection to end.
func (r *lkRaw) wait(ctx context.Context, match func(*livekit.SignalResponse) bool) error {
	ctx, cancel := context.WithTimeout(ctx, lkWait)
	defer cancel()
	seen := 0
	for {
		r.mu.Lock()
		for _, m := range r.got[seen:] {
			if match(m) {
				r.mu.Unlock()
				return nil
			}
		}
		seen = len(r.got)
		err := r.err
		r.mu.Unlock()
		if err != nil {
			return err
		}
		select {
		case <-r.notify:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// healthy pings (both the old ping and ping_req, as livekit-client does)
// and describes what happened: a pong, or how the connection closed.
func (r *lkRaw) healthy(ctx context.Context) string {
	r.mu.Lock()
	r.pingSeq++
	ts := time.Now().UnixMilli()*1000 + r.pingSeq%1000
	r.mu.Unlock()
	for _, m := range []*livekit.SignalRequest{
		{Message: &livekit.SignalRequest_Ping{Ping: ts}},
		{Message: &livekit.SignalRequest_PingReq{PingReq: &livekit.Ping{Timestamp: ts}}},
	} {
		b, _ := proto.Marshal(m)
		if err := r.c.Write(ctx, websocket.MessageBinary, b); err != nil {
			break
		}
	}
	err := r.wait(ctx, func(m *livekit.SignalResponse) bool {
		return m.GetPong() == ts || m.GetPongResp().GetLastPingTimestamp() == ts
	})
	switch {
	case err == nil:
		return "still answers pings"
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Sprintf("no pong within %v and no close", lkWait)
	case websocket.CloseStatus(err) != -1:
		var ce websocket.CloseError
		errors.As(err, &ce)
		return fmt.Sprintf("closed with %d %q", ce.Code, ce.Reason)
	default:
		return fmt.Sprintf("connection ended: %v", err)
	}
}

func (r *lkRaw) close() {
	r.c.CloseNow()
	<-r.done
}

// lkSummarize counts the focus's messages by type, and the errors and
// leaves among them by what they say, for the log.
func lkSummarize(ms []*livekit.SignalResponse) string {
	counts := map[string]int{}
	var order []string
	count := func(what string) {
		if counts[what] == 0 {
			order = append(order, what)
		}
		counts[what]++
	}
	for _, m := range ms {
		count(strings.TrimPrefix(fmt.Sprintf("%T", m.GetMessage()), "*livekit.SignalResponse_"))
		switch v := m.GetMessage().(type) {
		case *livekit.SignalResponse_Leave:
			count(fmt.Sprintf("(leave: %s %s)", v.Leave.GetReason(), v.Leave.GetAction()))
		case *livekit.SignalResponse_RequestResponse:
			count(fmt.Sprintf("(request_response: %s %q)", v.RequestResponse.GetReason(), v.RequestResponse.GetMessage()))
		case *livekit.SignalResponse_SubscriptionResponse:
			count(fmt.Sprintf("(subscription_response: %s %s)", v.SubscriptionResponse.GetTrackSid(), v.SubscriptionResponse.GetErr()))
		}
	}
	if len(order) == 0 {
		return "nothing"
	}
	parts := make([]string, len(order))
	for i, what := range order {
		parts[i] = fmt.Sprintf("%d %s", counts[what], what)
	}
	return strings.Join(parts, ", ")
}

// lkValidate asks /rtc/validate, as livekit-client does after a failed
// websocket, and returns its status and body.
func lkValidate(ctx context.Context, t *testing.T, env *lkEnv, q url.Values) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, env.focus.URL+"/rtc/validate?"+q.Encode(), nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET /rtc/validate: %v", err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(res.Body, 4096))
	return res.StatusCode, string(b)
}
