package whip

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/rs/zerolog"

	"github.com/focus-sfu/focus/focus"
	"github.com/focus-sfu/focus/rtc"
)

type env struct {
	t   *testing.T
	srv *Server
	sfu *focus.SFU
	url string
}

func newEnv(t *testing.T, mod func(*Options)) *env {
	t.Helper()
	engine, err := rtc.New(rtc.Config{BindAddress: "127.0.0.1"}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	sfu := focus.New(focus.Options{})
	opts := Options{Engine: engine, SFU: sfu, CORSOrigins: []string{"*"}, Log: zerolog.Nop()}
	if mod != nil {
		mod(&opts)
	}
	srv, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/", srv.Handler())
	mux.Handle("/api/rooms", srv.StatusHandler())
	hs := httptest.NewServer(mux)
	t.Cleanup(func() {
		hs.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Close(ctx); err != nil {
			t.Errorf("close: %v", err)
		}
		sfu.Close()
		_ = engine.Close()
	})
	return &env{t: t, srv: srv, sfu: sfu, url: hs.URL}
}

func (e *env) do(method, path, ctype, body string, hdr map[string]string) *http.Response {
	e.t.Helper()
	req, err := http.NewRequest(method, e.url+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func body(t *testing.T, r *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// client is a pion peer used to make real offers.
type client struct {
	pc    *webrtc.PeerConnection
	offer string
}

// newClient makes a pion peer that sends (publisher) or receives
// (viewer) audio and video, with the codecs given, and its offer.
func newClient(t *testing.T, send bool, codecs ...webrtc.RTPCodecParameters) *client {
	t.Helper()
	m := &webrtc.MediaEngine{}
	if len(codecs) == 0 {
		codecs = []webrtc.RTPCodecParameters{rtc.Codecs[0], rtc.Codecs[1]}
	}
	for _, c := range codecs {
		kind := webrtc.RTPCodecTypeVideo
		if strings.HasPrefix(c.MimeType, "audio/") {
			kind = webrtc.RTPCodecTypeAudio
		}
		if err := m.RegisterCodec(c, kind); err != nil {
			t.Fatal(err)
		}
	}
	var se webrtc.SettingEngine
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	api := webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithSettingEngine(se))
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	for _, c := range codecs {
		kind := webrtc.RTPCodecTypeVideo
		if strings.HasPrefix(c.MimeType, "audio/") {
			kind = webrtc.RTPCodecTypeAudio
		}
		if send {
			tr, err := webrtc.NewTrackLocalStaticRTP(c.RTPCodecCapability, kind.String(), "test")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := pc.AddTransceiverFromTrack(tr, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
				t.Fatal(err)
			}
		} else if _, err := pc.AddTransceiverFromKind(kind, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			t.Fatal(err)
		}
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	<-gathered
	return &client{pc: pc, offer: pc.LocalDescription().SDP}
}

func (c *client) accept(t *testing.T, r *http.Response) {
	t.Helper()
	if r.StatusCode != http.StatusCreated {
		t.Fatalf("status %d: %s", r.StatusCode, body(t, r))
	}
	if err := c.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: body(t, r)}); err != nil {
		t.Fatal(err)
	}
}

func waitConnected(t *testing.T, pc *webrtc.PeerConnection) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for pc.ConnectionState() != webrtc.PeerConnectionStateConnected {
		if time.Now().After(deadline) {
			t.Fatalf("not connected: %s", pc.ConnectionState())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func rooms(t *testing.T, e *env) []RoomStatus {
	t.Helper()
	r := e.do("GET", "/api/rooms", "", "", nil)
	var out struct{ Rooms []RoomStatus }
	if err := json.NewDecoder(r.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out.Rooms
}

const noMediaSDP = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"

// TestBadInput sends every malformed request while a real publisher is
// connected, and checks each gets its status and reason, and that the
// publisher carries on.
func TestBadInput(t *testing.T) {
	e := newEnv(t, nil)
	pub := newClient(t, true)
	pub.accept(t, e.do("POST", "/whip/room", "application/sdp", pub.offer, nil))
	waitConnected(t, pub.pc)

	pcmu := webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypePCMU, ClockRate: 8000}, PayloadType: 0}
	unsupported := newClient(t, true, pcmu).offer
	viewer := newClient(t, false).offer

	cases := []struct {
		name, method, path, ctype, body string
		status                          int
		reason                          string
	}{
		{"empty body", "POST", "/whip/room", "application/sdp", "", 400, "empty"},
		{"garbage SDP", "POST", "/whip/room", "application/sdp", "hello there", 400, "malformed SDP"},
		{"offer without media", "POST", "/whip/room", "application/sdp", noMediaSDP, 400, "no audio or video"},
		{"only unsupported codecs", "POST", "/whip/room", "application/sdp", unsupported, 422, "no codec"},
		{"viewer offer to whip", "POST", "/whip/room", "application/sdp", viewer, 400, "direction"},
		{"wrong content type", "POST", "/whip/room", "text/plain", pub.offer, 415, "application/sdp"},
		{"no content type", "POST", "/whip/room", "", pub.offer, 415, "application/sdp"},
		{"body over 64 KiB", "POST", "/whip/room", "application/sdp", strings.Repeat("a", MaxBody+1), 413, "larger"},
		{"room too long", "POST", "/whip/" + strings.Repeat("r", 129), "application/sdp", pub.offer, 400, "longer"},
		{"room with forbidden characters", "POST", "/whip/r%21oom", "application/sdp", pub.offer, 400, "forbidden"},
		{"unknown resource on PATCH", "PATCH", "/whip/room/0123", "application/trickle-ice-sdpfrag", "a=end-of-candidates", 404, "no whip session"},
		{"unknown resource on DELETE", "DELETE", "/whip/room/0123", "", "", 404, "no whip session"},
		{"WHEP on a room with no publisher", "POST", "/whep/empty", "application/sdp", viewer, 404, "nothing is published"},
		{"WHEP pinned to an unknown stream", "POST", "/whep/room?stream=nope", "application/sdp", viewer, 404, "no stream"},
		{"publisher offer to whep", "POST", "/whep/room", "application/sdp", pub.offer, 400, "direction"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := e.do(c.method, c.path, c.ctype, c.body, nil)
			b := body(t, r)
			if r.StatusCode != c.status || !strings.Contains(b, c.reason) {
				t.Fatalf("got %d %q, want %d with %q", r.StatusCode, b, c.status, c.reason)
			}
		})
	}
	if pub.pc.ConnectionState() != webrtc.PeerConnectionStateConnected {
		t.Fatal("the publisher was disturbed by bad requests")
	}
	rs := rooms(t, e)
	if len(rs) != 1 || len(rs[0].Publishers) != 1 {
		t.Fatalf("rooms after bad input: %+v", rs)
	}
}

func TestTokens(t *testing.T) {
	e := newEnv(t, func(o *Options) {
		o.Tokens = []Token{
			{Token: "pub", Rooms: []string{"live-*"}, Publish: true},
			{Token: "view", Rooms: []string{"*"}, View: true},
		}
		o.AdminToken = "admin"
	})
	offer := newClient(t, true).offer
	for _, c := range []struct {
		name, path, token string
		status            int
	}{
		{"missing", "/whip/live-1", "", 401},
		{"wrong", "/whip/live-1", "Bearer nope", 401},
		{"view token cannot publish", "/whip/live-1", "Bearer view", 401},
		{"room outside the pattern", "/whip/other", "Bearer pub", 401},
		{"not bearer", "/whip/live-1", "Basic cHViOnB1Yg==", 401},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := e.do("POST", c.path, "application/sdp", offer, map[string]string{"Authorization": c.token})
			if r.StatusCode != c.status || !strings.HasPrefix(r.Header.Get("WWW-Authenticate"), "Bearer") {
				t.Fatalf("got %d (WWW-Authenticate %q), want %d", r.StatusCode, r.Header.Get("WWW-Authenticate"), c.status)
			}
		})
	}
	pub := newClient(t, true)
	r := e.do("POST", "/whip/live-1", "application/sdp", pub.offer, map[string]string{"Authorization": "Bearer pub"})
	loc := r.Header.Get("Location")
	pub.accept(t, r)
	// DELETE needs the publish token too.
	if r := e.do("DELETE", loc, "", "", nil); r.StatusCode != 401 {
		t.Fatalf("unauthenticated DELETE: %d", r.StatusCode)
	}
	// OPTIONS is never authenticated.
	if r := e.do("OPTIONS", "/whip/live-1", "", "", nil); r.StatusCode != 204 {
		t.Fatalf("OPTIONS: %d", r.StatusCode)
	}
	// The status API wants the admin token.
	if r := e.do("GET", "/api/rooms", "", "", nil); r.StatusCode != 401 {
		t.Fatalf("status without admin token: %d", r.StatusCode)
	}
	if r := e.do("GET", "/api/rooms", "", "", map[string]string{"Authorization": "Bearer admin"}); r.StatusCode != 200 {
		t.Fatalf("status with admin token: %d", r.StatusCode)
	}
	if r := e.do("DELETE", loc, "", "", map[string]string{"Authorization": "Bearer pub"}); r.StatusCode != 200 {
		t.Fatalf("DELETE: %d", r.StatusCode)
	}
}

