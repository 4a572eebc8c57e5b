package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestCascadeLiveKitRoomAcrossNodes: one LiveKit room on two foci of a
// mesh, as when Element Call's clients reached two nodes behind one
// service URL. Alice (audio and simulcast video, as Element Call
// publishes) is on a, Bob (audio and video) on b; LiveKit's own Go SDK
// on each side sees the other as a participant of the room, by its own
// identity, and receives its tracks intact over the trunk.
func TestCascadeLiveKitRoomAcrossNodes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	extra := fmt.Sprintf(`livekit:
  enabled: true
  api_key: %q
  api_secret: %q
  full_access_homeservers: ["*"]
`, lkAPIKey, lkAPISecret)
	a := startCascadeNodeWith(t, "a", nodeConfig{Top: extra})
	b := startCascadeNodeWith(t, "b", nodeConfig{Top: extra}, a.gossip)
	waitMesh(ctx, t, []*cascadeNode{a, b}, "a", "b")

	const room = "cascade-room"
	ws := func(n *cascadeNode) *lkEnv { return &lkEnv{wsURL: "ws" + strings.TrimPrefix(n.URL, "http")} }
	alice := ws(a).join(ctx, t, "@alice:example.org:ALICEDEV", room, lkPublish{Audio: true, Video: lkVideoSimulcast})
	bob := ws(b).join(ctx, t, "@bob:example.org:BOBDEV", room, lkPublish{Audio: true, Video: lkVideoSingle})

	flows := allFlows(alice, bob)
	waitFlowing(ctx, t, "across the trunk", flows, lkMore)
	for _, f := range flows {
		if f.to.remotePub(f.from, f.kind) == nil {
			t.Errorf("%s: %s does not see %s's %s publication by its identity", f, f.to.name, f.from.name, f.kind)
		}
	}
	checkIntact(t, alice, bob)
	if got := trunkSubscriptions(ctx, t, a, "b"); got != 2 {
		t.Errorf("a pulls %d tracks from b, want 2", got)
	}
	if got := trunkSubscriptions(ctx, t, b, "a"); got != 2 {
		t.Errorf("b pulls %d tracks from a, want 2", got)
	}

	// Bob leaves; Alice's client is told, and b's tracks leave a.
	bob.leave()
	waitCond(ctx, t, "alice sees bob leave", func() bool { return alice.room.GetParticipantByIdentity(bob.name) == nil })
}
