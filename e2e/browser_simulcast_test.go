package e2e

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/focus-sfu/focus/internal/browser"
	"github.com/focus-sfu/focus/internal/focustest"
)

// simulcastWait bounds the waits that depend on bandwidth ramping up:
// Chrome sends its top layer only once its estimate of the path to the
// focus carries it, and the focus forwards it to a viewer only once its
// estimate of the path to that viewer does. Both start low and take a
// few seconds on loopback; this is several times that.
const simulcastWait = 90 * time.Second

// browserLayer mirrors an entry of window.focusStats.publish.layers.
type browserLayer struct {
	RID        string  `json:"rid"`
	Width      int     `json:"width"`
	Height     int     `json:"height"`
	FPS        float64 `json:"fps"`
	Bitrate    float64 `json:"bitrate"`
	Active     bool    `json:"active"`
	Limitation string  `json:"limitation"`
}

func (l browserLayer) String() string {
	return fmt.Sprintf("%s %dx%d %.0f fps %.0f kbit/s (limited by %s)", l.RID, l.Width, l.Height, l.FPS, l.Bitrate/1000, l.Limitation)
}

// sentTopWidth is the width of the widest layer the publisher sends.
func sentTopWidth(layers []browserLayer) int {
	w := 0
	for _, l := range layers {
		if l.Active && l.FPS > 0 && l.Bitrate > 0 {
			w = max(w, l.Width)
		}
	}
	return w
}

func readBrowserLayers(ctx context.Context, t *testing.T, p *browser.Page) []browserLayer {
	t.Helper()
	var ls []browserLayer
	if err := p.Eval(ctx, "window.focusStats.publish.layers || []", &ls); err != nil {
		t.Fatal(err)
	}
	return ls
}

