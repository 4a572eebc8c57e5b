package livekit

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/livekit/protocol/auth"
	"github.com/rs/zerolog"
	"go.uber.org/goleak"
	"maunium.net/go/mautrix/id"
)

const (
	testKey    = "focus-test"
	testSecret = "0123456789abcdef0123456789abcdef-secret"
	testURL    = "wss://focus.example.org"
)

// tokenEnv is a token service in front of one fake homeserver, mapped as
// example.org (full access) and as guest.example (join-only).
type tokenEnv struct {
	hs      *fakeHomeserver
	srv     *httptest.Server
	ts      *TokenService
	running map[string]bool // rooms roomExists reports
}

func newTokenEnv(t *testing.T, change func(*TokenConfig)) *tokenEnv {
	t.Helper()
	e := &tokenEnv{running: map[string]bool{}}
	e.hs = newFakeHomeserver(t, map[string]string{
		"alice-token":   "@alice:example.org",
		"guest-token":   "@gus:guest.example",
		"mallory-token": "@mallory:evil.example",
	})
	cfg := TokenConfig{
		APIKey:      testKey,
		APISecret:   testSecret,
		URL:         testURL,
		TTL:         time.Hour,
		Homeservers: map[string]string{"example.org": e.hs.URL, "guest.example": e.hs.URL},
		FullAccess:  []string{"example.org"},
	}
	if change != nil {
		change(&cfg)
	}
	ts, err := NewTokenService(cfg, zerolog.Nop(), func(room string) bool { return e.running[room] })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ts.Close)
	e.ts = ts
	e.srv = httptest.NewServer(ts.Handler())
	t.Cleanup(e.srv.Close)
	return e
}

type tokenAnswer struct {
	status  int
	header  http.Header
	URL     string `json:"url"`
	JWT     string `json:"jwt"`
	Errcode string `json:"errcode"`
	Error   string `json:"error"`
}

func (e *tokenEnv) do(t *testing.T, method, path string, body string, header map[string]string) tokenAnswer {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, e.srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	a := tokenAnswer{status: resp.StatusCode, header: resp.Header}
	if len(b) > 0 {
		if err := json.Unmarshal(b, &a); err != nil {
			t.Fatalf("%s %s: %d, body not JSON: %q", method, path, resp.StatusCode, b)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("%s %s: Content-Type %q", method, path, ct)
		}
	}
	return a
}

func (e *tokenEnv) post(t *testing.T, path string, body any) tokenAnswer {
	t.Helper()
	b, ok := body.(string)
	if !ok {
		j, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		b = string(j)
	}
	return e.do(t, http.MethodPost, path, b, nil)
}

// openID is a token as Element Call sends it.
func openID(token, server string) map[string]any {
	return map[string]any{"access_token": token, "token_type": "Bearer", "matrix_server_name": server, "expires_in": 3600}
}

func sfuGetBody(token, server string) map[string]any {
	return map[string]any{"room": "!room:example.org", "openid_token": openID(token, server), "device_id": "ALICEDEV"}
}

func getTokenBody(token, server, claimed string) map[string]any {
	return map[string]any{
		"room_id":      "!room:example.org",
		"slot_id":      "m.call#ROOM",
		"openid_token": openID(token, server),
		"member":       map[string]any{"id": "member-1", "claimed_user_id": claimed, "claimed_device_id": "ALICEDEV"},
	}
}

