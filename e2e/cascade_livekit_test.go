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
// identity, and receives its tracks intact over the trunk, which carries
// the layers of Alice's video that Bob needs.
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
	// Bob's audio and single video; Alice's audio and, for Bob, who
	// shows her video uncapped, every layer of her video up to the top.
	if tracks, layers := trunkPulls(ctx, t, a, "b"); tracks != 2 || layers != 2 {
		t.Errorf("a pulls %d tracks (%d layers) from b, want 2 (2)", tracks, layers)
	}
	if tracks, layers := trunkPulls(ctx, t, b, "a"); tracks != 2 || layers != 4 {
		t.Errorf("b pulls %d tracks (%d layers) from a, want 2 (audio, and video's 3 layers)", tracks, layers)
	}

	// Bob leaves; Alice's client is told, and b's tracks leave a.
	bob.leave()
	waitCond(ctx, t, "alice sees bob leave", func() bool { return alice.room.GetParticipantByIdentity(bob.name) == nil })
}
