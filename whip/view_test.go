package whip

import (
	"context"
	"testing"
	"time"

	"github.com/focus-sfu/focus/focus"
	"github.com/focus-sfu/focus/rtc"
	"github.com/rs/zerolog"
)

// TestPinnedParticipantCompleteByKinds: a pinned participant of another
// front-end or focus (a cascade proxy publishes its origin's tracks one
// by one) is complete only once it has a track of as many kinds as the
// viewer's offer has sections.
//
// The same holds unpinned, for the room's newest publisher when no WHIP
// publisher is in the room: the cascade test that watches a remote
// publisher failed when its viewer was answered with the proxy's audio
// alone, before the proxy had the video.
func TestPinnedParticipantCompleteByKinds(t *testing.T) {
	for _, pin := range []bool{true, false} {
		e := newEnv(t, nil)
		p, err := e.sfu.Join(ConferenceID("room"), focus.ParticipantInfo{Origin: "b"})
		if err != nil {
			t.Fatal(err)
		}
		var pinned focus.ParticipantID
		if pin {
			pinned = p.ID()
		}
		srcs, complete := e.srv.pickSources("room", pinned, 2)
		if len(srcs) != 0 || complete != !pin {
			t.Fatalf("pinned %v, no tracks yet: %d sources, complete %v", pin, len(srcs), complete)
		}
		publishKind(t, p, focus.KindAudio)
		if srcs, complete = e.srv.pickSources("room", pinned, 2); len(srcs) != 1 || complete {
			t.Fatalf("pinned %v, audio only, the viewer offers two sections: %d sources, complete %v", pin, len(srcs), complete)
		}
		if srcs, complete = e.srv.pickSources("room", pinned, 1); len(srcs) != 1 || !complete {
			t.Fatalf("pinned %v, audio only, the viewer offers one section: %d sources, complete %v", pin, len(srcs), complete)
		}
		publishKind(t, p, focus.KindVideo)
		if srcs, complete = e.srv.pickSources("room", pinned, 2); len(srcs) != 2 || !complete {
			t.Fatalf("pinned %v, audio and video: %d sources, complete %v", pin, len(srcs), complete)
		}
	}
}

// TestSettledPublisherComplete: a participant whose newest track is
// trackSettle old has all its tracks, so an audio-only publisher keeps a
// viewer that offers audio and video waiting no longer than that.
func TestSettledPublisherComplete(t *testing.T) {
	engine, err := rtc.New(rtc.Config{BindAddress: "127.0.0.1"}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer engine.Close()
	// Tracks published by this SFU started trackSettle ago.
	sfu := focus.New(focus.Options{Now: func() time.Time { return time.Now().Add(-trackSettle) }})
	defer sfu.Close()
	srv, err := New(Options{Engine: engine, SFU: sfu, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close(context.Background())
	p, err := sfu.Join(ConferenceID("room"), focus.ParticipantInfo{Origin: "b"})
	if err != nil {
		t.Fatal(err)
	}
	publishKind(t, p, focus.KindAudio)
	if srcs, complete := srv.pickSources("room", "", 2); len(srcs) != 1 || !complete {
		t.Fatalf("audio only, settled: %d sources, complete %v", len(srcs), complete)
	}
}

func publishKind(t *testing.T, p *focus.Participant, kind focus.Kind) {
	t.Helper()
	codec := focus.Codec{MimeType: "audio/opus", ClockRate: 48000}
	if kind == focus.KindVideo {
		codec = focus.Codec{MimeType: "video/VP8", ClockRate: 90000}
	}
	if _, err := p.Publish(focus.TrackInfo{Kind: kind, Codec: codec}, nil); err != nil {
		t.Fatal(err)
	}
}
