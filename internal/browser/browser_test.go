package browser

import (
	"bytes"
	"context"
	"fmt"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/focus-sfu/focus/web"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestFlags(t *testing.T) {
	want := []string{
		"--headless=new", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
		"--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
		"--disable-sync", "--no-first-run", "--allow-loopback-in-peer-connection",
		"--disable-features=WebRtcHideLocalIpsWithMdns", "--autoplay-policy=no-user-gesture-required",
		"--disable-quic",
	}
	if got := Flags(); !slices.Equal(got, want) {
		t.Errorf("Flags() = %q\nwant %q", got, want)
	}
}

func TestFind(t *testing.T) {
	dir := t.TempDir()
	plain := filepath.Join(dir, "plain")
	if err := os.WriteFile(plain, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(dir, "chromium")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		env     string
		wantErr string
	}{
		{filepath.Join(dir, "missing"), "no such file"},
		{dir, "not an executable file"},
		{plain, "not an executable file"},
		{exe, ""},
	}
	for _, tt := range tests {
		t.Setenv(EnvChromium, tt.env)
		got, err := Find()
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("%s=%s: %v", EnvChromium, tt.env, err)
		case tt.wantErr == "" && got != tt.env:
			t.Errorf("%s=%s: Find() = %q", EnvChromium, tt.env, got)
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("%s=%s: error %v, want one with %q", EnvChromium, tt.env, err, tt.wantErr)
		}
	}
}

// outcome records how Require ended a test, without ending this one.
type outcome struct {
	testing.TB
	skipped, failed string
}