// TestBrowserSimulcastViewerSize: Chromium publishes its fake camera
// through the reference page as VP8 simulcast (q, h, f at 320x180,
// 640x360 and 1280x720). A viewer that asks the focus for 320x180
// (WHEP ?width=320&height=180) decodes the low layer, while a viewer
// with no cap, watching at the same time, gets the top one.
func TestBrowserSimulcastViewerSize(t *testing.T) {
	b := browser.New(t) // skips (or fails under CI=true) without Chromium
	base := focustest.Start(t, nil).URL
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	room := browserRoom()

	start := time.Now()
	pub, err := b.NewPage(ctx, base+"/?"+url.Values{"room": {room}, "mode": {"publish"}, "autostart": {"1"}, "simulcast": {"1"}}.Encode())
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.WaitFor(ctx, "window.focusState.publish === 'publishing'", browserWait); err != nil {
		t.Fatalf("publisher: %v; errors on the page: %s", err, browserPageErrors(ctx, pub))
	}
	waitBrowserTracks(ctx, t, base, room, 2)
	t.Logf("publisher connected, focus has both tracks after %v", time.Since(start).Round(time.Millisecond))

	// Chrome reports one outbound-rtp per layer at once; the layers start
	// sending as its bandwidth estimate grows.
	if err := pub.WaitFor(ctx, "(window.focusStats.publish.layers || []).length === 3", browserWait); err != nil {
		t.Fatalf("publisher does not send three simulcast layers: %v; layers %v", err, readBrowserLayers(ctx, t, pub))
	}
	if err := pub.WaitFor(ctx, "window.focusStats.publish.layers.every((l) => l.width > 0)", simulcastWait); err != nil {
		t.Fatalf("publisher: not every layer is sending: %v; layers %v", err, readBrowserLayers(ctx, t, pub))
	}
	layers := readBrowserLayers(ctx, t, pub)
	t.Logf("publisher sends every layer after %v: %v", time.Since(start).Round(time.Millisecond), layers)
	var rids []string
	for _, l := range layers {
		rids = append(rids, l.RID)
	}
	if got := strings.Join(rids, ","); got != "q,h,f" {
		t.Fatalf("publisher's layers are %s, want q,h,f", got)
	}
	top := layers[2].Width
	if !(layers[0].Width < layers[1].Width && layers[1].Width < top) {
		t.Fatalf("publisher's layers do not grow from q to f: %v", layers)
	}
	if top < 960 {
		t.Fatalf("the fake camera's top layer is %d wide; the test needs at least 960 to tell it from the low layer", top)
	}

	watchStart := time.Now()
	small, err := b.NewPage(ctx, base+"/?"+url.Values{"room": {room}, "mode": {"watch"}, "autostart": {"1"}, "width": {"320"}, "height": {"180"}}.Encode())
	if err != nil {
		t.Fatal(err)
	}
	full, err := b.NewPage(ctx, base+"/?"+url.Values{"room": {room}, "mode": {"watch"}, "autostart": {"1"}}.Encode())
	if err != nil {
		t.Fatal(err)
	}
	for name, p := range map[string]*browser.Page{"small viewer": small, "full viewer": full} {
		if err := p.WaitFor(ctx, "window.focusState.watch === 'watching' && window.focusStats.watch.framesDecoded > 0", browserWait); err != nil {
			t.Fatalf("%s: %v; errors on the page: %s; stats %s", name, err, browserPageErrors(ctx, p), readBrowserStats(ctx, t, p, "watch"))
		}
	}
	firstFrames := time.Since(watchStart)

	// The small viewer settles on the low layer, the full one on the top
	// layer. Both are judged by the frameWidth the viewer's own getStats()
	// reports for its inbound video.
	if err := small.WaitFor(ctx, "window.focusStats.watch.width > 0 && window.focusStats.watch.width <= 400", simulcastWait); err != nil {
		t.Fatalf("small viewer never decodes the low layer: %v; stats %s; publisher layers %v",
			err, readBrowserStats(ctx, t, small, "watch"), readBrowserLayers(ctx, t, pub))
	}
	smallLow := time.Since(watchStart)
	if err := full.WaitFor(ctx, fmt.Sprintf("window.focusStats.watch.width >= %d", top), simulcastWait); err != nil {
		t.Fatalf("full viewer never gets the top layer (%d wide): %v; stats %s; publisher layers %v",
			top, err, readBrowserStats(ctx, t, full, "watch"), readBrowserLayers(ctx, t, pub))
	}
	fullTop := time.Since(watchStart)
	t.Logf("viewers' first frames after %v; small viewer on the low layer after %v, full viewer on the top layer after %v",
		firstFrames.Round(time.Millisecond), smallLow.Round(time.Millisecond), fullTop.Round(time.Millisecond))

	// Both stay there while media flows; the small viewer's <video> shows
	// the low layer too. "The top layer" is the widest one the publisher
	// sends at the time: on a loaded machine Chrome may scale its layers
	// down (limited by cpu) or stop the top one (limited by bandwidth),
	// and then the right answer for the full viewer is the widest layer
	// still sent. Chrome's stats lag by up to a second, so a sample is
	// judged against the widest layer of that second and the one before.
	var smallWidths, fullWidths []int
	smallBefore := readBrowserStats(ctx, t, small, "watch")
	fullBefore := readBrowserStats(ctx, t, full, "watch")
	prevTop := sentTopWidth(readBrowserLayers(ctx, t, pub))
	for i := range 5 {
		time.Sleep(time.Second)
		s := readBrowserStats(ctx, t, small, "watch").Width
		f := readBrowserStats(ctx, t, full, "watch").Width
		now := readBrowserLayers(ctx, t, pub)
		smallWidths = append(smallWidths, s)
		fullWidths = append(fullWidths, f)
		if s == 0 || s > 400 {
			t.Errorf("sample %d: small viewer's frame width is %d, want the low layer (at most 400); publisher %v", i, s, now)
		}
		if sentTopWidth(now) == 0 {
			t.Errorf("sample %d: the publisher sends no layer: %v", i, now)
		}
		if want := min(prevTop, sentTopWidth(now)); f < want {
			t.Errorf("sample %d: full viewer's frame width is %d, want the widest layer sent (%d); publisher %v", i, f, want, now)
		}
		prevTop = sentTopWidth(now)
	}
	smallAfter := readBrowserStats(ctx, t, small, "watch")
	fullAfter := readBrowserStats(ctx, t, full, "watch")
	t.Logf("publisher:    %v", readBrowserLayers(ctx, t, pub))
	t.Logf("small viewer: %s; frame widths over 5 s %v", smallAfter, smallWidths)
	t.Logf("full viewer:  %s; frame widths over 5 s %v", fullAfter, fullWidths)
	if smallAfter.FramesDecoded <= smallBefore.FramesDecoded || fullAfter.FramesDecoded <= fullBefore.FramesDecoded {
		t.Errorf("frames decoded did not grow in 5 s: small %d then %d, full %d then %d",
			smallBefore.FramesDecoded, smallAfter.FramesDecoded, fullBefore.FramesDecoded, fullAfter.FramesDecoded)
	}
	var videoWidth int
	if err := small.Eval(ctx, "document.getElementById('watch-video').videoWidth", &videoWidth); err != nil {
		t.Fatal(err)
	}
	if videoWidth == 0 || videoWidth > 400 {
		t.Errorf("small viewer's <video> is %d wide, want the low layer", videoWidth)
	}
	var asked struct {
		Width  string `json:"width"`
		Height string `json:"height"`
	}
	if err := small.Eval(ctx, "window.focusStats.watch.asked", &asked); err != nil {
		t.Fatal(err)
	}
	if asked.Width != "320" || asked.Height != "180" {
		t.Errorf("small viewer says it asked for %+v, want 320x180", asked)
	}

	if err := small.Screenshot(ctx, browserArtifact(t, "browser-simulcast-small.png")); err != nil {
		t.Error(err)
	}
	for name, p := range map[string]*browser.Page{"publisher": pub, "small viewer": small, "full viewer": full} {
		if errs := browserPageErrors(ctx, p); errs != "" {
			t.Errorf("%s page shows errors: %s", name, errs)
		}
		for _, line := range p.Console() {
			if strings.Contains(line, "exception:") {
				t.Errorf("%s page threw: %s", name, line)
			}
		}
	}
}

// TestBrowserViewerSizeRefused: a size the focus refuses shows its 400
// and its reason on the watching page.
func TestBrowserViewerSizeRefused(t *testing.T) {
	b := browser.New(t)
	base := focustest.Start(t, nil).URL
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	room := browserRoom()

	pub, err := b.NewPage(ctx, base+"/?"+url.Values{"room": {room}, "mode": {"publish"}, "autostart": {"1"}}.Encode())
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.WaitFor(ctx, "window.focusState.publish === 'publishing'", browserWait); err != nil {
		t.Fatalf("publisher: %v; errors on the page: %s", err, browserPageErrors(ctx, pub))
	}
	waitBrowserTracks(ctx, t, base, room, 2)

	watch, err := b.NewPage(ctx, base+"/?"+url.Values{"room": {room}, "mode": {"watch"}, "autostart": {"1"}, "width": {"-5"}}.Encode())
	if err != nil {
		t.Fatal(err)
	}
	if err := watch.WaitFor(ctx, "window.focusState.watch === 'error'", browserWait); err != nil {
		t.Fatal(err)
	}
	errs := browserPageErrors(ctx, watch)
	t.Logf("the page says: %s", errs)
	for _, want := range []string{"HTTP 400", `width="-5"`, "?width=-5"} {
		if !strings.Contains(errs, want) {
			t.Errorf("the page's error %q does not contain %q", errs, want)
		}
	}
}
