package e2e

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	lksdk "github.com/livekit/server-sdk-go/v2"
	"github.com/pion/webrtc/v4"
)

// TestLiveKitGoClients: three LiveKit Go SDK clients in one room, each
// publishing audio and video (Carol's in three simulcast layers, as
// Element Call publishes), all subscribed to each other:
//   - everyone receives everyone else's audio and video, intact;
//   - a mute is seen by the others, the track stops, and an unmute brings
//     it back;
//   - subscribers change the size they want of a simulcast and of a
//     single-layer camera, and both keep flowing;
//   - Carol's websocket is dropped; she resumes the same session (same
//     participant, no one sees her leave) and media flows both ways again;
//   - when Carol leaves, the others see it;
//
// and through all of it every track that should flow keeps arriving.
func TestLiveKitGoClients(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	env := startLiveKit(t, nil)
	const room = "go-clients"
	alice := env.join(ctx, t, "alice", room, lkPublish{Audio: true, Video: lkVideoSingle})
	bob := env.join(ctx, t, "bob", room, lkPublish{Audio: true, Video: lkVideoSingle})
	carol := env.join(ctx, t, "carol", room, lkPublish{Audio: true, Video: lkVideoSimulcast})
	peers := []*lkPeer{alice, bob, carol}
	flows := allFlows(peers...)
	audio, video := webrtc.RTPCodecTypeAudio, webrtc.RTPCodecTypeVideo

	// Everyone receives the others: a second and a half of each track.
	waitFlowing(ctx, t, "after joining", flows, 3*lkMore/2)
	for _, p := range peers {
		if n := len(p.room.GetRemoteParticipants()); n != 2 {
			t.Errorf("%s sees %d others, want 2", p.name, n)
		}
	}
	checkIntact(t, peers...)
	if t.Failed() {
		t.FailNow()
	}

	// Alice mutes her microphone and Bob his camera; the others see it
	// and those tracks stop, while the rest keep flowing.
	alice.mute(audio, true)
	bob.mute(video, true)
	for _, p := range []*lkPeer{bob, carol} {
		waitCond(ctx, t, p.name+" to see alice's microphone muted", func() bool {
			rp := p.remotePub(alice, audio)
			return rp != nil && rp.IsMuted()
		})
	}
	for _, p := range []*lkPeer{alice, carol} {
		waitCond(ctx, t, p.name+" to see bob's camera muted", func() bool {
			rp := p.remotePub(bob, video)
			return rp != nil && rp.IsMuted()
		})
	}
	mutedFlow := func(f lkFlow) bool {
		return (f.from == alice && f.kind == audio) || (f.from == bob && f.kind == video)
	}
	waitStopped(t, "alice muted", lkFlow{to: carol, from: alice, kind: audio}, 200*time.Millisecond, time.Second)
	waitStopped(t, "bob muted", lkFlow{to: alice, from: bob, kind: video}, 0, time.Second)
	waitFlowing(ctx, t, "while alice's microphone and bob's camera are muted", without(flows, mutedFlow), lkMore)

	alice.mute(audio, false)
	bob.mute(video, false)
	for _, p := range []*lkPeer{bob, carol} {
		waitCond(ctx, t, p.name+" to see alice's microphone unmuted", func() bool {
			rp := p.remotePub(alice, audio)
			return rp != nil && !rp.IsMuted()
		})
	}
	for _, p := range []*lkPeer{alice, carol} {
		waitCond(ctx, t, p.name+" to see bob's camera unmuted", func() bool {
			rp := p.remotePub(bob, video)
			return rp != nil && !rp.IsMuted()
		})
	}
	waitFlowing(ctx, t, "after unmuting", flows, lkMore)

	// Wanted size. Bob asks for Carol's simulcast camera small, then
	// large, and Alice for Bob's single-layer camera small: everything
	// keeps flowing. (Which layer arrives is TestLiveKitTrackSettings.)
	for _, d := range [][2]uint32{{320, 180}, {1280, 720}} {
		bob.remotePub(carol, video).SetVideoDimensions(d[0], d[1])
		waitFlowing(ctx, t, "bob wants carol's camera at "+dims(d[0], d[1]), flows, lkMore)
		r, _ := bob.received(carol, video)
		t.Logf("bob asked for carol's camera at %s and gets layer %s", dims(d[0], d[1]), layerName(carol.senders[video], r.lastSession))
	}
	alice.remotePub(bob, video).SetVideoDimensions(160, 90)
	waitFlowing(ctx, t, "alice wants bob's camera at 160x90", flows, lkMore)

	// Carol's websocket drops. She resumes the same session: her
	// participant SID stays, no one sees anyone leave, and nothing has to
	// be subscribed again.
	sid := carol.room.LocalParticipant.SID()
	carol.mu.Lock()
	resumes := carol.reconnected
	carol.mu.Unlock()
	starts := func(p *lkPeer) int {
		p.mu.Lock()
		defer p.mu.Unlock()
		n := 0
		for _, r := range p.recv {
			n += r.starts
		}
		return n
	}
	startsBefore := map[*lkPeer]int{}
	for _, p := range peers {
		startsBefore[p] = starts(p)
	}
	carol.event("dropping the signal connection")
	carol.room.Simulate(lksdk.SimulateSignalReconnect)
	waitCond(ctx, t, "carol to resume after her websocket dropped", func() bool {
		carol.mu.Lock()
		defer carol.mu.Unlock()
		return carol.reconnected > resumes && carol.room.ConnectionState() == lksdk.ConnectionStateConnected
	})
	waitFlowing(ctx, t, "after carol resumed", flows, lkMore)
	if got := carol.room.LocalParticipant.SID(); got != sid {
		t.Errorf("carol rejoined as %s instead of resuming %s", got, sid)
	}
	for _, p := range peers {
		p.mu.Lock()
		gone := maps.Clone(p.gone)
		p.mu.Unlock()
		if len(gone) != 0 {
			t.Errorf("%s saw someone leave during carol's resume: %v", p.name, gone)
		}
		if s := starts(p); s != startsBefore[p] {
			t.Errorf("%s: tracks subscribed again during carol's resume (%d subscriptions, was %d)", p.name, s, startsBefore[p])
		}
	}

	// Carol leaves; Alice and Bob see her go, and her tracks stop.
	carol.leave()
	for _, p := range []*lkPeer{alice, bob} {
		waitCond(ctx, t, p.name+" to see carol leave", func() bool {
			p.mu.Lock()
			defer p.mu.Unlock()
			return p.gone["carol"]
		})
		if rp := p.room.GetParticipantByIdentity("carol"); rp != nil {
			t.Errorf("%s still lists carol after she left", p.name)
		}
	}
	waitFlowing(ctx, t, "after carol left", allFlows(alice, bob), lkMore)
	checkIntact(t, peers...)

	for _, p := range peers {
		for kind, s := range p.senders {
			for _, l := range s.layers {
				t.Logf("%s sent %d %s packets (layer %q), got %d PLIs", p.name, l.sent.Load(), kind, l.rid, l.plis.Load())
			}
		}
	}
}

