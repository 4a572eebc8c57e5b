package server

import (
	"net/http"
	"net/http/pprof"

	"github.com/focus-sfu/focus/config"
	"github.com/focus-sfu/focus/internal/httpauth"
	"github.com/focus-sfu/focus/metrics"
)

// Route names, the values of the route label of the HTTP metrics: a
// fixed set, so that neither room names nor session IDs become labels.
const (
	routePage             = "page"
	routeWHIP             = "whip"
	routeWHIPSession      = "whip_session"
	routeWHEP             = "whep"
	routeWHEPSession      = "whep_session"
	routeHealthz          = "healthz"
	routeRooms            = "api_rooms"
	routeMetrics          = "metrics"
	routePProf            = "pprof"
	routeLiveKitRTC       = "livekit_rtc"
	routeLiveKitSFUGet    = "livekit_sfu_get"
	routeLiveKitGetToken  = "livekit_get_token"
	routeMatrixAppService = "matrix_appservice"
	routeCascade          = "cascade"
	routeMesh             = "api_mesh"
)

// newMetrics is the registry of admin.metrics, or nil when it is off.
// The Matrix and cascade counts are read from s.matrix and s.mesh, made
// later in New, at each scrape.
func newMetrics(s *Server) *metrics.Metrics {
	if !s.cfg.Admin.Metrics {
		return nil
	}
	opts := metrics.Options{SFU: s.sfu, Socket: func() metrics.Socket {
		st := s.engine.SocketStats()
		return metrics.Socket{
			Batches: st.Batches, Datagrams: st.Datagrams, Dropped: st.Dropped,
			RTCPTaken: st.RTCPTaken, RTCPReplays: st.RTCPReplays,
		}
	}}
	if s.cfg.Matrix.Enabled {
		opts.ToDevice = s.toDeviceCounts
	}
	if s.cfg.Mesh.Enabled {
		opts.Cascade = func() metrics.Cascade {
			if s.mesh == nil {
				return metrics.Cascade{}
			}
			return s.mesh.cascadeCounts()
		}
	}
	return metrics.New(opts)
}

// toDeviceCounts sums what the Matrix front-end's two halves counted.
func (s *Server) toDeviceCounts() metrics.ToDevice {
	if s.matrix == nil {
		return metrics.ToDevice{}
	}
	t := s.matrix.focus.ToDeviceStats().Add(s.matrix.transport.ToDeviceStats())
	return metrics.ToDevice{Handled: t.Handled, Failed: t.Failed, Ignored: t.Ignored, Sent: t.Sent, SendFailed: t.SendFailed}
}

// instrument counts and times h's requests under route, when metrics
// are on.
func (s *Server) instrument(route string, h http.Handler) http.Handler {
	if s.metrics == nil {
		return h
	}
	return s.metrics.Instrument(route, h)
}

// handle mounts h on mux at pattern, instrumented as route.
func (s *Server) handle(mux *http.ServeMux, pattern, route string, h http.Handler) {
	mux.Handle(pattern, s.instrument(route, h))
}

// mountAdmin adds the admin routes to mux: /api/rooms, and /metrics and
// /debug/pprof/ when they are enabled. Each requires admin.token when
// one is set.
func (s *Server) mountAdmin(mux *http.ServeMux) {
	s.handle(mux, "/api/rooms", routeRooms, s.whip.StatusHandler())
	tok := s.cfg.Admin.Token
	if s.mesh != nil {
		s.handle(mux, "/api/mesh", routeMesh, httpauth.AdminOnly(tok, s.mesh.statusHandler()))
	}
	if s.metrics != nil {
		s.handle(mux, "/metrics", routeMetrics, httpauth.AdminOnly(tok, s.metrics.Handler()))
	}
	if s.cfg.Admin.PProf {
		for pattern, h := range map[string]http.HandlerFunc{
			"/debug/pprof/":        pprof.Index, // and the named profiles under it
			"/debug/pprof/cmdline": pprof.Cmdline,
			"/debug/pprof/profile": pprof.Profile,
			"/debug/pprof/symbol":  pprof.Symbol,
			"/debug/pprof/trace":   pprof.Trace,
		} {
			s.handle(mux, pattern, routePProf, httpauth.AdminOnly(tok, h))
		}
	}
}

// adminListen is where the admin routes are served.
func adminListen(cfg config.Config) string {
	if cfg.Admin.Listen != "" {
		return cfg.Admin.Listen
	}
	return cfg.Listen
}
