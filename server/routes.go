package server

import (
	"io"
	stdlog "log"
	"net/http"
	"time"

	"github.com/rs/zerolog"

	"github.com/focus-sfu/focus/web"
)

// maxBody caps every request body. The largest legitimate body is an SDP
// offer with many candidates, a few KiB.
const maxBody = 64 << 10

// mainRoutes serves the page, the WHIP/WHEP front-end, /healthz and, when
// there is no admin listener, the admin routes.
func (s *Server) mainRoutes() http.Handler {
	mux := http.NewServeMux()
	s.handle(mux, "/", routePage, web.Handler())
	// The WHIP/WHEP handler routes by itself; the patterns here only name
	// the route: a room's endpoint, or one of its sessions.
	wh := s.whip.Handler()
	s.handle(mux, "/whip/", routeWHIP, wh)
	s.handle(mux, "/whip/{room}/{id}", routeWHIPSession, wh)
	s.handle(mux, "/whep/", routeWHEP, wh)
	s.handle(mux, "/whep/{room}/{id}", routeWHEPSession, wh)
	s.handle(mux, "/healthz", routeHealthz, http.HandlerFunc(healthz))
	if s.admin == nil {
		s.mountAdmin(mux)
	}
	if s.livekit != nil {
		s.mountLiveKit(mux)
	}
	if s.mesh != nil && s.mesh.tls == nil {
		// Trunk requests are signed by the other foci (cascade/).
		s.handle(mux, "/cascade/v1/", routeCascade, s.mesh.cascade.Handler())
	}
	return mux
}

// trunkRoutes serves the mutual-TLS trunk listener: the trunk endpoint
// alone.
func (s *Server) trunkRoutes() http.Handler {
	mux := http.NewServeMux()
	s.handle(mux, "/cascade/v1/", routeCascade, s.mesh.cascade.Handler())
	return mux
}

// adminRoutes serves the admin listener: the admin routes and /healthz.
func (s *Server) adminRoutes() http.Handler {
	mux := http.NewServeMux()
	s.mountAdmin(mux)
	s.handle(mux, "/healthz", routeHealthz, http.HandlerFunc(healthz))
	return mux
}

func healthz(w http.ResponseWriter, r *http.Request) {
	if !readOnly(w, r, "text/plain; charset=utf-8") {
		return
	}
	_, _ = io.WriteString(w, "ok\n")
}

// readOnly answers anything but GET and HEAD with 405, and otherwise
// sets the response's content type and forbids caching: what the
// server's status routes share. It reports whether to go on.
func readOnly(w http.ResponseWriter, r *http.Request, contentType string) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return false
	}
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Cache-Control", "no-store")
	return true
}

// limitBody caps request bodies at maxBody, refusing a declared larger body
// up front and cutting off an undeclared one when it is read.
func limitBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > maxBody {
			http.Error(w, "request body too large", http.StatusRequestEntityTooLarge)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		next.ServeHTTP(w, r)
	})
}

// newHTTPServer applies the limits every listener shares. WriteTimeout must
// outlast the slowest WHIP answer (ICE gathering on a loaded host).
func newHTTPServer(h http.Handler, log zerolog.Logger) *http.Server {
	return &http.Server{
		Handler:           limitBody(h),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          stdlog.New(log, "", 0),
	}
}
