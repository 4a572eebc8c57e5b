package cascade

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/focus-sfu/focus/focus"
	"github.com/focus-sfu/focus/mesh"
	"github.com/focus-sfu/focus/whip"
)

// TestClose: closing a cascade ends its trunks at once (the exporter
// hears of it and drops its hidden viewer), removes its proxies,
// withdraws its holdings, and, with the rest of the focus closed, leaves
// no goroutine behind.
func TestClose(t *testing.T) {
	goroutines := runtime.NumGoroutine()
	m := newFakeMesh()
	a := startNode(t, m, "a")
	b := startNode(t, m, "b")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conf := whip.ConferenceID("r")
	pub, v := publishAndView(ctx, t, a, b)
	hidden := func() int {
		n := 0
		for _, p := range a.sfu.Conference(conf).Participants() {
			if p.Info().Identity == viewerIdentity("b") && p.Info().Origin == "b" && p.Info().Role == focus.RoleViewer {
				n++
			}
		}
		return n
	}
	if hidden() != 1 {
		t.Fatalf("a has %d hidden viewers for b", hidden())
	}
	if len(m.dir("a").Holdings("b")) == 0 {
		t.Fatal("b holds nothing before it closed")
	}

	start := time.Now()
	b.cascade.Close()
	if el := time.Since(start); el > closeWait+time.Second {
		t.Errorf("Close took %v", el)
	}
	if ps := b.proxiesFrom(conf, "a"); len(ps) != 0 {
		t.Errorf("b keeps %d proxies of a after Close", len(ps))
	}
	if s := b.cascade.Status(); len(s.Trunks) != 0 || s.ProxyParticipants != 0 {
		t.Errorf("b after Close: %+v", s)
	}
	if hs := m.dir("a").Holdings("b"); len(hs) != 0 {
		t.Errorf("b still holds %v after Close", hs)
	}
	eventually(t, 2*time.Second, "a drops its export to b", func() bool {
		return hidden() == 0 && a.cascade.Stats().Exports == 0
	})
	b.cascade.Close() // again: a no-op

	_ = v.Close()
	_ = pub.Close()
	b.close()
	a.close()
	eventually(t, 10*time.Second, "the goroutines of the test to end", func() bool {
		return runtime.NumGoroutine() <= goroutines
	})
}

// TestHoldings: what a focus tells the mesh it holds: its conferences
// with a participant connected here, those participants and their
// tracks; never proxies or the hidden viewers of trunks.
func TestHoldings(t *testing.T) {
	sfu := focus.New(focus.Options{})
	defer sfu.Close()
	local, _ := sfu.Join("whip:r", focus.ParticipantInfo{ID: "P1", Identity: "whip", Role: focus.RoleIngress})
	up, _ := local.Publish(focus.TrackInfo{ID: "T1", StreamID: "s", Kind: focus.KindVideo, Source: focus.SourceCamera,
		Codec: focus.Codec{MimeType: "video/VP8", ClockRate: 90000}, Layers: []string{"q", "h"}}, nil)
	up.SetMuted(true)
	proxy, _ := sfu.Join("whip:r", focus.ParticipantInfo{ID: "P2", Identity: "whip", Role: focus.RoleIngress, Origin: "x"})
	_, _ = proxy.Publish(focus.TrackInfo{ID: "T2", Kind: focus.KindAudio, Codec: focus.Codec{MimeType: "audio/opus"}}, nil)
	_, _ = sfu.Join("whip:r", focus.ParticipantInfo{ID: "P3", Identity: viewerIdentity("y"), Role: focus.RoleViewer, Origin: "y"})
	_, _ = sfu.Join("whip:only-proxies", focus.ParticipantInfo{ID: "P4", Origin: "x"})
	if err := sfu.Alias("lk:r", "whip:r"); err != nil {
		t.Fatal(err)
	}

	got := holdings(sfu)
	want := []mesh.Conference{{
		Names: []string{"whip:r", "lk:r"},
		Participants: []mesh.Participant{{ID: "P1", Identity: "whip", Role: "ingress", Tracks: []mesh.Track{{
			ID: "T1", StreamID: "s", Kind: "video", Source: "camera", MimeType: "video/VP8", ClockRate: 90000,
			Muted: true, Layers: []string{"q", "h"},
		}}}},
	}}
	if !equalJSON(got, want) {
		t.Errorf("holdings\n got %s\nwant %s", toJSON(got), toJSON(want))
	}
}
