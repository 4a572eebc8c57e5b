package whip

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/focus-sfu/focus/focus"
	"github.com/focus-sfu/focus/rtc"
)

func FuzzParseSDPFrag(f *testing.F) {
	f.Add("a=ice-ufrag:x\r\na=ice-pwd:y\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\na=candidate:1 1 udp 1 127.0.0.1 1 typ host\r\na=end-of-candidates\r\n")
	f.Add("a=candidate:")
	f.Add("\n\n=\r\nx")
	f.Fuzz(func(t *testing.T, s string) {
		frag, err := parseSDPFrag(s)
		if err == nil && len(frag.candidates) > maxFragCandidates {
			t.Fatal("candidate bound not enforced")
		}
	})
}

func FuzzValidRoom(f *testing.F) {
	for _, s := range []string{"demo", "", "a/b", "é", strings.Repeat("x", 200)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if validRoom(s) == nil && (len(s) == 0 || len(s) > maxRoomLen || strings.ContainsAny(s, "/?#% \x00")) {
			t.Fatalf("accepted %q", s)
		}
	})
}

// FuzzOfferHandler posts arbitrary bodies to WHIP and WHEP: every one
// gets a 4xx or a 201, never a 5xx or a panic.
func FuzzOfferHandler(f *testing.F) {
	f.Add("whip", noMediaSDP)
	f.Add("whep", "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 VP8/90000\r\na=recvonly\r\n")
	f.Add("whip", "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\na=sendonly\r\n")
	f.Add("whip", "garbage")
	engine, err := rtc.New(rtc.Config{BindAddress: "127.0.0.1"}, zerolog.Nop())
	if err != nil {
		f.Fatal(err)
	}
	defer engine.Close()
	sfu := focus.New(focus.Options{})
	srv, err := New(Options{Engine: engine, SFU: sfu, Log: zerolog.Nop()})
	if err != nil {
		f.Fatal(err)
	}
	h := srv.Handler()
	f.Fuzz(func(t *testing.T, kind, sdp string) {
		if kind != "whep" {
			kind = "whip"
		}
		req := httptest.NewRequest("POST", "/"+kind+"/fuzz", strings.NewReader(sdp))
		req.Header.Set("Content-Type", "application/sdp")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code >= 500 || w.Code < 200 || w.Code >= 300 && w.Code < 400 {
			t.Fatalf("status %d for %q: %s", w.Code, sdp, w.Body.String())
		}
		if w.Code == http.StatusCreated {
			loc := w.Header().Get("Location")
			del := httptest.NewRequest("DELETE", loc, nil)
			h.ServeHTTP(httptest.NewRecorder(), del)
		}
	})
}
