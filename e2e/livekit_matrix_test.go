package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/livekit/protocol/auth"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/focus-sfu/focus/config"
	"github.com/focus-sfu/focus/internal/dendrite"
	"github.com/focus-sfu/focus/livekit"
)

// lkSFUGet is the body of POST /sfu/get, as Element Call sends it.
type lkSFUGet struct {
	Room        id.RoomID                `json:"room"`
	OpenIDToken *mautrix.RespOpenIDToken `json:"openid_token"`
	DeviceID    id.DeviceID              `json:"device_id"`
}

// lkSFUGot is the answer: where to connect and with what.
type lkSFUGot struct {
	URL string `json:"url"`
	JWT string `json:"jwt"`
}

// lkMatrixError is the error body of the token service.
type lkMatrixError struct {
	ErrCode string `json:"errcode"`
	Error   string `json:"error"`
}

// TestLiveKitMatrixToken: the Element Call path with a real homeserver.
// Two Dendrite users get OpenID tokens from Dendrite and trade them at the
// focus's /sfu/get for LiveKit JWTs (the focus checks them against
// Dendrite's OpenID userinfo endpoint, found through livekit.homeservers);
// Go SDK clients join with those JWTs and receive each other. A forged
// OpenID token gets 401 with a Matrix errcode, and joins nothing.
func TestLiveKitMatrixToken(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	hs := dendrite.Start(t, dendrite.Options{})
	env := startLiveKit(t, func(l *config.LiveKit) {
		l.Homeservers = map[string]string{dendrite.ServerName: hs.URL}
		l.FullAccessHomeservers = []string{dendrite.ServerName}
	})
	alice := hs.CreateUser(t, "alice")
	bob := hs.CreateUser(t, "bob")
	room := hs.CreateRoom(t, alice, bob.ID)
	bob.Join(t, room)
	wantRoom := livekit.RoomName(room, livekit.LegacySlotID)

	var peers []*lkPeer
	for _, u := range []*dendrite.User{alice, bob} {
		got, status, body := lkPostSFUGet(ctx, t, env.focus.URL, lkSFUGet{Room: room, OpenIDToken: u.OpenIDToken(t), DeviceID: u.DeviceID})
		if status != http.StatusOK {
			t.Fatalf("%s: POST /sfu/get: %d %s", u.ID, status, body)
		}
		if got.URL != env.wsURL {
			t.Errorf("%s: /sfu/get url %q, want the focus's own %q", u.ID, got.URL, env.wsURL)
		}
		v, err := auth.ParseAPIToken(got.JWT)
		if err != nil {
			t.Fatalf("%s: the jwt from /sfu/get: %v", u.ID, err)
		}
		claims, grants, err := v.Verify(lkAPISecret)
		if err != nil {
			t.Fatalf("%s: the jwt from /sfu/get does not verify with the api secret: %v", u.ID, err)
		}
		identity := livekit.LegacyIdentity(u.ID, u.DeviceID)
		switch {
		case v.APIKey() != lkAPIKey:
			t.Errorf("%s: jwt issuer %q, want %q", u.ID, v.APIKey(), lkAPIKey)
		case claims.Subject != identity:
			t.Errorf("%s: jwt sub %q, want %q", u.ID, claims.Subject, identity)
		case grants.Video == nil || !grants.Video.RoomJoin || grants.Video.Room != wantRoom:
			t.Errorf("%s: jwt video grant %+v, want roomJoin to %q", u.ID, grants.Video, wantRoom)
		case claims.ExpiresAt == nil || time.Until(claims.ExpiresAt.Time) <= 0:
			t.Errorf("%s: jwt expiry %v", u.ID, claims.ExpiresAt)
		}
		t.Logf("%s: /sfu/get gave %s a JWT for room %q, valid until %v", u.ID, claims.Subject, grants.Video.Room, claims.ExpiresAt)
		peers = append(peers, env.joinWithToken(ctx, t, identity, got.URL, got.JWT, lkPublish{Audio: true, Video: lkVideoSingle}))
	}
	waitFlowing(ctx, t, "the Matrix users in their call", allFlows(peers...), 3*lkMore/2)
	checkIntact(t, peers...)
	if rp := peers[0].room.GetParticipantByIdentity(peers[1].name); rp == nil {
		t.Errorf("alice does not see %s", peers[1].name)
	}

	// A forged OpenID token, on the real server name: the homeserver
	// does not know it, so the focus refuses with 401 and an errcode.
	forged := &mautrix.RespOpenIDToken{AccessToken: "forged-" + strings.Repeat("x", 20), TokenType: "Bearer", MatrixServerName: dendrite.ServerName, ExpiresIn: 3600}
	_, status, body := lkPostSFUGet(ctx, t, env.focus.URL, lkSFUGet{Room: room, OpenIDToken: forged, DeviceID: "FORGER"})
	var me lkMatrixError
	if err := json.Unmarshal(body, &me); err != nil {
		t.Errorf("forged token: the error body is not JSON: %q", body)
	}
	t.Logf("forged OpenID token: %d %s", status, body)
	if status != http.StatusUnauthorized {
		t.Errorf("forged OpenID token: status %d, want 401", status)
	}
	if !strings.HasPrefix(me.ErrCode, "M_") || me.Error == "" {
		t.Errorf("forged OpenID token: errcode %q, error %q; want a Matrix errcode and a reason", me.ErrCode, me.Error)
	}

	// Alice and Bob were not disturbed.
	waitFlowing(ctx, t, "after the forged token", allFlows(peers...), lkMore)
	for _, p := range peers {
		if n := len(p.room.GetRemoteParticipants()); n != 1 {
			t.Errorf("%s sees %d others, want 1", p.name, n)
		}
	}
}

// lkPostSFUGet posts to /sfu/get of the focus at base (http://host:port)
// and returns the decoded answer, its status and its body.
func lkPostSFUGet(ctx context.Context, t *testing.T, base string, req lkSFUGet) (lkSFUGot, int, []byte) {
	t.Helper()
	b, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	r, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/sfu/get", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	r.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatalf("POST /sfu/get: %v", err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if err != nil {
		t.Fatal(err)
	}
	var got lkSFUGot
	if res.StatusCode == http.StatusOK {
		if err := json.Unmarshal(body, &got); err != nil {
			t.Fatalf("POST /sfu/get: %v in %q", err, body)
		}
	}
	if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("POST /sfu/get: %d with Content-Type %q, want application/json", res.StatusCode, ct)
	}
	return got, res.StatusCode, body
}
