package e2e

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/focus-sfu/focus/internal/dendrite"
	"github.com/focus-sfu/focus/internal/matrixclient"
)

// These tests run a real Dendrite (internal/dendrite) and the focus with
// its Matrix front-end, registered as an appservice, and call it with
// internal/matrixclient: Matrix users with pion peers that signal as
// docs/matrix.md ("Wire protocol") describes. Media checks are those of the WHIP
// delivery tests.

// TestMatrixThreePersonCall: three users publish membership and invite
// the focus; each subscribes over the data channel to the others' audio
// and video and receives it whole; one adds a screen share by
// renegotiation and the others receive it; one unsubscribes and its
// packets stop; everyone leaves and the conference holds nobody.
func TestMatrixThreePersonCall(t *testing.T) {
	deliveryLeakCheck(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	env := startMatrix(t)
	var us []*dendrite.User
	for _, name := range []string{"alice", "bob", "carol"} {
		us = append(us, env.hs.CreateUser(t, name))
	}
	room := env.room(ctx, t, us...)
	const conf = "conf-3"
	var cs []*matrixclient.Client
	for _, u := range us {
		cs = append(cs, env.client(ctx, t, u, matrixclient.Options{}))
	}
	for _, c := range cs {
		if n := env.joinCall(ctx, t, c, room, conf); n > 0 {
			t.Logf("%s: the focus said not_a_member %d times before it had seen the membership", c.UserID(), n)
		}
	}
	alice, bob, carol := cs[0], cs[1], cs[2]

	// Everyone subscribes to the others' user media.
	for i, c := range cs {
		var others []*matrixclient.Client
		for j, o := range cs {
			if j != i {
				others = append(others, o)
			}
		}
		refs := waitPublished(ctx, t, c, matrixclient.PurposeUserMedia, 2, others...)
		if err := c.Subscribe(ctx, refs...); err != nil {
			t.Fatal(err)
		}
	}
	for i, c := range cs {
		var refs []matrixclient.TrackRef
		for j, o := range cs {
			if j != i {
				refs = append(refs, waitPublished(ctx, t, c, matrixclient.PurposeUserMedia, 2, o)...)
			}
		}
		checkReceived(ctx, t, c, refs, 150)
	}

	// Alice shares her screen; Bob and Carol are told and subscribe.
	ss, err := alice.AddScreenShare(ctx)
	if err != nil {
		t.Fatalf("alice adds a screen share: %v", err)
	}
	for _, c := range []*matrixclient.Client{bob, carol} {
		refs := waitPublished(ctx, t, c, matrixclient.PurposeScreenShare, 1, alice)
		if len(refs) != 1 || refs[0].TrackID != ss.TrackID {
			t.Errorf("%s: screen share announced as %v, alice sends %v", c.UserID(), refs, ss)
		}
		if err := c.Subscribe(ctx, refs...); err != nil {
			t.Fatal(err)
		}
		checkReceived(ctx, t, c, refs, 100)
	}

	// Bob unsubscribes from Carol's audio: it stops; her video goes on.
	carolRefs := waitPublished(ctx, t, bob, matrixclient.PurposeUserMedia, 2, carol)
	var carolAudio, carolVideo matrixclient.TrackRef
	for _, r := range carolRefs {
		rt, _ := bob.ReceivedTrack(r)
		if rt.Kind == webrtc.RTPCodecTypeAudio {
			carolAudio = r
		} else {
			carolVideo = r
		}
	}
	if err := bob.Unsubscribe(ctx, carolAudio); err != nil {
		t.Fatal(err)
	}
	if stopped, before, after := packetsStopped(bob, carolAudio, time.Second, time.Second); !stopped {
		t.Errorf("bob still receives carol's audio after unsubscribing: %d then %d packets", before, after)
	}
	v0, _ := bob.ReceivedTrack(carolVideo)
	if err := bob.WaitPackets(ctx, carolVideo, v0.Stats.Packets+50); err != nil {
		t.Errorf("carol's video stopped too: %v", err)
	}

	// The focus pings at least every 30 s (every 10 s as configured
	// by default) and the client answers; a missing pong would hang up.
	if err := poll(ctx, func() bool { return alice.Pings() > 0 }); err != nil {
		t.Errorf("alice got no m.call.ping: %v", err)
	}
	checkNoProblems(t, cs...)
	for _, c := range cs {
		t.Logf("%s: %d pings, negotiation %+v", c.UserID(), c.Pings(), c.Negotiation())
	}

	// Everyone leaves; every participant the conference had has left.
	for _, c := range cs {
		if err := c.Leave(ctx); err != nil {
			t.Errorf("%s leaves: %v", c.UserID(), err)
		}
	}
	key := conferenceKey(room, conf)
	var joined, left int
	err = poll(ctx, func() bool {
		joined, left = participantsLeft(env.focus, key)
		return joined >= 3 && left == joined
	})
	if err != nil {
		t.Errorf("conference %s: %d participants joined, %d left", key, joined, left)
	}
}

// TestMatrixRejections: an invite from a device with no call membership
// is hung up with a reason; a member whose membership is removed is
// dropped and the others are told; a transaction with a wrong hs_token
// gets 403.
func TestMatrixRejections(t *testing.T) {
	deliveryLeakCheck(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	env := startMatrix(t)
	us := []*dendrite.User{env.hs.CreateUser(t, "alice"), env.hs.CreateUser(t, "bob"), env.hs.CreateUser(t, "dave")}
	room := env.room(ctx, t, us...)
	const conf = "conf-r"
	alice := env.client(ctx, t, us[0], matrixclient.Options{})
	bob := env.client(ctx, t, us[1], matrixclient.Options{})
	dave := env.client(ctx, t, us[2], matrixclient.Options{})

	// Dave is in the room but not in the call.
	err := dave.Invite(ctx, room, conf, env.bot)
	var he *matrixclient.HangupError
	if !errors.As(err, &he) {
		t.Fatalf("dave, not a member, invites: %v; want a hangup", err)
	}
	if he.Reason == "" {
		t.Error("the hangup gives no reason")
	}
	t.Logf("non-member's invite hung up: %q", he.Reason)

	// Alice and Bob are in the call and receive each other.
	env.joinCall(ctx, t, alice, room, conf)
	env.joinCall(ctx, t, bob, room, conf)
	aliceRefs := waitPublished(ctx, t, bob, matrixclient.PurposeUserMedia, 2, alice)
	bobRefs := waitPublished(ctx, t, alice, matrixclient.PurposeUserMedia, 2, bob)
	if err := alice.Subscribe(ctx, bobRefs...); err != nil {
		t.Fatal(err)
	}
	if err := bob.Subscribe(ctx, aliceRefs...); err != nil {
		t.Fatal(err)
	}
	checkReceived(ctx, t, alice, bobRefs, 50)
	checkReceived(ctx, t, bob, aliceRefs, 50)

	// Bob's membership goes: he is hung up, Alice is told his streams
	// are gone, and his media stops reaching her.
	changed := len(alice.MessagesOfType(matrixclient.DCMetadataChanged))
	if err := bob.RemoveMembership(ctx); err != nil {
		t.Fatal(err)
	}
	reason, err := bob.WaitHangup(ctx)
	if err != nil {
		t.Errorf("bob, whose membership was removed: %v", err)
	}
	t.Logf("bob hung up: %q", reason)
	if _, err := alice.WaitStreams(ctx, func(ss []matrixclient.Stream) bool {
		return len(streamsOf(ss, bob.UserID(), bob.DeviceID(), matrixclient.PurposeUserMedia)) == 0
	}); err != nil {
		t.Errorf("alice still sees bob's streams: %v", err)
	}
	if n := len(alice.MessagesOfType(matrixclient.DCMetadataChanged)); n <= changed {
		t.Errorf("alice got no %s after bob was dropped", matrixclient.DCMetadataChanged)
	}
	for _, r := range bobRefs {
		if stopped, before, after := packetsStopped(alice, r, 500*time.Millisecond, time.Second); !stopped {
			t.Errorf("alice still receives %s: %d then %d packets", r, before, after)
		}
	}

	// The appservice listener refuses a wrong hs_token.
	req, err := http.NewRequestWithContext(ctx, http.MethodPut,
		"http://"+env.asAddr+"/_matrix/app/v1/transactions/wrong-token-1", strings.NewReader(`{"events":[]}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer not-"+env.hsToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := env.hs.HTTP.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("transaction with a wrong hs_token: status %d, want 403", resp.StatusCode)
	}

	checkNoProblems(t, alice, bob, dave)
	if err := alice.Leave(ctx); err != nil {
		t.Error(err)
	}
}

// TestMatrixLegacyMembershipCandidatesInOffer: one member writes the
// legacy m.call.member and puts its candidates in the offer, the other
// the per-device format with trickle; both receive each other.
func TestMatrixLegacyMembershipCandidatesInOffer(t *testing.T) {
	deliveryLeakCheck(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	env := startMatrix(t)
	const conf = "" // the room-wide call
	call := env.callOfTwo(ctx, t, conf, matrixclient.Options{LegacyMembership: true, CandidatesInOffer: true}, matrixclient.Options{})
	alice, bob := call.alice, call.bob
	aliceRefs := waitPublished(ctx, t, bob, matrixclient.PurposeUserMedia, 2, alice)
	bobRefs := waitPublished(ctx, t, alice, matrixclient.PurposeUserMedia, 2, bob)
	if err := alice.Subscribe(ctx, bobRefs...); err != nil {
		t.Fatal(err)
	}
	if err := bob.Subscribe(ctx, aliceRefs...); err != nil {
		t.Fatal(err)
	}
	checkReceived(ctx, t, alice, bobRefs, 100)
	checkReceived(ctx, t, bob, aliceRefs, 100)
	checkNoProblems(t, alice, bob)
	leaveAll(ctx, t, alice, bob)
}

// TestMatrixGlare: Bob subscribes and, at once, offers a screen share.
// The focus's offer for the subscription and Bob's offer cross on the
// data channel; the focus keeps its own, Bob (polite) drops his, answers,
// and offers again. Both the subscription and the screen share work.
func TestMatrixGlare(t *testing.T) {
	deliveryLeakCheck(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	env := startMatrix(t)
	const conf = "conf-g"
	call := env.callOfTwo(ctx, t, conf, matrixclient.Options{}, matrixclient.Options{})
	alice, bob := call.alice, call.bob
	aliceRefs := waitPublished(ctx, t, bob, matrixclient.PurposeUserMedia, 2, alice)

	if err := bob.Subscribe(ctx, aliceRefs...); err != nil {
		t.Fatal(err)
	}
	ss, err := bob.AddScreenShare(ctx)
	if err != nil {
		t.Fatalf("bob adds a screen share while the focus offers: %v", err)
	}
	n := bob.Negotiation()
	t.Logf("bob's negotiation: %+v", n)
	if n.Glares == 0 {
		t.Log("the offers did not cross this time; the outcome is checked all the same")
	}
	checkReceived(ctx, t, bob, aliceRefs, 100)
	refs := waitPublished(ctx, t, alice, matrixclient.PurposeScreenShare, 1, bob)
	if len(refs) != 1 || refs[0].TrackID != ss.TrackID {
		t.Errorf("alice sees bob's screen share as %v, bob sends %v", refs, ss)
	}
	if err := alice.Subscribe(ctx, refs...); err != nil {
		t.Fatal(err)
	}
	checkReceived(ctx, t, alice, refs, 100)
	checkNoProblems(t, alice, bob)
	leaveAll(ctx, t, alice, bob)
}

// TestMatrixReinvite: Alice's client drops its call without a word and
// invites again from the same device. The focus replaces her old call:
// Bob sees her streams again, subscribes, and receives the new session's
// media; the old participant has left the conference.
func TestMatrixReinvite(t *testing.T) {
	deliveryLeakCheck(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	env := startMatrix(t)
	const conf = "conf-re"
	call := env.callOfTwo(ctx, t, conf, matrixclient.Options{StreamID: "alice-media"}, matrixclient.Options{})
	room, alice, bob := call.room, call.alice, call.bob
	refs := waitPublished(ctx, t, bob, matrixclient.PurposeUserMedia, 2, alice)
	if err := bob.Subscribe(ctx, refs...); err != nil {
		t.Fatal(err)
	}
	checkReceived(ctx, t, bob, refs, 50)

	first := alice.CallID()
	if err := alice.Drop(); err != nil {
		t.Fatal(err)
	}
	if err := alice.Invite(ctx, room, conf, env.bot); err != nil {
		t.Fatalf("alice invites again: %v", err)
	}
	if alice.CallID() == first {
		t.Fatal("the new invite reused the call ID")
	}
	// Her old tracks went with the old call; once the new ones are
	// published, Bob subscribes to them (same stream and track IDs).
	key := conferenceKey(room, conf)
	if err := poll(ctx, func() bool { j, l := participantsLeft(env.focus, key); return j == 3 && l == 1 }); err != nil {
		j, l := participantsLeft(env.focus, key)
		t.Errorf("conference %s after the re-invite: %d joined, %d left; want 3 and 1", key, j, l)
	}
	var got []matrixclient.TrackRef
	err := poll(ctx, func() bool {
		got = waitPublished(ctx, t, bob, matrixclient.PurposeUserMedia, 2, alice)
		if err := bob.Subscribe(ctx, got...); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
		for _, r := range got {
			if rt, ok := bob.ReceivedTrack(r); !ok || rt.Starts < 2 {
				return false
			}
		}
		return true
	})
	if err != nil {
		for _, rt := range bob.Received() {
			t.Logf("bob has %s: began %d times, %d packets", rt.TrackRef, rt.Starts, rt.Stats.Packets)
		}
		t.Fatalf("bob does not receive alice's new call: %v", err)
	}
	for _, r := range got {
		if err := bob.WaitPackets(ctx, r, 50); err != nil {
			t.Fatal(err)
		}
		rt, _ := bob.ReceivedTrack(r)
		checkDeliveryStream(t, "bob receives alice's new "+r.String(), rt.Stats, 1)
	}
	checkNoProblems(t, alice, bob)
	leaveAll(ctx, t, alice, bob)
}

// leaveAll makes every client hang up and drop its membership.
func leaveAll(ctx context.Context, t *testing.T, clients ...*matrixclient.Client) {
	t.Helper()
	for _, c := range clients {
		if err := c.Leave(ctx); err != nil {
			t.Error(err)
		}
	}
}
