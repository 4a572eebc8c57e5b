package whip

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/focus-sfu/focus/focus"
)

func TestViewSize(t *testing.T) {
	cases := []struct {
		query  string
		want   focus.Size
		reason string // non-empty: a 400 whose body contains it
	}{
		{"", focus.Size{}, ""},
		{"stream=abc", focus.Size{}, ""},
		{"width=320&height=180", focus.Size{Width: 320, Height: 180}, ""},
		{"width=640", focus.Size{Width: 640}, ""},
		{"height=360", focus.Size{Height: 360}, ""},
		{"width=0&height=0", focus.Size{}, ""},
		{"width=16384&height=16384", focus.Size{Width: 16384, Height: 16384}, ""},
		{"width=007", focus.Size{Width: 7}, ""},
		{"width=16385", focus.Size{}, `width="16385" is not a whole number of pixels from 0 to 16384`},
		{"height=-1", focus.Size{}, `height="-1"`},
		{"width=%2B5", focus.Size{}, `width="+5"`},
		{"width=", focus.Size{}, `width=""`},
		{"width=1.5", focus.Size{}, `width="1.5"`},
		{"width=0x10", focus.Size{}, `width="0x10"`},
		{"width=abc&height=180", focus.Size{}, `width="abc"`},
		{"width=320&height=big", focus.Size{}, `height="big"`},
		{"width=99999999999999999999", focus.Size{}, "from 0 to 16384"},
		{"width=320&width=640", focus.Size{}, "width is given 2 times"},
	}
	for _, c := range cases {
		t.Run(c.query, func(t *testing.T) {
			q, err := url.ParseQuery(c.query)
			if err != nil {
				t.Fatal(err)
			}
			got, e := viewSize(q)
			if c.reason == "" {
				if e != nil {
					t.Fatalf("rejected: %v", e)
				}
				if got != c.want {
					t.Fatalf("got %+v, want %+v", got, c.want)
				}
				return
			}
			if e == nil {
				t.Fatalf("accepted as %+v, want a 400 saying %q", got, c.reason)
			}
			if e.status != http.StatusBadRequest || !strings.Contains(e.reason, c.reason) {
				t.Fatalf("got %d %q, want 400 with %q", e.status, e.reason, c.reason)
			}
		})
	}
}

func FuzzViewSize(f *testing.F) {
	for _, s := range []string{"width=320&height=180", "width=-1", "height=16385", "width=1&width=2", "width=%00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, query string) {
		q, err := url.ParseQuery(query)
		if err != nil {
			return
		}
		size, e := viewSize(q)
		if e != nil {
			if e.status != http.StatusBadRequest {
				t.Fatalf("status %d", e.status)
			}
			return
		}
		if size.Width > maxViewSize || size.Height > maxViewSize {
			t.Fatalf("accepted %+v", size)
		}
	})
}

// TestViewerSizeOverHTTP: a bad size is refused with 400 before the
// viewer waits for anything; a good one makes a session as usual. That
// the cap picks the layer is shown end to end by
// e2e/browser_simulcast_test.go.
func TestViewerSizeOverHTTP(t *testing.T) {
	e := newEnv(t, nil)
	publishRoom(t, e)

	for _, c := range []struct{ query, reason string }{
		{"width=-320&height=180", `width="-320"`},
		{"width=320&height=20000", `height="20000"`},
		{"width=320&width=320", "width is given 2 times"},
	} {
		r := e.do("POST", "/whep/room?"+c.query, "application/sdp", newClient(t, false).offer, nil)
		if b := body(t, r); r.StatusCode != http.StatusBadRequest || !strings.Contains(b, c.reason) {
			t.Errorf("?%s: got %d %q, want 400 with %q", c.query, r.StatusCode, b, c.reason)
		}
	}
	// Refusing a size must not even wait for sources in an empty room.
	start := time.Now()
	r := e.do("POST", "/whep/nobody?width=x", "application/sdp", newClient(t, false).offer, nil)
	if b := body(t, r); r.StatusCode != http.StatusBadRequest || time.Since(start) > 2*time.Second {
		t.Errorf("bad size in an empty room: %d %q after %v", r.StatusCode, b, time.Since(start))
	}

	v := newClient(t, false)
	v.accept(t, e.do("POST", "/whep/room?width=320&height=180", "application/sdp", v.offer, nil))
	waitConnected(t, v.pc)
	if rs := rooms(t, e); len(rs) != 1 || rs[0].Viewers != 1 {
		t.Fatalf("rooms %+v", rs)
	}
}