func TestLimits(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Limits = Limits{PerRoom: 1, PerIP: 2, Total: 3} })
	post := func(room string) *http.Response {
		return e.do("POST", "/whip/"+room, "application/sdp", newClient(t, true).offer, nil)
	}
	if r := post("a"); r.StatusCode != 201 {
		t.Fatalf("first: %d", r.StatusCode)
	}
	r := post("a")
	if r.StatusCode != 503 || r.Header.Get("Retry-After") == "" || !strings.Contains(body(t, r), "room") {
		t.Fatalf("second in room: %d %q", r.StatusCode, r.Header.Get("Retry-After"))
	}
	if r := post("b"); r.StatusCode != 201 {
		t.Fatalf("second room: %d", r.StatusCode)
	}
	if r := post("c"); r.StatusCode != 503 || !strings.Contains(body(t, r), "address") {
		t.Fatalf("third from one address: %d", r.StatusCode)
	}
}

func TestOptionsAndCORS(t *testing.T) {
	e := newEnv(t, func(o *Options) {
		o.ICEServers = []rtc.ICEServer{{URLs: []string{"stun:stun.example.org"}}, {URLs: []string{"turn:turn.example.org"}, Username: "u", Credential: "p"}}
		o.CORSOrigins = []string{"https://player.example"}
	})
	r := e.do("OPTIONS", "/whip/room", "", "", map[string]string{"Origin": "https://player.example"})
	if r.StatusCode != 204 || r.Header.Get("Accept-Post") != "application/sdp" {
		t.Fatalf("OPTIONS: %d Accept-Post %q", r.StatusCode, r.Header.Get("Accept-Post"))
	}
	if r.Header.Get("Access-Control-Allow-Origin") != "https://player.example" {
		t.Fatalf("allow origin %q", r.Header.Get("Access-Control-Allow-Origin"))
	}
	exp := r.Header.Get("Access-Control-Expose-Headers")
	for _, h := range []string{"Location", "Link", "ETag"} {
		if !strings.Contains(exp, h) {
			t.Fatalf("expose headers %q lack %s", exp, h)
		}
	}
	if links := r.Header.Values("Link"); len(links) != 2 || !strings.Contains(links[1], `username="u"`) {
		t.Fatalf("links %q", links)
	}
	r = e.do("OPTIONS", "/whip/room", "", "", map[string]string{"Origin": "https://evil.example"})
	if r.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatal("CORS granted to an origin not configured")
	}
}