// checkJWT verifies jwt with the secret and checks its claims.
func checkJWT(t *testing.T, jwt, identity, room string, create bool, ttl time.Duration) {
	t.Helper()
	v, err := auth.ParseAPIToken(jwt)
	if err != nil {
		t.Fatalf("ParseAPIToken: %v", err)
	}
	if v.APIKey() != testKey {
		t.Errorf("iss = %q, want %q", v.APIKey(), testKey)
	}
	claims, grants, err := v.Verify(testSecret)
	if err != nil {
		t.Fatalf("Verify with the secret: %v", err)
	}
	if _, _, err := v.Verify("another-secret-another-secret-xx"); err == nil {
		t.Error("the JWT verifies with another secret")
	}
	if claims.Subject != identity || grants.Identity != identity {
		t.Errorf("sub = %q, want %q", claims.Subject, identity)
	}
	vg := grants.Video
	if vg == nil {
		t.Fatal("no video grant")
	}
	if !vg.RoomJoin || vg.Room != room || vg.RoomCreate != create {
		t.Errorf("video grant roomJoin %v room %q roomCreate %v; want true %q %v", vg.RoomJoin, vg.Room, vg.RoomCreate, room, create)
	}
	for name, p := range map[string]*bool{"canPublish": vg.CanPublish, "canSubscribe": vg.CanSubscribe, "canUpdateOwnMetadata": vg.CanUpdateOwnMetadata} {
		if p == nil || !*p {
			t.Errorf("%s is not true", name)
		}
	}
	if vg.RoomAdmin || vg.RoomList || vg.RoomRecord || vg.Hidden || vg.Recorder || vg.Agent {
		t.Errorf("extra rights in %+v", vg)
	}
	if got := time.Until(claims.ExpiresAt.Time); got < ttl-time.Minute || got > ttl+time.Second {
		t.Errorf("expires in %v, want %v", got, ttl)
	}
}

func TestSFUGet(t *testing.T) {
	e := newTokenEnv(t, nil)
	a := e.post(t, "/sfu/get", sfuGetBody("alice-token", "example.org"))
	if a.status != http.StatusOK || a.URL != testURL || a.JWT == "" {
		t.Fatalf("POST /sfu/get = %+v", a)
	}
	checkJWT(t, a.JWT, "@alice:example.org:ALICEDEV", RoomName("!room:example.org", "m.call#ROOM"), true, time.Hour)
	if got := a.header.Get("Access-Control-Allow-Origin"); got != "*" {
		t.Errorf("Access-Control-Allow-Origin = %q, want *", got)
	}
}

func TestGetToken(t *testing.T) {
	e := newTokenEnv(t, func(c *TokenConfig) { c.TTL = 10 * time.Minute })
	a := e.post(t, "/get_token", getTokenBody("alice-token", "example.org", "@alice:example.org"))
	if a.status != http.StatusOK || a.URL != testURL {
		t.Fatalf("POST /get_token = %+v", a)
	}
	checkJWT(t, a.JWT, MemberIdentity("@alice:example.org", "ALICEDEV", "member-1"),
		RoomName("!room:example.org", "m.call#ROOM"), true, 10*time.Minute)

	// Another slot is another room.
	b := getTokenBody("alice-token", "example.org", "@alice:example.org")
	b["slot_id"] = "m.call#SIDEBAR"
	a = e.post(t, "/get_token", b)
	checkJWT(t, a.JWT, MemberIdentity("@alice:example.org", "ALICEDEV", "member-1"),
		RoomName("!room:example.org", "m.call#SIDEBAR"), true, 10*time.Minute)
}

