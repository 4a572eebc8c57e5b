package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/livekit/protocol/livekit"
	lksdk "github.com/livekit/server-sdk-go/v2"
	"github.com/pion/webrtc/v4"

	"github.com/focus-sfu/focus/config"
	"github.com/focus-sfu/focus/internal/testclient"
)

// TestSharedRoomWHIPIntoLiveKit: a shared_rooms entry puts the WHIP room
// "lobby" into the LiveKit room "shared". A WHIP publisher in lobby
// appears to LiveKit clients as an ingress participant, to a client that
// was there before it (updates) and to one that joins after it (the join
// response); both receive its audio and video intact, and see it leave
// when its WHIP session is deleted. A WHEP viewer of lobby still gets the
// publisher's media.
func TestSharedRoomWHIPIntoLiveKit(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	env := startLiveKitConfig(t, func(c *config.Config) {
		c.SharedRooms = []config.SharedRoom{{WHIP: "lobby", LiveKit: "shared"}}
	})
	base := env.focus.URL

	alice := env.join(ctx, t, "alice", "shared", lkPublish{Audio: true})
	pub, err := testclient.Publish(ctx, base, "lobby", testclient.PublishOptions{})
	if err != nil {
		t.Fatalf("WHIP publish to lobby: %v", err)
	}
	published := true
	t.Cleanup(func() {
		if published {
			_ = pub.Close()
		}
	})
	bob := env.join(ctx, t, "bob", "shared", lkPublish{})

	for _, p := range []*lkPeer{alice, bob} {
		var identity string
		waitCond(ctx, t, p.name+" sees the WHIP publisher with a camera and a microphone", func() bool {
			rp := whipParticipant(p)
			if rp == nil {
				return false
			}
			identity = rp.Identity()
			return checkWHIPParticipant(rp)
		})
		waitCond(ctx, t, p.name+" receives the WHIP publisher's audio and video", func() bool {
			a, v := whipPackets(p)
			return a >= 50 && v >= 100
		})
		t.Logf("%s sees the WHIP publisher as %q", p.name, identity)
	}
	// Media keeps flowing.
	a0, v0 := whipPackets(bob)
	waitCond(ctx, t, "bob keeps receiving the WHIP publisher's media", func() bool {
		a, v := whipPackets(bob)
		return a >= a0+25 && v >= v0+50
	})

	// WHEP viewers of the WHIP room are unaffected, and invisible to the
	// LiveKit clients.
	viewer, err := testclient.View(ctx, base, "lobby", testclient.ViewOptions{})
	if err != nil {
		t.Fatalf("WHEP view of lobby: %v", err)
	}
	t.Cleanup(func() { _ = viewer.Close() })
	for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio} {
		if err := viewer.WaitPackets(ctx, k, 50); err != nil {
			t.Fatalf("WHEP viewer: %v", err)
		}
	}
	st := viewer.Stats()
	for _, s := range []testclient.TrackStats{st.Video, st.Audio} {
		if s.Corrupt != 0 || s.Sessions != 1 {
			t.Errorf("WHEP viewer: %d of %d payloads altered, %d publisher sessions", s.Corrupt, s.Packets, s.Sessions)
		}
	}
	if n := len(alice.room.GetRemoteParticipants()); n != 2 {
		t.Errorf("alice sees %d participants, want 2 (bob and the WHIP publisher, not the WHEP viewer)", n)
	}

	checkIntact(t, alice, bob)

	// The WHIP session ends; the LiveKit clients see the publisher leave.
	identity := whipParticipant(alice).Identity()
	if err := pub.Close(); err != nil {
		t.Fatalf("WHIP DELETE: %v", err)
	}
	published = false
	for _, p := range []*lkPeer{alice, bob} {
		waitCond(ctx, t, p.name+" sees the WHIP publisher leave", func() bool {
			p.mu.Lock()
			defer p.mu.Unlock()
			return p.gone[identity] && p.room.GetParticipantByIdentity(identity) == nil
		})
	}
	// The LiveKit participants are still there for each other.
	if bob.room.GetParticipantByIdentity("alice") == nil {
		t.Error("bob no longer sees alice")
	}
}

// whipParticipant returns the WHIP publisher as p sees it, or nil.
func whipParticipant(p *lkPeer) *lksdk.RemoteParticipant {
	for _, rp := range p.room.GetRemoteParticipants() {
		if strings.HasPrefix(rp.Identity(), "whip-") {
			return rp
		}
	}
	return nil
}

// checkWHIPParticipant reports whether rp looks like an ingress with a
// camera and a microphone, unmuted.
func checkWHIPParticipant(rp *lksdk.RemoteParticipant) bool {
	if rp.Kind() != lksdk.ParticipantIngress || !strings.HasPrefix(rp.SID(), "PA_") {
		return false
	}
	var cam, mic bool
	for _, tp := range rp.TrackPublications() {
		if !strings.HasPrefix(tp.SID(), "TR_") || tp.IsMuted() {
			return false
		}
		switch tp.Source() {
		case livekit.TrackSource_CAMERA:
			cam = strings.EqualFold(tp.MimeType(), webrtc.MimeTypeVP8)
		case livekit.TrackSource_MICROPHONE:
			mic = strings.EqualFold(tp.MimeType(), webrtc.MimeTypeOpus)
		}
	}
	return cam && mic
}

// whipPackets is how many audio and video packets p received from the
// WHIP publisher.
func whipPackets(p *lkPeer) (audio, video int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, r := range p.recv {
		if !strings.HasPrefix(r.from, "whip-") {
			continue
		}
		switch r.kind {
		case webrtc.RTPCodecTypeAudio:
			audio += r.rec.Stats().Packets
		case webrtc.RTPCodecTypeVideo:
			video += r.rec.Stats().Packets
		}
	}
	return audio, video
}