func TestPatchTrickleAndRestart(t *testing.T) {
	e := newEnv(t, nil)
	pub := newClient(t, true)
	r := e.do("POST", "/whip/room", "application/sdp", pub.offer, nil)
	loc, etag := r.Header.Get("Location"), r.Header.Get("ETag")
	if !strings.HasPrefix(loc, "/whip/room/") || len(strings.TrimPrefix(loc, "/whip/room/")) != 32 || etag == "" {
		t.Fatalf("Location %q ETag %q", loc, etag)
	}
	pub.accept(t, r)
	waitConnected(t, pub.pc)

	frag := "a=mid:0\r\na=candidate:1 1 udp 2130706431 127.0.0.1 40000 typ host\r\na=end-of-candidates\r\n"
	if r := e.do("PATCH", loc, "application/trickle-ice-sdpfrag", frag, nil); r.StatusCode != 204 {
		t.Fatalf("trickle: %d %s", r.StatusCode, body(t, r))
	}
	if r := e.do("PATCH", loc, "application/sdp", frag, nil); r.StatusCode != 415 {
		t.Fatalf("trickle with the wrong type: %d", r.StatusCode)
	}
	if r := e.do("PATCH", loc, "application/trickle-ice-sdpfrag", "a=candidate:garbage", nil); r.StatusCode != 400 {
		t.Fatalf("bad candidate: %d", r.StatusCode)
	}
	restart := "a=ice-ufrag:newufrag1\r\na=ice-pwd:newpasswordnewpasswordxx\r\n"
	if r := e.do("PATCH", loc, "application/trickle-ice-sdpfrag", restart, nil); r.StatusCode != 428 {
		t.Fatalf("restart without If-Match: %d", r.StatusCode)
	}
	if r := e.do("PATCH", loc, "application/trickle-ice-sdpfrag", restart, map[string]string{"If-Match": `"stale"`}); r.StatusCode != 412 {
		t.Fatalf("restart with a stale If-Match: %d", r.StatusCode)
	}
	r = e.do("PATCH", loc, "application/trickle-ice-sdpfrag", restart, map[string]string{"If-Match": etag})
	b := body(t, r)
	if r.StatusCode != 200 || r.Header.Get("Content-Type") != "application/trickle-ice-sdpfrag" {
		t.Fatalf("restart: %d %s", r.StatusCode, b)
	}
	if ne := r.Header.Get("ETag"); ne == "" || ne == etag {
		t.Fatalf("restart kept ETag %q", ne)
	}
	if !strings.Contains(b, "a=ice-ufrag:") || !strings.Contains(b, "a=candidate:") {
		t.Fatalf("restart answer lacks credentials or candidates:\n%s", b)
	}
	if r := e.do("DELETE", loc, "", "", nil); r.StatusCode != 200 {
		t.Fatalf("DELETE: %d", r.StatusCode)
	}
	if r := e.do("DELETE", loc, "", "", nil); r.StatusCode != 404 {
		t.Fatalf("second DELETE: %d", r.StatusCode)
	}
	if rs := rooms(t, e); len(rs) != 0 {
		t.Fatalf("rooms after DELETE: %+v", rs)
	}
}