// TestJoinOnly: a user of a homeserver without full access gets the same
// grants (publishing included) without roomCreate, and only for a room
// that is running.
func TestJoinOnly(t *testing.T) {
	e := newTokenEnv(t, nil)
	room := RoomName("!room:example.org", LegacySlotID)
	for _, path := range []string{"/sfu/get", "/get_token"} {
		body := sfuGetBody("guest-token", "guest.example")
		if path == "/get_token" {
			body = getTokenBody("guest-token", "guest.example", "@gus:guest.example")
		}
		delete(e.running, room)
		a := e.post(t, path, body)
		if a.status != http.StatusForbidden || a.Errcode != "M_FORBIDDEN" || a.Error == "" {
			t.Errorf("%s, room not running: %+v, want 403 M_FORBIDDEN", path, a)
		}
		e.running[room] = true
		a = e.post(t, path, body)
		if a.status != http.StatusOK {
			t.Fatalf("%s, room running: %+v", path, a)
		}
		identity := "@gus:guest.example:ALICEDEV"
		if path == "/get_token" {
			identity = MemberIdentity("@gus:guest.example", "ALICEDEV", "member-1")
		}
		checkJWT(t, a.JWT, identity, room, false, time.Hour)
	}

	// A full-access user gets roomCreate whether the room runs or not.
	a := e.post(t, "/sfu/get", sfuGetBody("alice-token", "example.org"))
	checkJWT(t, a.JWT, "@alice:example.org:ALICEDEV", room, true, time.Hour)

	// "*" gives everyone full access.
	e = newTokenEnv(t, func(c *TokenConfig) { c.FullAccess = []string{"*"} })
	a = e.post(t, "/sfu/get", sfuGetBody("guest-token", "guest.example"))
	if a.status != http.StatusOK {
		t.Fatalf("wildcard: %+v", a)
	}
	checkJWT(t, a.JWT, "@gus:guest.example:ALICEDEV", room, true, time.Hour)
}

