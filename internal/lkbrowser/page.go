package lkbrowser

import (
	"embed"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
)

//go:embed page
var pageFiles embed.FS

// Handler serves the test page at / (index.html and app.js) and the
// livekit-client bundle at /livekit-client.umd.js, read from bundlePath.
// Nothing is cached by the browser, so a rerun always loads these files.
func Handler(bundlePath string) http.Handler {
	sub, err := fs.Sub(pageFiles, "page")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	mux := http.NewServeMux()
	mux.Handle("GET /", http.FileServerFS(sub))
	mux.HandleFunc("GET /"+Bundle, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
		http.ServeFile(w, r, bundlePath)
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		mux.ServeHTTP(w, r)
	})
}

// Server serves the page for one test.
type Server struct {
	// URL is the page server's base URL, http://127.0.0.1:PORT.
	URL string
}

// Start fetches livekit-client if needed (or skips or fails the test as
// Require does) and serves the page on loopback until the test ends.
// http://127.0.0.1 is a secure context, so the page may use the camera.
func Start(tb testing.TB) *Server {
	tb.Helper()
	bundle := Require(tb)
	hs := httptest.NewServer(Handler(bundle))
	tb.Cleanup(hs.Close)
	return &Server{URL: hs.URL}
}

// PageURL is the address of a page that joins the room of token on the
// LiveKit server at wsURL (ws://host:port, as /sfu/get returns it). extra
// adds the page's options (adaptive, dynacast, simulcast: "0" turns one
// off; log: livekit-client's log level).
func (s *Server) PageURL(wsURL, token string, extra url.Values) string {
	q := url.Values{"url": {wsURL}, "token": {token}}
	for k, v := range extra {
		q[k] = v
	}
	return s.URL + "/?" + q.Encode()
}
