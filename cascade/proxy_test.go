package cascade

import (
	"slices"
	"testing"
	"time"

	"github.com/focus-sfu/focus/focus"
	"github.com/focus-sfu/focus/mesh"
)

// TestProxiesFollowDirectory: a conference that is not mirrored is
// proxied into a focus only while a participant of its own is in it;
// proxies follow the origin's participants, tracks and mute state, and
// go when the origin leaves the mesh. No media flows here.
func TestProxiesFollowDirectory(t *testing.T) {
	m := newFakeMesh()
	noMirror := func(o *Options, _ *timing) { o.Mirror = nil }
	a := startNode(t, m, "a", noMirror)
	b := startNode(t, m, "b", noMirror)
	const conf = focus.ConferenceID("lk:x")

	p1, err := a.sfu.Join(conf, focus.ParticipantInfo{ID: "P1", Identity: "@u:hs:D", Role: focus.RoleMember})
	if err != nil {
		t.Fatal(err)
	}
	mic, _ := p1.Publish(focus.TrackInfo{ID: "MIC", StreamID: "s1", Kind: focus.KindAudio, Source: focus.SourceMicrophone,
		Codec: focus.Codec{MimeType: "audio/opus", ClockRate: 48000, Channels: 2}}, nil)
	eventually(t, 2*time.Second, "a's holdings reach the mesh", func() bool {
		hs := m.dir("b").Holdings("a")
		return len(hs) == 1 && len(hs[0].Participants) == 1 && len(hs[0].Participants[0].Tracks) == 1
	})
	b.reconcile()
	if c := b.sfu.Conference(conf); c != nil {
		t.Fatalf("b proxies a conference it has no participant in: %v", c.Participants())
	}

	q1, err := b.sfu.Join(conf, focus.ParticipantInfo{ID: "Q1", Identity: "@v:hs:E", Role: focus.RoleMember})
	if err != nil {
		t.Fatal(err)
	}
	proxy := func() *focus.Participant { return b.sfu.Conference(conf).Participant("P1") }
	eventually(t, 2*time.Second, "b proxies P1 once Q1 joined", func() bool {
		p := proxy()
		return p != nil && len(p.Tracks()) == 1
	})
	p := proxy()
	info, up := p.Info(), p.Tracks()[0]
	if info.Origin != "a" || info.Identity != "@u:hs:D" || info.Role != focus.RoleMember {
		t.Errorf("proxy %+v", info)
	}
	ti := up.Info()
	if ti.ID != "MIC" || ti.StreamID != "s1" || ti.Kind != focus.KindAudio || ti.Source != focus.SourceMicrophone ||
		ti.Codec.MimeType != "audio/opus" || ti.Codec.Channels != 2 || len(ti.Layers) != 0 {
		t.Errorf("proxy track %+v", ti)
	}
	// Q1 is in a's holdings; a shows it now too.
	eventually(t, 2*time.Second, "a proxies Q1", func() bool {
		q := a.sfu.Conference(conf).Participant("Q1")
		return q != nil && q.Info().Origin == "b"
	})

	mic.SetMuted(true)
	eventually(t, 3*time.Second, "the mute reaches the proxy", func() bool { return up.Muted() })

	cam, _ := p1.Publish(focus.TrackInfo{ID: "CAM", Kind: focus.KindVideo, Source: focus.SourceCamera,
		Codec: focus.Codec{MimeType: "video/VP8", ClockRate: 90000}, Layers: []string{"q", "h", "f"}}, nil)
	cam.SetLayerSizes([]focus.Size{{Width: 320, Height: 180}, {Width: 640, Height: 360}, {Width: 1280, Height: 720}})
	eventually(t, 2*time.Second, "the camera is proxied with its three layers and their sizes", func() bool {
		ts := proxy().Tracks()
		return len(ts) == 2 && ts[1].ID() == "CAM" && ts[1].Layers() == 3 &&
			ts[1].LayerSize(0) == focus.Size{Width: 320, Height: 180} && ts[1].LayerSize(2) == focus.Size{Width: 1280, Height: 720}
	})
	if l := proxy().Tracks()[1].Info().Layers; !slices.Equal(l, []string{"q", "h", "f"}) {
		t.Errorf("the camera's proxy has layers %q", l)
	}
	// A size that changes at the origin changes at the proxy (the
	// holdings are checked every second).
	cam.SetLayerSizes([]focus.Size{{Width: 480, Height: 270}, {Width: 960, Height: 540}, {Width: 1920, Height: 1080}})
	eventually(t, 3*time.Second, "the new sizes reach the proxy", func() bool {
		return proxy().Tracks()[1].LayerSize(1) == focus.Size{Width: 960, Height: 540}
	})
	cam.Close()
	eventually(t, 2*time.Second, "the camera's proxy goes", func() bool { return len(proxy().Tracks()) == 1 })

	// Nobody here: the proxies go with the last local participant.
	q1.Leave()
	eventually(t, 2*time.Second, "b drops the conference with Q1", func() bool { return b.sfu.Conference(conf) == nil })

	// Back again, then a leaves the mesh.
	if _, err := b.sfu.Join(conf, focus.ParticipantInfo{ID: "Q2", Role: focus.RoleMember}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Second, "b proxies P1 again", func() bool { return proxy() != nil })
	m.setState("a", mesh.StateDead)
	eventually(t, 2*time.Second, "b drops a's proxies when a is dead", func() bool { return proxy() == nil })
	if s := b.cascade.Stats(); s.ProxyParticipants != 0 || s.ProxyTracks != 0 {
		t.Errorf("b's stats after a died: %+v", s)
	}
}