func TestTokenErrors(t *testing.T) {
	e := newTokenEnv(t, nil)
	_, loopbackPort, _ := net.SplitHostPort(e.hs.Listener.Addr().String())
	with := func(body map[string]any, f func(m map[string]any)) map[string]any {
		f(body)
		return body
	}
	sfu := func(f func(m map[string]any)) map[string]any {
		return with(sfuGetBody("alice-token", "example.org"), f)
	}
	tok := func(f func(m map[string]any)) map[string]any {
		return with(getTokenBody("alice-token", "example.org", "@alice:example.org"), f)
	}
	tests := []struct {
		name    string
		path    string
		body    any
		status  int
		errcode string
	}{
		{"not JSON", "/sfu/get", "room=x", 400, "M_NOT_JSON"},
		{"empty body", "/get_token", "", 400, "M_NOT_JSON"},
		{"truncated", "/sfu/get", `{"room": "!r:x"`, 400, "M_NOT_JSON"},
		{"trailing garbage", "/sfu/get", `{} {}`, 400, "M_NOT_JSON"},
		{"an array", "/get_token", `[1, 2]`, 400, "M_BAD_JSON"},
		{"null", "/sfu/get", `null`, 400, "M_BAD_JSON"},
		{"room a number", "/sfu/get", sfu(func(m map[string]any) { m["room"] = 7 }), 400, "M_BAD_JSON"},
		{"openid a string", "/sfu/get", sfu(func(m map[string]any) { m["openid_token"] = "tok" }), 400, "M_BAD_JSON"},
		{"member id a number", "/get_token", tok(func(m map[string]any) { m["member"].(map[string]any)["id"] = 1 }), 400, "M_BAD_JSON"},
		{"no room", "/sfu/get", sfu(func(m map[string]any) { delete(m, "room") }), 400, "M_BAD_JSON"},
		{"no device", "/sfu/get", sfu(func(m map[string]any) { m["device_id"] = "" }), 400, "M_BAD_JSON"},
		{"no openid", "/sfu/get", sfu(func(m map[string]any) { delete(m, "openid_token") }), 400, "M_BAD_JSON"},
		{"no access token", "/get_token", tok(func(m map[string]any) { m["openid_token"] = openID("", "example.org") }), 400, "M_BAD_JSON"},
		{"no server name", "/get_token", tok(func(m map[string]any) { m["openid_token"] = openID("alice-token", "") }), 400, "M_BAD_JSON"},
		{"server name a URL", "/sfu/get", sfu(func(m map[string]any) { m["openid_token"] = openID("alice-token", "http://example.org/") }), 400, "M_BAD_JSON"},
		{"no slot", "/get_token", tok(func(m map[string]any) { delete(m, "slot_id") }), 400, "M_BAD_JSON"},
		{"no member", "/get_token", tok(func(m map[string]any) { delete(m, "member") }), 400, "M_BAD_JSON"},
		{"no claimed device", "/get_token", tok(func(m map[string]any) { delete(m["member"].(map[string]any), "claimed_device_id") }), 400, "M_BAD_JSON"},

		// MSC4140 delayed leave is refused, never ignored.
		{"delay on get_token", "/get_token", tok(func(m map[string]any) {
			m["delay_id"] = "syd_abc"
			m["delay_timeout"] = 1000
			m["delay_cs_api_url"] = "https://matrix.example.org"
		}), 400, "M_BAD_JSON"},
		{"delay id alone", "/get_token", tok(func(m map[string]any) { m["delay_id"] = "syd_abc" }), 400, "M_BAD_JSON"},
		{"delay timeout alone on sfu/get", "/sfu/get", sfu(func(m map[string]any) { m["delay_timeout"] = 0 }), 400, "M_BAD_JSON"},
		{"delay url alone", "/sfu/get", sfu(func(m map[string]any) { m["delay_cs_api_url"] = "https://x" }), 400, "M_BAD_JSON"},

		{"forged token", "/sfu/get", sfuGetBody("forged", "example.org"), 401, "M_UNAUTHORIZED"},
		{"forged token get_token", "/get_token", getTokenBody("forged", "example.org", "@alice:example.org"), 401, "M_UNAUTHORIZED"},
		{"claimed another user", "/get_token", getTokenBody("alice-token", "example.org", "@bob:example.org"), 401, "M_UNAUTHORIZED"},
		// The homeserver of guest.example vouches for a user of
		// evil.example: not to be believed.
		{"user of another server", "/sfu/get", sfuGetBody("mallory-token", "guest.example"), 401, "M_UNAUTHORIZED"},
		// Not mapped: discovery refuses loopback, and the token never
		// leaves.
		{"unmapped loopback", "/sfu/get", sfuGetBody("alice-token", "127.0.0.1:"+loopbackPort), 401, "M_UNAUTHORIZED"},
		{"unmapped localhost", "/get_token", getTokenBody("alice-token", "localhost:"+loopbackPort, "@alice:localhost:"+loopbackPort), 401, "M_UNAUTHORIZED"},
		{"unmapped private", "/sfu/get", sfuGetBody("alice-token", "10.11.12.13"), 401, "M_UNAUTHORIZED"},

		{"too large", "/sfu/get", `{"room":"` + strings.Repeat("x", maxTokenRequest) + `"}`, 413, "M_TOO_LARGE"},
		{"unknown path", "/sfu/other", sfuGetBody("alice-token", "example.org"), 404, "M_UNRECOGNIZED"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := e.hs.hits.Load()
			a := e.post(t, tt.path, tt.body)
			if a.status != tt.status || a.Errcode != tt.errcode || a.Error == "" || a.JWT != "" {
				t.Errorf("POST %s = %d %q %q, want %d %s", tt.path, a.status, a.Errcode, a.Error, tt.status, tt.errcode)
			}
			if a.header.Get("Access-Control-Allow-Origin") != "*" {
				t.Error("an error without CORS headers cannot be read by a browser")
			}
			if tt.status == 400 || tt.status == 413 || tt.name == "unmapped loopback" || tt.name == "unmapped localhost" {
				if n := e.hs.hits.Load() - before; n != 0 {
					t.Errorf("the homeserver was asked %d times", n)
				}
			}
		})
	}
}

func TestTokenMethods(t *testing.T) {
	e := newTokenEnv(t, nil)
	for _, m := range []string{http.MethodGet, http.MethodPut, http.MethodDelete, http.MethodPatch} {
		a := e.do(t, m, "/sfu/get", "", nil)
		if a.status != http.StatusMethodNotAllowed || a.Errcode != "M_UNRECOGNIZED" || a.header.Get("Allow") != "OPTIONS, POST" {
			t.Errorf("%s /sfu/get = %d %q Allow %q", m, a.status, a.Errcode, a.header.Get("Allow"))
		}
	}
}

