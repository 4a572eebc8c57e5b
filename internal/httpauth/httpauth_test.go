package httpauth

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestBearer(t *testing.T) {
	for _, c := range []struct {
		header, want string
		ok           bool
	}{
		{"Bearer abc", "abc", true},
		{"bearer  abc ", "abc", true},
		{"Basic abc", "", false},
		{"Bearer", "", false},
		{"Bearer   ", "", false},
		{"", "", false},
	} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		if c.header != "" {
			r.Header.Set("Authorization", c.header)
		}
		if got, ok := Bearer(r); got != c.want || ok != c.ok {
			t.Errorf("Authorization %q: %q %v, want %q %v", c.header, got, ok, c.want, c.ok)
		}
	}
}

// TestAdminOnly: with a token, a request without it or with another gets
// 401 and the realm, and the handler never runs; with the token it runs.
// Without a token everyone is admitted.
func TestAdminOnly(t *testing.T) {
	ran := 0
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { ran++ })
	for _, c := range []struct {
		token, header string
		code          int
	}{
		{"secret", "", http.StatusUnauthorized},
		{"secret", "Bearer other", http.StatusUnauthorized},
		{"secret", "Bearer secretx", http.StatusUnauthorized},
		{"secret", "Bearer secret", http.StatusOK},
		{"", "", http.StatusOK},
	} {
		before := ran
		r := httptest.NewRequest(http.MethodGet, "/metrics", nil)
		if c.header != "" {
			r.Header.Set("Authorization", c.header)
		}
		w := httptest.NewRecorder()
		AdminOnly(c.token, h).ServeHTTP(w, r)
		if w.Code != c.code {
			t.Errorf("token %q, Authorization %q: %d, want %d", c.token, c.header, w.Code, c.code)
		}
		if ran := ran > before; ran != (c.code == http.StatusOK) {
			t.Errorf("token %q, Authorization %q: handler ran %v", c.token, c.header, ran)
		}
		if c.code == http.StatusUnauthorized && w.Header().Get("WWW-Authenticate") != `Bearer realm="focus-admin"` {
			t.Errorf("token %q, Authorization %q: WWW-Authenticate %q", c.token, c.header, w.Header().Get("WWW-Authenticate"))
		}
	}
}
