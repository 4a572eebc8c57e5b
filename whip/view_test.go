package whip

import (
	"testing"

	"github.com/focus-sfu/focus/focus"
)

// TestPinnedParticipantCompleteByKinds: a pinned participant of another
// front-end or focus (a cascade proxy publishes its origin's tracks one
// by one) is complete only once it has a track of as many kinds as the
// viewer's offer has sections.
func TestPinnedParticipantCompleteByKinds(t *testing.T) {
	e := newEnv(t, nil)
	p, err := e.sfu.Join(ConferenceID("room"), focus.ParticipantInfo{Origin: "b"})
	if err != nil {
		t.Fatal(err)
	}
	srcs, complete := e.srv.pickSources("room", p.ID(), 2)
	if len(srcs) != 0 || complete {
		t.Fatalf("no tracks yet: %d sources, complete %v", len(srcs), complete)
	}
	if _, err := p.Publish(focus.TrackInfo{Kind: focus.KindAudio, Codec: focus.Codec{MimeType: "audio/opus", ClockRate: 48000}}, nil); err != nil {
		t.Fatal(err)
	}
	if srcs, complete = e.srv.pickSources("room", p.ID(), 2); len(srcs) != 1 || complete {
		t.Fatalf("audio only, the viewer offers two sections: %d sources, complete %v", len(srcs), complete)
	}
	if srcs, complete = e.srv.pickSources("room", p.ID(), 1); len(srcs) != 1 || !complete {
		t.Fatalf("audio only, the viewer offers one section: %d sources, complete %v", len(srcs), complete)
	}
	if _, err := p.Publish(focus.TrackInfo{Kind: focus.KindVideo, Codec: focus.Codec{MimeType: "video/VP8", ClockRate: 90000}}, nil); err != nil {
		t.Fatal(err)
	}
	if srcs, complete = e.srv.pickSources("room", p.ID(), 2); len(srcs) != 2 || !complete {
		t.Fatalf("audio and video: %d sources, complete %v", len(srcs), complete)
	}
}
