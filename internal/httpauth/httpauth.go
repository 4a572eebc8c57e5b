// Package httpauth reads bearer tokens and guards the admin routes
// (/api/rooms, /api/mesh, /metrics, /debug/pprof) with the admin token, so
// that every front-end and the server check it alike.
package httpauth

import (
	"crypto/subtle"
	"net/http"
	"strings"
)

// Bearer returns the token of r's "Authorization: Bearer <token>" header
// (the scheme in any case), and whether there is a non-empty one.
func Bearer(r *http.Request) (string, bool) {
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

// Admitted reports whether r carries token as its bearer token, compared
// in constant time. An empty token admits every request.
func Admitted(r *http.Request, token string) bool {
	if token == "" {
		return true
	}
	got, _ := Bearer(r)
	return subtle.ConstantTimeCompare([]byte(got), []byte(token)) == 1
}

// Refuse answers a request without the admin token: 401, with the realm
// to authenticate in.
func Refuse(w http.ResponseWriter) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="focus-admin"`)
	http.Error(w, "admin token required", http.StatusUnauthorized)
}

// AdminOnly serves h only to requests that carry token (see Admitted).
func AdminOnly(token string, h http.Handler) http.Handler {
	if token == "" {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !Admitted(r, token) {
			Refuse(w)
			return
		}
		h.ServeHTTP(w, r)
	})
}
