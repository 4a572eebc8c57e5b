package web

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func get(t *testing.T, h http.Handler, method, target string, hdr map[string]string) *http.Response {
	t.Helper()
	req := httptest.NewRequest(method, target, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Result()
}

func TestHandlerServesFiles(t *testing.T) {
	h := Handler()
	tests := []struct {
		path        string
		contentType string
		contains    string
	}{
		{"/", "text/html; charset=utf-8", `<script src="app.js" defer></script>`},
		{"/?room=abc&mode=watch&autostart=1", "text/html; charset=utf-8", `id="watch-error"`},
		{"/index.html", "text/html; charset=utf-8", `<title>focus`},
		{"/app.js", "text/javascript; charset=utf-8", "window.focusStats"},
		{"/style.css", "text/css; charset=utf-8", ".panel"},
		// Simulcast publishing and the viewer's size cap (their behaviour is
		// tested in a browser by e2e/browser_simulcast_test.go).
		{"/?simulcast=1", "text/html; charset=utf-8", `id="publish-simulcast"`},
		{"/?width=320&height=180", "text/html; charset=utf-8", `id="watch-size"`},
		{"/app.js?simulcast", "text/javascript; charset=utf-8", "scaleResolutionDownBy"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			res := get(t, h, http.MethodGet, tt.path, nil)
			body, _ := io.ReadAll(res.Body)
			if res.StatusCode != http.StatusOK {
				t.Fatalf("status %d, want 200", res.StatusCode)
			}
			if got := res.Header.Get("Content-Type"); got != tt.contentType {
				t.Errorf("Content-Type %q, want %q", got, tt.contentType)
			}
			if got := res.Header.Get("Cache-Control"); got != "no-cache" {
				t.Errorf("Cache-Control %q, want no-cache", got)
			}
			if got := res.Header.Get("X-Content-Type-Options"); got != "nosniff" {
				t.Errorf("X-Content-Type-Options %q, want nosniff", got)
			}
			if !strings.Contains(string(body), tt.contains) {
				t.Errorf("body does not contain %q", tt.contains)
			}
		})
	}
}

func TestHandlerNotFound(t *testing.T) {
	h := Handler()
	for _, p := range []string{"/nope", "/app.js/x", "/static/app.js", "/whip/demo", "/favicon.ico", "/index.htm"} {
		res := get(t, h, http.MethodGet, p, nil)
		if res.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: status %d, want 404", p, res.StatusCode)
		}
	}
}

func TestHandlerMethods(t *testing.T) {
	h := Handler()
	res := get(t, h, http.MethodHead, "/", nil)
	if res.StatusCode != http.StatusOK {
		t.Errorf("HEAD /: status %d, want 200", res.StatusCode)
	}
	res = get(t, h, http.MethodPost, "/", nil)
	if res.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /: status %d, want 405", res.StatusCode)
	}
	if got := res.Header.Get("Allow"); got != "GET, HEAD" {
		t.Errorf("POST /: Allow %q, want %q", got, "GET, HEAD")
	}
}

func TestHandlerSecurityHeaders(t *testing.T) {
	h := Handler()
	res := get(t, h, http.MethodGet, "/", nil)
	csp := res.Header.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "script-src 'self'", "connect-src 'self'", "frame-ancestors 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	if strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") {
		t.Errorf("CSP %q allows inline or eval", csp)
	}
}

// The page must work under its own CSP: no inline script or style, and
// nothing from another origin.
func TestPageIsSelfContained(t *testing.T) {
	h := Handler()
	for _, p := range []string{"/", "/app.js", "/style.css"} {
		res := get(t, h, http.MethodGet, p, nil)
		body, _ := io.ReadAll(res.Body)
		s := string(body)
		for _, bad := range []string{"http://", "https://", "//cdn", "@import"} {
			if strings.Contains(s, bad) {
				t.Errorf("%s contains %q: the page must load nothing from elsewhere", p, bad)
			}
		}
		if p == "/" {
			for _, bad := range []string{"<style", " style=", " onclick=", " onload=", "<script>"} {
				if strings.Contains(s, bad) {
					t.Errorf("index.html contains %q, which the CSP blocks", bad)
				}
			}
		}
	}
}

func TestHandlerRevalidates(t *testing.T) {
	h := Handler()
	res := get(t, h, http.MethodGet, "/app.js", nil)
	etag := res.Header.Get("ETag")
	if etag == "" {
		t.Fatal("no ETag")
	}
	res = get(t, h, http.MethodGet, "/app.js", map[string]string{"If-None-Match": etag})
	if res.StatusCode != http.StatusNotModified {
		t.Errorf("If-None-Match: status %d, want 304", res.StatusCode)
	}
}