func TestViewerGetsPublishersCodecsOnly(t *testing.T) {
	e := newEnv(t, nil)
	publishRoom(t, e)
	h264 := rtc.Codecs[4]
	r := e.do("POST", "/whep/room", "application/sdp", newClient(t, false, h264).offer, nil)
	if b := body(t, r); r.StatusCode != 422 || !strings.Contains(b, "video/VP8") {
		t.Fatalf("viewer without the codec: %d %s", r.StatusCode, b)
	}
	v := newClient(t, false)
	v.accept(t, e.do("POST", "/whep/room", "application/sdp", v.offer, nil))
	waitConnected(t, v.pc)
	if rs := rooms(t, e); len(rs) != 1 || rs[0].Viewers != 1 || len(rs[0].Publishers[0].Tracks) != 2 {
		t.Fatalf("rooms %+v", rs)
	}
}

// sendSilence writes one packet on each of the peer's tracks.
// publishRoom connects a publisher of audio and video to room "room"
// and waits until the core has both its tracks.
func publishRoom(t *testing.T, e *env) *client {
	t.Helper()
	pub := newClient(t, true)
	pub.accept(t, e.do("POST", "/whip/room", "application/sdp", pub.offer, nil))
	waitConnected(t, pub.pc)
	deadline := time.Now().Add(10 * time.Second)
	for len(e.sfu.Conference("whip:room").Tracks()) < 2 {
		// Tracks are published when their first packet arrives.
		if time.Now().After(deadline) {
			t.Fatal("publisher's tracks never appeared")
		}
		sendSilence(t, pub.pc)
		time.Sleep(20 * time.Millisecond)
	}
	return pub
}

