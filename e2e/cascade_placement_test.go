package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/focus-sfu/focus/internal/dendrite"
	"github.com/focus-sfu/focus/livekit"
)

// TestCascadePlacesElementCall: two foci with the same LiveKit secret in
// one mesh, as several nodes behind one Element Call service URL. Alice's
// call runs on a. Bob asks b's token service (/sfu/get, with a real
// OpenID token from Dendrite) for the same call and is sent to a, where
// the room lives, with a JWT a accepts; he then hears and sees Alice
// there. A new call goes to the least loaded node: b, whichever node is
// asked.
func TestCascadePlacesElementCall(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	hs := dendrite.Start(t, dendrite.Options{})
	extra := fmt.Sprintf(`livekit:
  enabled: true
  api_key: %q
  api_secret: %q
  full_access_homeservers: [%q]
  homeservers: {%q: %q}
`, lkAPIKey, lkAPISecret, dendrite.ServerName, dendrite.ServerName, hs.URL)
	a := startCascadeNodeWith(t, "a", nodeConfig{Top: extra})
	b := startCascadeNodeWith(t, "b", nodeConfig{Top: extra}, a.gossip)
	waitMesh(ctx, t, []*cascadeNode{a, b}, "a", "b")
	wsURL := func(n *cascadeNode) string { return "ws" + strings.TrimPrefix(n.URL, "http") }

	alice, bob := hs.CreateUser(t, "alice"), hs.CreateUser(t, "bob")
	room := hs.CreateRoom(t, alice, bob.ID)
	name := livekit.RoomName(room, livekit.LegacySlotID)
	alicePeer := (&lkEnv{wsURL: wsURL(a)}).join(ctx, t, string(livekit.LegacyIdentity(alice.ID, alice.DeviceID)), name, lkPublish{Audio: true, Video: lkVideoSimulcast})

	// b learns through the gossip that a holds the room, then sends Bob
	// there.
	var got lkSFUGot
	deadline := time.Now().Add(15 * time.Second)
	for {
		var status int
		var body []byte
		got, status, body = lkPostSFUGet(ctx, t, b.URL, lkSFUGet{Room: room, OpenIDToken: bob.OpenIDToken(t), DeviceID: bob.DeviceID})
		if status != http.StatusOK {
			t.Fatalf("POST b/sfu/get: %d %s", status, body)
		}
		if got.URL == wsURL(a) || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if got.URL != wsURL(a) {
		t.Fatalf("b's token service sends bob to %q, want a (%s), where the call runs", got.URL, wsURL(a))
	}
	bobPeer := (&lkEnv{}).joinWithToken(ctx, t, string(livekit.LegacyIdentity(bob.ID, bob.DeviceID)), got.URL, got.JWT, lkPublish{Audio: true, Video: lkVideoSingle})
	waitFlowing(ctx, t, "on a", allFlows(alicePeer, bobPeer), lkMore)
	checkIntact(t, alicePeer, bobPeer)

	// A new call: a has two participants and b none, so both nodes send
	// it to b once the load has been gossiped.
	other := hs.CreateRoom(t, alice, bob.ID)
	for _, n := range []*cascadeNode{a, b} {
		deadline := time.Now().Add(15 * time.Second)
		for {
			got, status, body := lkPostSFUGet(ctx, t, n.URL, lkSFUGet{Room: other, OpenIDToken: alice.OpenIDToken(t), DeviceID: alice.DeviceID})
			if status != http.StatusOK {
				t.Fatalf("POST %s/sfu/get: %d %s", n.Name, status, body)
			}
			if got.URL == wsURL(b) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s's token service sends a new call to %q, want the idle b (%s)", n.Name, got.URL, wsURL(b))
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
}
