package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/focus-sfu/focus/internal/browser"
	"github.com/focus-sfu/focus/internal/focustest"
)

// These tests drive the reference page (web/) in a real headless Chromium
// against a focus running in this process: the fake camera publishes over
// WHIP in one tab, another tab watches over WHEP, and getStats() in the
// browser says whether media flows. Bounds are about ten times what a
// healthy run takes, so they catch media that never arrives, not media that
// is slow.

const browserWait = 30 * time.Second

// browserPageStats mirrors window.focusStats.<side> in web/static/app.js.
type browserPageStats struct {
	ConnectionState string  `json:"connectionState"`
	Cipher          string  `json:"cipher"`
	DTLSCipher      string  `json:"dtlsCipher"`
	CandidatePair   string  `json:"candidatePair"`
	Width           int     `json:"width"`
	Height          int     `json:"height"`
	FPS             float64 `json:"fps"`
	Bitrate         float64 `json:"bitrate"`
	FramesDecoded   int     `json:"framesDecoded"`
	FramesEncoded   int     `json:"framesEncoded"`
	AudioPackets    int     `json:"audioPackets"`
	VideoPackets    int     `json:"videoPackets"`
	Audio           struct {
		Codec       string `json:"codec"`
		PacketsLost int    `json:"packetsLost"`
	} `json:"audio"`
	Video struct {
		Codec       string `json:"codec"`
		PacketsLost int    `json:"packetsLost"`
	} `json:"video"`
}

func (s browserPageStats) String() string {
	return fmt.Sprintf("%s, %dx%d @ %.0f fps, %.0f kbit/s, %s + %s, %d audio / %d video packets, %d frames decoded, SRTP %q, path %s",
		s.ConnectionState, s.Width, s.Height, s.FPS, s.Bitrate/1000, s.Audio.Codec, s.Video.Codec,
		s.AudioPackets, s.VideoPackets, s.FramesDecoded, s.Cipher, s.CandidatePair)
}