func sendSilence(t *testing.T, pc *webrtc.PeerConnection) {
	for _, s := range pc.GetSenders() {
		if tr, ok := s.Track().(*webrtc.TrackLocalStaticRTP); ok {
			payload := []byte{0xf8}
			if tr.Kind() == webrtc.RTPCodecTypeVideo {
				payload = []byte{0x10, 0x00, 0x9d, 0x01, 0x2a}
			}
			if _, err := tr.Write(append([]byte{0x80, 0x60, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1}, payload...)); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// A viewer that arrives right after the publisher connected, before its
// first packets announced its tracks, waits for them instead of getting
// 404 or half the media.
func TestViewerWaitsForNewPublishersTracks(t *testing.T) {
	e := newEnv(t, nil)
	pub := newClient(t, true)
	pub.accept(t, e.do("POST", "/whip/room", "application/sdp", pub.offer, nil))
	waitConnected(t, pub.pc)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		time.Sleep(300 * time.Millisecond)
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
				sendSilence(t, pub.pc)
			}
		}
	}()
	defer func() { close(stop); <-done }()
	v := newClient(t, false)
	v.accept(t, e.do("POST", "/whep/room", "application/sdp", v.offer, nil))
	if rs := rooms(t, e); len(rs) != 1 || rs[0].Viewers != 1 {
		t.Fatalf("rooms %+v", rs)
	}
	for _, p := range e.sfu.Conference("whip:room").Participants() {
		if p.Info().Identity == "whep" && len(p.DownTracks()) != 2 {
			t.Fatalf("viewer got %d tracks, want audio and video", len(p.DownTracks()))
		}
	}
}

// RFC 9725 offers may be setup:actpass or setup:active; the focus
// answers passive to both, which also lets it choose the SRTP profile.
func TestOfferSetupRoles(t *testing.T) {
	e := newEnv(t, nil)
	for _, role := range []string{"actpass", "active"} {
		offer := strings.ReplaceAll(newClient(t, true).offer, "a=setup:actpass", "a=setup:"+role)
		r := e.do("POST", "/whip/room", "application/sdp", offer, nil)
		b := body(t, r)
		if r.StatusCode != 201 || !strings.Contains(b, "a=setup:passive") {
			t.Fatalf("setup:%s: %d, answer has passive: %v", role, r.StatusCode, strings.Contains(b, "a=setup:passive"))
		}
	}
}

// A viewer may pin (?stream=) a participant of the room that is not a
// WHIP session: one that another front-end, or the cascade, put in the
// room's conference.
func TestViewerPinsAParticipantOfAnotherFrontEnd(t *testing.T) {
	e := newEnv(t, nil)
	other, err := e.sfu.Join(ConferenceID("room"), focus.ParticipantInfo{ID: "elsewhere", Identity: "proxy", Role: focus.RoleIngress, Origin: "b"})
	if err != nil {
		t.Fatal(err)
	}
	for _, info := range []focus.TrackInfo{
		{Kind: focus.KindAudio, Codec: focus.Codec{MimeType: "audio/opus", ClockRate: 48000, Channels: 2}},
		{Kind: focus.KindVideo, Codec: focus.Codec{MimeType: "video/VP8", ClockRate: 90000}},
	} {
		if _, err := other.Publish(info, nil); err != nil {
			t.Fatal(err)
		}
	}
	publishRoom(t, e) // the newest publisher, which an unpinned viewer gets

	v := newClient(t, false)
	r := e.do("POST", "/whep/room?stream=elsewhere", "application/sdp", v.offer, nil)
	v.accept(t, r)
	var viewer *focus.Participant
	for _, p := range e.sfu.Conference("whip:room").Participants() {
		if p.Info().Identity == "whep" {
			viewer = p
		}
	}
	if viewer == nil {
		t.Fatal("no viewer joined")
	}
	downs := viewer.DownTracks()
	if len(downs) != 2 {
		t.Fatalf("viewer got %d tracks, want 2", len(downs))
	}
	for _, d := range downs {
		if got := d.Source().Owner().ID(); got != "elsewhere" {
			t.Errorf("viewer's %s track comes from %s, want the pinned participant", d.Kind(), got)
		}
	}

	// /api/rooms lists it beside the WHIP publisher, with its origin.
	var origins []string
	for _, r := range rooms(t, e) {
		for _, p := range r.Publishers {
			origins = append(origins, p.ID+"@"+p.Origin)
		}
	}
	if got := strings.Join(origins, " "); !strings.HasSuffix(got, " elsewhere@b") || len(origins) != 2 {
		t.Errorf("/api/rooms publishers %q, want the WHIP publisher then elsewhere@b", got)
	}

	r = e.do("POST", "/whep/room?stream=nobody", "application/sdp", newClient(t, false).offer, nil)
	if b := body(t, r); r.StatusCode != http.StatusNotFound || !strings.Contains(b, `no stream "nobody"`) {
		t.Fatalf("pinning an unknown stream: %d %s", r.StatusCode, b)
	}
}
