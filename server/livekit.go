package server

import (
	"net/http"
	"time"

	"github.com/rs/zerolog"

	"github.com/focus-sfu/focus/config"
	"github.com/focus-sfu/focus/focus"
	"github.com/focus-sfu/focus/livekit"
	"github.com/focus-sfu/focus/rtc"
)

// newLiveKit builds the Element Call front-end: LiveKit signalling and
// the token service, served on the main listener.
// place chooses the focus that takes a room (see TokenConfig.Place).
func newLiveKit(cfg config.Config, listenAddr string, log zerolog.Logger, engine *rtc.Engine, sfu *focus.SFU, place func(room string) string) (*livekit.Server, error) {
	lk := cfg.LiveKit
	return livekit.New(livekit.Options{
		SFU:        sfu,
		Engine:     engine,
		APIKey:     lk.APIKey,
		APISecret:  lk.APISecret,
		ICEServers: iceServers(cfg.WebRTC.ICEServers),
		// Only users of full_access_homeservers (whose tokens carry
		// roomCreate) start a room; the others join running ones.
		RequireRoomCreate: true,
		Token: livekit.TokenConfig{
			APIKey:      lk.APIKey,
			APISecret:   lk.APISecret,
			URL:         lk.URLOrDefault(listenAddr),
			TTL:         lk.TokenTTL,
			Homeservers: lk.Homeservers,
			FullAccess:  lk.FullAccessHomeservers,
			CORSOrigins: cfg.CORS.AllowedOrigins,
			Place:       place,
		},
		Log: log.With().Str("component", "livekit").Logger(),
	})
}

// mountLiveKit adds the Element Call routes to mux. The signalling
// websocket lives for the whole call, so the listener's read and write
// deadlines, meant for plain requests, are lifted for it.
func (s *Server) mountLiveKit(mux *http.ServeMux) {
	h := s.livekit.Handler()
	long := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		_ = rc.SetReadDeadline(time.Time{})
		_ = rc.SetWriteDeadline(time.Time{})
		h.ServeHTTP(w, r)
	})
	s.handle(mux, "/rtc", routeLiveKitRTC, long)
	s.handle(mux, "/rtc/", routeLiveKitRTC, long)
	s.handle(mux, "/sfu/get", routeLiveKitSFUGet, h)
	s.handle(mux, "/get_token", routeLiveKitGetToken, h)
}