func TestBrowserPublishWatch(t *testing.T) {
	b := browser.New(t) // skips (or fails under CI=true) without Chromium
	base := focustest.Start(t, nil).URL
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	room := browserRoom()

	start := time.Now()
	pub, err := b.NewPage(ctx, base+"/?"+url.Values{"room": {room}, "mode": {"publish"}, "autostart": {"1"}}.Encode())
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.WaitFor(ctx, "window.focusState.publish === 'publishing'", browserWait); err != nil {
		t.Fatalf("publisher: %v; errors on the page: %s", err, browserPageErrors(ctx, pub))
	}
	published := time.Since(start)
	// A viewer is matched with the tracks the room has when it asks, so wait
	// until the focus holds both.
	waitBrowserTracks(ctx, t, base, room, 2)
	tracks := time.Since(start)

	watchStart := time.Now()
	watch, err := b.NewPage(ctx, base+"/?"+url.Values{"room": {room}, "mode": {"watch"}, "autostart": {"1"}}.Encode())
	if err != nil {
		t.Fatal(err)
	}
	if err := watch.WaitFor(ctx, "window.focusState.watch === 'watching'", browserWait); err != nil {
		t.Fatalf("watcher: %v; errors on the page: %s", err, browserPageErrors(ctx, watch))
	}
	watching := time.Since(watchStart)
	if err := watch.WaitFor(ctx, "window.focusStats.watch.framesDecoded > 0 && window.focusStats.watch.audioPackets > 0", browserWait); err != nil {
		t.Fatalf("watcher: %v; stats %s", err, readBrowserStats(ctx, t, watch, "watch"))
	}
	firstFrame := time.Since(watchStart)
	t.Logf("publisher connected after %v, focus had both tracks after %v; watcher connected after %v, first decoded frame after %v",
		published.Round(time.Millisecond), tracks.Round(time.Millisecond), watching.Round(time.Millisecond), firstFrame.Round(time.Millisecond))

	// Media keeps flowing: every counter grows over a few seconds.
	before := readBrowserStats(ctx, t, watch, "watch")
	time.Sleep(4 * time.Second)
	after := readBrowserStats(ctx, t, watch, "watch")
	pubStats := readBrowserStats(ctx, t, pub, "publish")
	t.Logf("publisher: %s", pubStats)
	t.Logf("watcher:   %s", after)
	for _, c := range []struct {
		what          string
		before, after int
	}{
		{"frames decoded", before.FramesDecoded, after.FramesDecoded},
		{"video packets received", before.VideoPackets, after.VideoPackets},
		{"audio packets received", before.AudioPackets, after.AudioPackets},
	} {
		if c.after <= c.before {
			t.Errorf("watcher: %s did not grow in 4 s: %d, then %d", c.what, c.before, c.after)
		}
	}
	if after.Width == 0 || after.Height == 0 {
		t.Errorf("watcher: no decoded resolution: %s", after)
	}
	var videoWidth int
	if err := watch.Eval(ctx, "document.getElementById('watch-video').videoWidth", &videoWidth); err != nil {
		t.Fatal(err)
	}
	if videoWidth == 0 {
		t.Error("watcher: the <video> element shows nothing (videoWidth 0)")
	}

	// The SRTP protection profile both ends agreed with the focus.
	t.Logf("SRTP cipher: publisher %q, watcher %q (DTLS %q / %q); the focus prefers AEAD_AES_128_GCM",
		pubStats.Cipher, after.Cipher, pubStats.DTLSCipher, after.DTLSCipher)
	if pubStats.Cipher == "" || after.Cipher == "" {
		t.Errorf("no SRTP cipher in getStats(): publisher %q, watcher %q", pubStats.Cipher, after.Cipher)
	}

	if err := watch.Screenshot(ctx, browserArtifact(t, "browser-watch.png")); err != nil {
		t.Error(err)
	}

	for name, p := range map[string]*browser.Page{"publisher": pub, "watcher": watch} {
		if errs := browserPageErrors(ctx, p); errs != "" {
			t.Errorf("%s page shows errors: %s", name, errs)
		}
		for _, line := range p.Console() {
			if strings.Contains(line, "exception:") {
				t.Errorf("%s page threw: %s", name, line)
			}
		}
	}

	// Stop on both pages ends both sessions with DELETE.
	for _, s := range []struct {
		p    *browser.Page
		side string
	}{{watch, "watch"}, {pub, "publish"}} {
		if err := s.p.Eval(ctx, fmt.Sprintf("document.getElementById('%s-stop').click()", s.side), nil); err != nil {
			t.Fatal(err)
		}
		if err := s.p.WaitFor(ctx, fmt.Sprintf("window.focusState.%s === 'stopped'", s.side), browserWait); err != nil {
			t.Error(err)
		}
	}
	waitBrowserRoomGone(ctx, t, base, room)
}

// TestBrowserWatchEmptyRoom: watching a room where nobody publishes shows
// the focus's 404 and its explanation to the person, on the page.
func TestBrowserWatchEmptyRoom(t *testing.T) {
	b := browser.New(t)
	base := focustest.Start(t, nil).URL
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	room := browserRoom()

	p, err := b.NewPage(ctx, base+"/?"+url.Values{"room": {room}, "mode": {"watch"}, "autostart": {"1"}}.Encode())
	if err != nil {
		t.Fatal(err)
	}
	if err := p.WaitFor(ctx, "window.focusState.watch === 'error'", browserWait); err != nil {
		t.Fatal(err)
	}
	var box struct {
		Text    string `json:"text"`
		Visible bool   `json:"visible"`
	}
	err = p.Eval(ctx, `(() => {
		const e = document.getElementById('watch-error');
		const r = e.getBoundingClientRect();
		return {text: e.textContent, visible: !e.hidden && r.width > 0 && r.height > 0};
	})()`, &box)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("the page says: %s", box.Text)
	if !box.Visible {
		t.Error("the error area is not visible")
	}
	// "POST whep/<room> failed: HTTP 404 Not Found: <the focus's reason>"
	status, reason, _ := strings.Cut(box.Text, "HTTP 404 Not Found")
	if status == box.Text {
		t.Errorf("the error %q does not give the HTTP status 404", box.Text)
	}
	if strings.TrimLeft(reason, ": ") == "" {
		t.Errorf("the error %q does not show the focus's response body", box.Text)
	}
	if !strings.Contains(box.Text, "whep/"+room) {
		t.Errorf("the error %q does not name the request", box.Text)
	}
	var errs []struct {
		Side    string `json:"side"`
		Message string `json:"message"`
	}
	if err := p.Eval(ctx, "window.focusErrors", &errs); err != nil {
		t.Fatal(err)
	}
	if len(errs) != 1 || errs[0].Side != "watch" || errs[0].Message != box.Text {
		t.Errorf("window.focusErrors = %+v, want the one error on the page", errs)
	}
}