func dims(w, h uint32) string { return fmt.Sprintf("%dx%d", w, h) }

// layerName names the simulcast layer whose payload session is session.
func layerName(s *lkSender, session uint32) string {
	for _, l := range s.layers {
		if l.session == session {
			return l.rid
		}
	}
	if session == 0 {
		return "(none yet)"
	}
	return "(unknown)"
}

// TestLiveKitTrackSettings: what a subscriber's track settings
// (UpdateTrackSettings, which livekit-client's adaptive stream sends as
// videos change size or leave the screen) do to what it receives. Carol
// publishes three simulcast layers. Alice asks for nothing and gets the
// high layer. Bob asks for 320x180 and gets the low layer, then for
// 1280x720 and gets the high one. Bob disables Alice's camera and it
// stops for him alone; enabled again, it resumes at a keyframe.
func TestLiveKitTrackSettings(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	env := startLiveKit(t, nil)
	const room = "track-settings"
	alice := env.join(ctx, t, "alice", room, lkPublish{Audio: true, Video: lkVideoSingle})
	bob := env.join(ctx, t, "bob", room, lkPublish{})
	carol := env.join(ctx, t, "carol", room, lkPublish{Video: lkVideoSimulcast})
	flows := allFlows(alice, bob, carol)
	video := webrtc.RTPCodecTypeVideo
	waitFlowing(ctx, t, "after joining", flows, lkMore)

	layers := carol.senders[video]
	low, high := layers.layer("q"), layers.layer("f")
	if r, _ := alice.received(carol, video); r.lastSession != high.session {
		t.Errorf("alice gets carol's layer %s, want f (with no settings, the highest)", layerName(layers, r.lastSession))
	}
	for _, step := range []struct {
		w, h uint32
		want *lkLayer
	}{{320, 180, low}, {1280, 720, high}} {
		bob.remotePub(carol, video).SetVideoDimensions(step.w, step.h)
		tryCond(ctx, t, "bob to receive carol's layer "+step.want.rid+" after asking for "+dims(step.w, step.h), func() bool {
			r, _ := bob.received(carol, video)
			return r.lastSession == step.want.session
		})
		waitFlowing(ctx, t, "bob wants carol's camera at "+dims(step.w, step.h), flows, lkMore)
		r, _ := bob.received(carol, video)
		t.Logf("bob asked for carol's camera at %s and gets layer %s; packets by layer: %s", dims(step.w, step.h),
			layerName(layers, r.lastSession), byLayer(layers, r.bySession))
	}
	if r, _ := alice.received(carol, video); r.lastSession != high.session {
		t.Errorf("alice gets carol's layer %s after bob's changes, want f", layerName(layers, r.lastSession))
	}

	pub := bob.remotePub(alice, video)
	pub.SetEnabled(false)
	disabled := lkFlow{to: bob, from: alice, kind: video}
	waitStopped(t, "bob disabled alice's camera", disabled, 500*time.Millisecond, time.Second)
	waitFlowing(ctx, t, "while bob has alice's camera disabled", without(flows, func(f lkFlow) bool { return f == disabled }), lkMore)
	pub.SetEnabled(true)
	waitFlowing(ctx, t, "after bob enabled alice's camera", flows, lkMore)
	if r, _ := bob.received(alice, video); r.noKeyAfterGap > 0 {
		t.Errorf("bob: alice's camera resumed %d times without a keyframe (%d with)", r.noKeyAfterGap, r.keyAfterGap)
	}
	checkIntact(t, alice, bob, carol)
}

// byLayer formats packet counts by simulcast layer.
func byLayer(s *lkSender, bySession map[uint32]int) string {
	var parts []string
	for _, l := range s.layers {
		parts = append(parts, fmt.Sprintf("%s %d", l.rid, bySession[l.session]))
	}
	return strings.Join(parts, ", ")
}