func (o *outcome) Helper() {}
func (o *outcome) Skipf(format string, args ...any) {
	o.skipped = fmt.Sprintf(format, args...)
	runtime.Goexit()
}
func (o *outcome) Fatalf(format string, args ...any) {
	o.failed = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func requireOutcome(t *testing.T) *outcome {
	o := &outcome{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		Require(o)
	}()
	<-done
	return o
}

func TestRequireWithoutChromium(t *testing.T) {
	t.Setenv(EnvChromium, filepath.Join(t.TempDir(), "no-chromium"))

	t.Setenv("CI", "")
	o := requireOutcome(t)
	if o.skipped == "" || o.failed != "" {
		t.Errorf("outside CI: skipped %q, failed %q; want a skip", o.skipped, o.failed)
	}
	if !strings.Contains(o.skipped, "apt-get install -y chromium") {
		t.Errorf("skip message %q does not say how to install chromium", o.skipped)
	}

	t.Setenv("CI", "true")
	o = requireOutcome(t)
	if o.failed == "" || o.skipped != "" {
		t.Errorf("CI=true: skipped %q, failed %q; want a failure", o.skipped, o.failed)
	}
	if !strings.Contains(o.failed, "apt-get install -y chromium") {
		t.Errorf("failure message %q does not say how to install chromium", o.failed)
	}
}

// pageServer serves the reference page, and nothing else: its WHIP and WHEP
// requests get 404, which is handy for checking how the page shows errors.
func pageServer(t *testing.T) string {
	srv := httptest.NewServer(web.Handler())
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestPage(t *testing.T) {
	b := New(t)
	base := pageServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	p, err := b.NewPage(ctx, base+"/?room=harness&mode=watch")
	if err != nil {
		t.Fatal(err)
	}

	t.Run("eval", func(t *testing.T) {
		var title string
		if err := p.Eval(ctx, "document.title", &title); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(title, "focus") {
			t.Errorf("title %q", title)
		}
		var room string
		if err := p.Eval(ctx, "document.getElementById('watch-room').value", &room); err != nil {
			t.Fatal(err)
		}
		if room != "harness" {
			t.Errorf("the query string did not preselect the room: %q", room)
		}
		var sum int
		if err := p.Eval(ctx, "new Promise(r => setTimeout(() => r(40 + 2), 10))", &sum); err != nil {
			t.Fatal(err)
		}
		if sum != 42 {
			t.Errorf("awaited promise gave %d, want 42", sum)
		}
	})

	t.Run("room pattern", func(t *testing.T) {
		// The page checks room names as the focus does; an invalid pattern
		// would be ignored by the browser with only a console warning.
		var mismatch []bool
		err := p.Eval(ctx, `["ok-room_1.x~", "a b", "a/b"].map(v => {
			const i = document.getElementById('watch-room');
			i.value = v;
			return i.validity.patternMismatch;
		})`, &mismatch)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(mismatch, []bool{false, true, true}) {
			t.Errorf("patternMismatch for a good name, a space, a slash: %v", mismatch)
		}
	})

	t.Run("eval exception", func(t *testing.T) {
		err := p.Eval(ctx, "(() => { throw new Error('kaboom') })()", nil)
		if err == nil || !strings.Contains(err.Error(), "kaboom") {
			t.Errorf("error %v, want one that carries the exception", err)
		}
		var n int
		if err := p.Eval(ctx, "undefined", &n); err == nil {
			t.Error("undefined decoded into an int without an error")
		}
	})

	t.Run("wait", func(t *testing.T) {
		if err := p.WaitFor(ctx, "window.focusState && window.focusState.watch === 'idle'", 10*time.Second); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		err := p.WaitFor(ctx, "window.noSuchThing.field", 500*time.Millisecond)
		if err == nil || !strings.Contains(err.Error(), "noSuchThing") {
			t.Errorf("error %v, want a timeout that names the expression", err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("a 500 ms wait took %v", d)
		}
	})

	t.Run("console", func(t *testing.T) {
		if err := p.Eval(ctx, "console.log('hello from the harness test'); setTimeout(() => { throw new Error('uncaught in the harness test') }, 0)", nil); err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"log: hello from the harness test", "uncaught in the harness test"} {
			deadline := time.Now().Add(10 * time.Second)
			for !slices.ContainsFunc(p.Console(), func(l string) bool { return strings.Contains(l, want) }) {
				if time.Now().After(deadline) {
					t.Fatalf("console lacks %q:\n%s", want, strings.Join(p.Console(), "\n"))
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
	})

	t.Run("screenshot", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "sub", "page.png")
		if err := p.Screenshot(ctx, path); err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(data, []byte("\x89PNG\r\n\x1a\n")) || len(data) < 1000 {
			t.Errorf("%s is not a plausible PNG (%d bytes)", path, len(data))
		}
	})
}

// TestFakeCamera checks the flags that matter most: the fake camera works
// without a prompt, and the page shows a failed WHIP request to the person.
func TestFakeCamera(t *testing.T) {
	b := New(t)
	base := pageServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	p, err := b.NewPage(ctx, base+"/?room=nowhere&mode=publish&autostart=1")
	if err != nil {
		t.Fatal(err)
	}
	// Only the page is served, so the camera starts and the WHIP POST gets
	// 404 from the page handler.
	if err := p.WaitFor(ctx, "window.focusState.publish === 'error'", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Error  string
		Hidden bool
		Width  int
		Tracks []string
	}
	err = p.Eval(ctx, `(() => {
		const box = document.getElementById('publish-error');
		const v = document.getElementById('publish-video');
		return {
			error: box.textContent, hidden: box.hidden || box.offsetParent === null,
			width: v.videoWidth,
			tracks: v.srcObject ? v.srcObject.getTracks().map(t => t.kind) : [],
		};
	})()`, &got)
	if err != nil {
		t.Fatal(err)
	}
	if got.Hidden || !strings.Contains(got.Error, "404") || !strings.Contains(got.Error, "whip/nowhere") {
		t.Errorf("error area: hidden %v, text %q; want a visible 404 for whip/nowhere", got.Hidden, got.Error)
	}
	// Stopping the publisher on error keeps the camera, so the preview runs.
	slices.Sort(got.Tracks)
	if !slices.Equal(got.Tracks, []string{"audio", "video"}) {
		t.Errorf("camera tracks %v, want audio and video", got.Tracks)
	}
	if err := p.WaitFor(ctx, "document.getElementById('publish-video').videoWidth > 0", 10*time.Second); err != nil {
		t.Error(err)
	}
}

// A media element whose stream never gets a frame holds back the load event
// for ever; NewPage must not wait for it (a WHEP viewer of an empty room is
// such a page).
func TestNewPageWithoutLoadEvent(t *testing.T) {
	b := New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	html := `<video autoplay muted></video><script>document.querySelector('video').srcObject = new MediaStream()</script>`
	p, err := b.NewPage(ctx, "data:text/html,"+url.PathEscape(html))
	if err != nil {
		t.Fatal(err)
	}
	var state string
	if err := p.Eval(ctx, "document.readyState", &state); err != nil {
		t.Fatal(err)
	}
	t.Logf("document.readyState = %q after NewPage", state)
}

func TestCloseLeavesNoProcess(t *testing.T) {
	b := New(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := b.NewPage(ctx, "data:text/html,<title>two</title>"); err != nil {
		t.Fatal(err)
	}
	if n := len(b.procs.running(b.root)); n < 2 && runtime.GOOS == "linux" {
		t.Errorf("found %d chromium processes while the browser runs; the process search is broken", n)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if left := b.procs.remaining(b.root); len(left) > 0 {
		t.Errorf("processes %v survive Close, live or as zombies", left)
	}
	if _, err := b.NewPage(ctx, "about:blank"); err == nil {
		t.Error("NewPage on a closed browser succeeded")
	}
}