// browserRoom is a room name no other test uses.
func browserRoom() string {
	return fmt.Sprintf("browser-%d", time.Now().UnixNano())
}

// browserRooms reads GET /api/rooms: room name to the number of tracks
// published in it, for the rooms that have a session.
func browserRooms(ctx context.Context, base string) (map[string]int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/rooms", nil)
	if err != nil {
		return nil, err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /api/rooms: %s", res.Status)
	}
	var body struct {
		Rooms []struct {
			Name       string `json:"name"`
			Publishers []struct {
				Tracks []json.RawMessage `json:"tracks"`
			} `json:"publishers"`
		} `json:"rooms"`
	}
	if err := json.NewDecoder(res.Body).Decode(&body); err != nil {
		return nil, fmt.Errorf("GET /api/rooms: %w", err)
	}
	rooms := make(map[string]int)
	for _, r := range body.Rooms {
		n := 0
		for _, p := range r.Publishers {
			n += len(p.Tracks)
		}
		rooms[r.Name] = n
	}
	return rooms, nil
}

func waitBrowserTracks(ctx context.Context, t *testing.T, base, room string, want int) {
	t.Helper()
	waitBrowserRooms(ctx, t, base, fmt.Sprintf("%d tracks in room %q", want, room), func(rooms map[string]int) bool {
		return rooms[room] >= want
	})
}

func waitBrowserRoomGone(ctx context.Context, t *testing.T, base, room string) {
	t.Helper()
	waitBrowserRooms(ctx, t, base, fmt.Sprintf("room %q to have no session", room), func(rooms map[string]int) bool {
		_, ok := rooms[room]
		return !ok
	})
}

func waitBrowserRooms(ctx context.Context, t *testing.T, base, what string, done func(map[string]int) bool) {
	t.Helper()
	deadline := time.Now().Add(browserWait)
	for {
		rooms, err := browserRooms(ctx, base)
		if err == nil && done(rooms) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s: rooms %v, error %v", browserWait, what, rooms, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func readBrowserStats(ctx context.Context, t *testing.T, p *browser.Page, side string) browserPageStats {
	t.Helper()
	var s browserPageStats
	if err := p.Eval(ctx, "window.focusStats."+side, &s); err != nil {
		t.Fatal(err)
	}
	return s
}

// browserPageErrors returns the errors the page shows, joined, or "".
func browserPageErrors(ctx context.Context, p *browser.Page) string {
	var errs []struct {
		Side    string `json:"side"`
		Message string `json:"message"`
	}
	if err := p.Eval(ctx, "window.focusErrors", &errs); err != nil {
		return err.Error()
	}
	var out []string
	for _, e := range errs {
		out = append(out, e.Side+": "+e.Message)
	}
	return strings.Join(out, "; ")
}

// browserArtifact is where a test keeps a file for people to look at:
// $FOCUS_ARTIFACTS, or artifacts/ at the root of the repository.
func browserArtifact(t *testing.T, name string) string {
	t.Helper()
	dir := os.Getenv("FOCUS_ARTIFACTS")
	if dir == "" {
		wd, err := os.Getwd()
		if err != nil {
			t.Fatal(err)
		}
		root := wd
		for {
			if _, err := os.Stat(filepath.Join(root, "go.mod")); err == nil {
				break
			}
			parent := filepath.Dir(root)
			if parent == root {
				t.Fatalf("no go.mod above %s to put artifacts/ next to; set FOCUS_ARTIFACTS", wd)
			}
			root = parent
		}
		dir = filepath.Join(root, "artifacts")
	}
	path := filepath.Join(dir, name)
	t.Logf("artifact: %s", path)
	return path
}