func TestTokenCORS(t *testing.T) {
	preflight := map[string]string{
		"Origin":                         "https://call.example.org",
		"Access-Control-Request-Method":  "POST",
		"Access-Control-Request-Headers": "content-type",
	}
	e := newTokenEnv(t, nil)
	for _, path := range []string{"/sfu/get", "/get_token"} {
		a := e.do(t, http.MethodOptions, path, "", preflight)
		h := a.header
		if a.status != http.StatusNoContent || h.Get("Access-Control-Allow-Origin") != "*" ||
			!strings.Contains(h.Get("Access-Control-Allow-Methods"), "POST") ||
			!strings.Contains(strings.ToLower(h.Get("Access-Control-Allow-Headers")), "content-type") {
			t.Errorf("OPTIONS %s = %d %v", path, a.status, h)
		}
	}

	e = newTokenEnv(t, func(c *TokenConfig) { c.CORSOrigins = []string{"https://call.example.org"} })
	a := e.do(t, http.MethodOptions, "/sfu/get", "", preflight)
	if got := a.header.Get("Access-Control-Allow-Origin"); got != "https://call.example.org" || a.header.Get("Vary") != "Origin" {
		t.Errorf("allowed origin: Access-Control-Allow-Origin %q, Vary %q", got, a.header.Get("Vary"))
	}
	preflight["Origin"] = "https://evil.example"
	a = e.do(t, http.MethodOptions, "/sfu/get", "", preflight)
	if got := a.header.Get("Access-Control-Allow-Origin"); got != "" {
		t.Errorf("other origin: Access-Control-Allow-Origin %q, want none", got)
	}

	e = newTokenEnv(t, func(c *TokenConfig) { c.CORSOrigins = []string{} })
	a = e.do(t, http.MethodOptions, "/sfu/get", "", preflight)
	if got := a.header.Get("Access-Control-Allow-Origin"); got != "" {
		t.Errorf("no origins: Access-Control-Allow-Origin %q, want none", got)
	}
}

func TestNewTokenServiceChecks(t *testing.T) {
	good := TokenConfig{APIKey: testKey, APISecret: testSecret, URL: testURL}
	exists := func(string) bool { return false }
	tests := []struct {
		name   string
		change func(c *TokenConfig)
		exists func(string) bool
		want   string
	}{
		{"no key", func(c *TokenConfig) { c.APIKey = "" }, exists, "no API key"},
		{"short secret", func(c *TokenConfig) { c.APISecret = "short" }, exists, "shorter than 32"},
		{"no url", func(c *TokenConfig) { c.URL = "" }, exists, "no URL"},
		{"negative ttl", func(c *TokenConfig) { c.TTL = -time.Second }, exists, "negative TTL"},
		{"bad homeserver url", func(c *TokenConfig) { c.Homeservers = map[string]string{"localhost": "localhost:8008"} }, exists, "not an http"},
		{"bad homeserver name", func(c *TokenConfig) { c.Homeservers = map[string]string{"@a:b": "http://x"} }, exists, "not a server name"},
		{"no roomExists", func(*TokenConfig) {}, nil, "roomExists"},
	}
	for _, tt := range tests {
		c := good
		tt.change(&c)
		if _, err := NewTokenService(c, zerolog.Nop(), tt.exists); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want an error with %q", tt.name, err, tt.want)
		}
	}
	ts, err := NewTokenService(good, zerolog.Nop(), exists)
	if err != nil {
		t.Fatal(err)
	}
	defer ts.Close()
	if ts.cfg.TTL != DefaultTokenTTL {
		t.Errorf("TTL 0 became %v, want %v", ts.cfg.TTL, DefaultTokenTTL)
	}
}

