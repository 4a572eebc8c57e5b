package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/focus-sfu/focus/internal/browser"
	"github.com/focus-sfu/focus/internal/lkbrowser"
)

// lkPageStats mirrors what window.lkStats() returns (internal/lkbrowser).
type lkPageStats struct {
	Remote map[string]map[string]lkKindStats `json:"remote"`
	Local  map[string]lkKindStats            `json:"local"`
}

type lkKindStats struct {
	Packets       int `json:"packets"`
	Bytes         int `json:"bytes"`
	FramesDecoded int `json:"framesDecoded"`
	FramesEncoded int `json:"framesEncoded"`
	FrameWidth    int `json:"frameWidth"`
	FrameHeight   int `json:"frameHeight"`
}

func (s lkPageStats) String() string {
	var b strings.Builder
	for who, kinds := range s.Remote {
		fmt.Fprintf(&b, "from %s: video %d frames decoded (%dx%d), %d packets; audio %d packets; ",
			who, kinds["video"].FramesDecoded, kinds["video"].FrameWidth, kinds["video"].FrameHeight,
			kinds["video"].Packets, kinds["audio"].Packets)
	}
	fmt.Fprintf(&b, "sent: video %d frames encoded, %d packets; audio %d packets",
		s.Local["video"].FramesEncoded, s.Local["video"].Packets, s.Local["audio"].Packets)
	return b.String()
}

// TestLiveKitBrowser: two Chromium tabs run livekit-client (the version
// Element Call's generation uses, with its room options: adaptive stream,
// dynacast, simulcast) against the focus. Each joins the same room,
// publishes the fake camera and microphone, and decodes the other's video
// and receives its audio.
func TestLiveKitBrowser(t *testing.T) {
	b := browser.New(t) // skips (or fails under CI=true) without Chromium
	pages := lkbrowser.Start(t)
	env := startLiveKit(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const room = "browser"

	names := []string{"anna", "ben"}
	tabs := map[string]*browser.Page{}
	for _, name := range names {
		p, err := b.NewPage(ctx, pages.PageURL(env.wsURL, lkToken(t, name, room, time.Hour), nil))
		if err != nil {
			t.Fatal(err)
		}
		tabs[name] = p
	}
	for _, name := range names {
		p := tabs[name]
		if err := p.WaitFor(ctx, "window.lk.state === 'publishing' || window.lk.state === 'error'", lkWait); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if errs := lkPageErrors(ctx, p); errs != "" {
			t.Fatalf("%s: the page failed: %s", name, errs)
		}
	}

	// Each decodes the other's video, and it keeps decoding.
	for _, name := range names {
		other := names[0]
		if other == name {
			other = names[1]
		}
		ok := lkWaitStats(ctx, tabs[name], func(s lkPageStats) bool {
			r := s.Remote[other]
			return r["video"].FramesDecoded > 0 && r["audio"].Packets > 0
		})
		if !ok {
			t.Fatalf("%s never decoded %s's video and got its audio within %v; stats %s", name, other, lkWait, lkReadStats(ctx, t, tabs[name]))
		}
	}
	before := map[string]lkPageStats{}
	for _, name := range names {
		before[name] = lkReadStats(ctx, t, tabs[name])
	}
	time.Sleep(3 * time.Second)
	for _, name := range names {
		other := names[0]
		if other == name {
			other = names[1]
		}
		after := lkReadStats(ctx, t, tabs[name])
		t.Logf("%s: %s", name, after)
		b, a := before[name].Remote[other], after.Remote[other]
		if a["video"].FramesDecoded <= b["video"].FramesDecoded {
			t.Errorf("%s: frames decoded of %s's video did not grow in 3 s: %d, then %d", name, other, b["video"].FramesDecoded, a["video"].FramesDecoded)
		}
		if a["audio"].Packets <= b["audio"].Packets {
			t.Errorf("%s: audio packets from %s did not grow in 3 s: %d, then %d", name, other, b["audio"].Packets, a["audio"].Packets)
		}
		if a["video"].FrameWidth == 0 {
			t.Errorf("%s: no decoded resolution for %s's video", name, other)
		}
	}

	if err := tabs[names[0]].Screenshot(ctx, browserArtifact(t, "livekit-browser.png")); err != nil {
		t.Error(err)
	}
	for _, name := range names {
		if errs := lkPageErrors(ctx, tabs[name]); errs != "" {
			t.Errorf("%s: the page shows errors: %s", name, errs)
		}
		for _, line := range tabs[name].Console() {
			if strings.Contains(line, "exception:") {
				t.Errorf("%s: the page threw: %s", name, line)
			}
		}
	}

	// Ben leaves; Anna's page sees him go.
	if err := tabs["ben"].Eval(ctx, "window.lkRoom.disconnect()", nil); err != nil {
		t.Fatal(err)
	}
	if err := tabs["anna"].WaitFor(ctx, "window.lk.events.some(e => e.what === 'participant disconnected ben')", lkWait); err != nil {
		t.Error(err)
	}
}

func lkReadStats(ctx context.Context, t *testing.T, p *browser.Page) lkPageStats {
	t.Helper()
	var s lkPageStats
	if err := p.Eval(ctx, "window.lkStats()", &s); err != nil {
		t.Fatal(err)
	}
	return s
}

// lkWaitStats polls window.lkStats() until cond holds, for up to lkWait.
// (browser.Page.WaitFor takes a boolean expression, not a promise.)
func lkWaitStats(ctx context.Context, p *browser.Page, cond func(lkPageStats) bool) bool {
	ctx, cancel := context.WithTimeout(ctx, lkWait)
	defer cancel()
	for {
		var s lkPageStats
		if err := p.Eval(ctx, "window.lkStats()", &s); err == nil && cond(s) {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// lkPageErrors returns the errors the page recorded, joined, or "".
func lkPageErrors(ctx context.Context, p *browser.Page) string {
	var errs []string
	if err := p.Eval(ctx, "window.lk.errors", &errs); err != nil {
		return err.Error()
	}
	return strings.Join(errs, "; ")
}
