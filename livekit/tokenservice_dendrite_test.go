package livekit

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/focus-sfu/focus/internal/dendrite"
)

// TestTokenServiceDendrite: real OpenID tokens from a real homeserver.
// Dendrite's users get OpenID tokens through the client API, and the token
// service checks them at Dendrite's federation userinfo endpoint (the
// server name localhost is mapped to it) before minting JWTs whose claims
// verify with the secret. A forged token, a token claimed for another
// user, and the same server when it is not mapped (discovery refuses
// loopback) get 401 M_UNAUTHORIZED.
func TestTokenServiceDendrite(t *testing.T) {
	hs := dendrite.Start(t, dendrite.Options{})
	alice := hs.CreateUser(t, "alice")
	bob := hs.CreateUser(t, "bob")
	room := hs.CreateRoom(t, alice, bob.ID)

	newEnv := func(mapped bool) *tokenEnv {
		e := &tokenEnv{running: map[string]bool{}}
		cfg := TokenConfig{APIKey: testKey, APISecret: testSecret, URL: testURL, TTL: time.Hour,
			FullAccess: []string{dendrite.ServerName}, HTTPClient: hs.HTTP}
		if mapped {
			cfg.Homeservers = map[string]string{dendrite.ServerName: hs.URL}
		}
		ts, err := NewTokenService(cfg, zerolog.Nop(), func(string) bool { return false })
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(ts.Close)
		e.ts = ts
		e.srv = httptest.NewServer(ts.Handler())
		t.Cleanup(e.srv.Close)
		return e
	}
	e := newEnv(true)

	openIDOf := func(u *dendrite.User) map[string]any {
		tok := u.OpenIDToken(t)
		return map[string]any{"access_token": tok.AccessToken, "token_type": tok.TokenType,
			"matrix_server_name": tok.MatrixServerName, "expires_in": tok.ExpiresIn}
	}
	sfuGet := func(u *dendrite.User) map[string]any {
		return map[string]any{"room": room, "openid_token": openIDOf(u), "device_id": u.DeviceID}
	}
	wantRoom := RoomName(room, LegacySlotID)

	for _, u := range []*dendrite.User{alice, bob} {
		a := e.post(t, "/sfu/get", sfuGet(u))
		if a.status != http.StatusOK || a.URL != testURL {
			t.Fatalf("%s: POST /sfu/get = %+v", u.ID, a)
		}
		checkJWT(t, a.JWT, string(u.ID)+":"+string(u.DeviceID), wantRoom, true, time.Hour)
	}

	body := map[string]any{
		"room_id": room, "slot_id": LegacySlotID, "openid_token": openIDOf(alice),
		"member": map[string]any{"id": "m-alice", "claimed_user_id": alice.ID, "claimed_device_id": alice.DeviceID},
	}
	a := e.post(t, "/get_token", body)
	if a.status != http.StatusOK {
		t.Fatalf("POST /get_token = %+v", a)
	}
	checkJWT(t, a.JWT, MemberIdentity(alice.ID, alice.DeviceID, "m-alice"), wantRoom, true, time.Hour)

	// Alice's own token, claimed for Bob.
	body["openid_token"] = openIDOf(alice)
	body["member"] = map[string]any{"id": "m-bob", "claimed_user_id": bob.ID, "claimed_device_id": bob.DeviceID}
	if a := e.post(t, "/get_token", body); a.status != http.StatusUnauthorized || a.Errcode != "M_UNAUTHORIZED" {
		t.Errorf("alice's token claimed for bob: %+v, want 401 M_UNAUTHORIZED", a)
	}

	forged := map[string]any{"room": room, "device_id": "FORGER",
		"openid_token": map[string]any{"access_token": "forged-openid-token", "token_type": "Bearer",
			"matrix_server_name": dendrite.ServerName, "expires_in": 3600}}
	if a := e.post(t, "/sfu/get", forged); a.status != http.StatusUnauthorized || a.Errcode != "M_UNAUTHORIZED" || a.Error == "" {
		t.Errorf("forged token: %+v, want 401 M_UNAUTHORIZED", a)
	} else {
		t.Logf("forged token: %d %s %q", a.status, a.Errcode, a.Error)
	}

	// Checking a token does not use it up: Element Call asks /get_token,
	// then /sfu/get, with one token.
	tok := openIDOf(bob)
	body["openid_token"] = tok
	if a := e.post(t, "/get_token", body); a.status != http.StatusOK {
		t.Errorf("bob's token at /get_token: %+v", a)
	}
	if a := e.post(t, "/sfu/get", map[string]any{"room": room, "openid_token": tok, "device_id": bob.DeviceID}); a.status != http.StatusOK {
		t.Errorf("bob's token again at /sfu/get: %+v", a)
	}

	// Without the map, localhost is found through discovery, which
	// refuses loopback: even a real token is not checked there.
	unmapped := newEnv(false)
	if a := unmapped.post(t, "/sfu/get", sfuGet(alice)); a.status != http.StatusUnauthorized || a.Errcode != "M_UNAUTHORIZED" {
		t.Errorf("unmapped localhost: %+v, want 401 M_UNAUTHORIZED", a)
	}
}