// FuzzDecodeTokenRequest: any body decodes to a request with every field
// the endpoint needs, or to a 400 with M_NOT_JSON or M_BAD_JSON; never a
// panic, never a delayed-leave request let through.
func FuzzDecodeTokenRequest(f *testing.F) {
	for _, b := range []any{
		sfuGetBody("t", "example.org"),
		getTokenBody("t", "example.org", "@a:example.org"),
		`{"room":"!r:x","openid_token":{"access_token":"t","matrix_server_name":"x"},"device_id":"D","delay_id":"d"}`,
		`{"room_id":"!r:x","slot_id":"s","openid_token":{"access_token":"t","matrix_server_name":"[::1]:8448","expires_in":"soon"},"member":{"id":"m","claimed_user_id":"@a:x","claimed_device_id":"D"}}`,
		`{"ROOM":"!r","Openid_Token":{}}`,
		`[]`, `null`, `"x"`, `{"member":[]}`, `{"openid_token":{"matrix_server_name":1}}`, "\xff",
	} {
		s, ok := b.(string)
		if !ok {
			j, _ := json.Marshal(b)
			s = string(j)
		}
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		check := func(what string, err *matrixError, ok func() bool) {
			if err == nil {
				if !ok() {
					t.Fatalf("%s accepted %q with a field missing", what, body)
				}
				return
			}
			if err.status != http.StatusBadRequest || (err.errcode != "M_NOT_JSON" && err.errcode != "M_BAD_JSON") || err.msg == "" {
				t.Fatalf("%s: %q gave %v", what, body, err)
			}
		}
		s, err := decodeSFUGet(body)
		check("/sfu/get", err, func() bool {
			return s.Room != "" && s.DeviceID != "" && s.OpenIDToken.AccessToken != "" &&
				s.OpenIDToken.MatrixServerName != "" && !s.delayedLeave.requested()
		})
		g, err := decodeGetToken(body)
		check("/get_token", err, func() bool {
			return g.RoomID != "" && g.SlotID != "" && g.Member.ID != "" && g.Member.ClaimedUserID != "" &&
				g.Member.ClaimedDeviceID != "" && g.OpenIDToken.AccessToken != "" && !g.delayedLeave.requested()
		})
		// A room name is always computable from what was accepted.
		if err == nil && len(RoomName(id.RoomID(g.RoomID), g.SlotID)) != 43 {
			t.Fatal("room name")
		}
	})
}

// TestTokenServiceLeavesNoGoroutines: once closed, the service keeps no
// connection to a homeserver open.
func TestTokenServiceLeavesNoGoroutines(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	t.Run("requests", func(t *testing.T) {
		e := newTokenEnv(t, nil)
		for range 3 {
			if a := e.post(t, "/sfu/get", sfuGetBody("alice-token", "example.org")); a.status != http.StatusOK {
				t.Fatalf("POST /sfu/get = %+v", a)
			}
		}
		e.post(t, "/sfu/get", sfuGetBody("alice-token", "10.0.0.1"))
	})
	goleak.VerifyNone(t, ignore)
}

// With Place, the token service hands out the URL of the focus a mesh
// chose for the room, and its own URL when Place has no choice.
func TestTokenPlacement(t *testing.T) {
	room := RoomName("!room:example.org", LegacySlotID)
	var asked []string
	e := newTokenEnv(t, func(c *TokenConfig) {
		c.Place = func(r string) string {
			asked = append(asked, r)
			if r == room {
				return "wss://node-b.example.org"
			}
			return ""
		}
	})
	a := e.post(t, "/sfu/get", sfuGetBody("alice-token", "example.org"))
	if a.status != http.StatusOK || a.URL != "wss://node-b.example.org" {
		t.Fatalf("POST /sfu/get = %+v, want node b's URL", a)
	}
	b := getTokenBody("alice-token", "example.org", "@alice:example.org")
	b["slot_id"] = "m.call#SIDEBAR"
	if a := e.post(t, "/get_token", b); a.status != http.StatusOK || a.URL != testURL {
		t.Fatalf("POST /get_token for a room Place leaves here = %+v, want %s", a, testURL)
	}
	if len(asked) != 2 || asked[0] != room {
		t.Errorf("Place was asked %v", asked)
	}
}
