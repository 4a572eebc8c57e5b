// Package server wires a focus together from its configuration: the HTTP
// listeners, the WebRTC engine, the SFU core and the front-ends. It owns
// start-up order, the security checks on exposure, and graceful shutdown.
package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/focus-sfu/focus/config"
	"github.com/focus-sfu/focus/focus"
	"github.com/focus-sfu/focus/focus/speaker"
	"github.com/focus-sfu/focus/livekit"
	"github.com/focus-sfu/focus/metrics"
	"github.com/focus-sfu/focus/rtc"
	"github.com/focus-sfu/focus/whip"
)

// shutdownTimeout bounds how long Run takes, once its context is cancelled,
// to end sessions and close the listeners, leaving room under the 5 s a
// supervisor waits before it kills the process.
const shutdownTimeout = 4 * time.Second

// Server is a configured focus with its ports bound.
type Server struct {
	cfg     config.Config
	log     zerolog.Logger
	engine  *rtc.Engine
	sfu     *focus.SFU
	whip    *whip.Server
	matrix  *matrixFrontend  // nil unless matrix.enabled
	livekit *livekit.Server  // nil unless livekit.enabled
	mesh    *meshFrontend    // nil unless mesh.enabled
	metrics *metrics.Metrics // nil unless admin.metrics
	main    listener
	admin   *listener // nil when the admin routes are on main
	trunk   *listener // the mutual-TLS trunk listener; nil without mesh.trunk_tls
	running atomic.Bool
}

// listener is one HTTP server with the socket it serves.
type listener struct {
	ln  net.Listener
	srv *http.Server
}

// New validates cfg, binds the HTTP listener(s) and the media UDP port, and
// builds the SFU and front-ends. Nothing is served until Run; Run must be
// called to release what New bound. Configuration problems, including the
// refusal to run open on a non-loopback address, are *config.Error.
func New(ctx context.Context, cfg config.Config, log zerolog.Logger) (_ *Server, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := checkExposure(cfg, log); err != nil {
		return nil, err
	}

	s := &Server{cfg: cfg, log: log}
	// On failure, release whatever was already made.
	defer func() {
		if err != nil {
			s.closeAll(context.Background())
		}
	}()

	var lc net.ListenConfig
	mainLn, err := lc.Listen(ctx, "tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("server: listen %s: %w", cfg.Listen, err)
	}
	s.main.ln = mainLn
	if cfg.Admin.Listen != "" {
		adminLn, err := lc.Listen(ctx, "tcp", cfg.Admin.Listen)
		if err != nil {
			return nil, fmt.Errorf("server: listen %s (admin.listen): %w", cfg.Admin.Listen, err)
		}
		s.admin = &listener{ln: adminLn}
	}

	s.engine, err = rtc.New(engineConfig(cfg, mainLn.Addr()), log.With().Str("component", "rtc").Logger())
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	s.sfu = focus.New(focus.Options{
		Log:                          log.With().Str("component", "focus").Logger(),
		MaxParticipantsPerConference: cfg.Limits.SessionsPerRoom,
		MaxParticipants:              cfg.Limits.SessionsTotal,
		PacketCache:                  cfg.Media.PacketCache,
		Speakers:                     speaker.Options{Threshold: speaker.Linear(float64(cfg.Media.SpeakerThresholdDBov))},
		MaxAudioForwarded:            cfg.Media.MaxAudioForwarded,
		KeepUnwatched:                keepUnwatched(cfg.Media.KeepUnwatched),
	})
	s.metrics = newMetrics(s)
	s.whip, err = whip.New(whip.Options{
		Engine:      s.engine,
		SFU:         s.sfu,
		Tokens:      whipTokens(cfg.WHIP.Tokens),
		AdminToken:  cfg.Admin.Token,
		ICEServers:  iceServers(cfg.WebRTC.ICEServers),
		CORSOrigins: cfg.CORS.AllowedOrigins,
		Limits: whip.Limits{
			PerRoom: cfg.Limits.SessionsPerRoom,
			PerIP:   cfg.Limits.SessionsPerIP,
			Total:   cfg.Limits.SessionsTotal,
		},
		Log: log.With().Str("component", "whip").Logger(),
	})
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}

	if cfg.Matrix.Enabled {
		if s.matrix, err = newMatrix(ctx, cfg, log, s.engine, s.sfu, s.instrument); err != nil {
			return nil, err
		}
	}
	if cfg.LiveKit.Enabled {
		if s.livekit, err = newLiveKit(cfg, mainLn.Addr().String(), log, s.engine, s.sfu, s.place); err != nil {
			return nil, fmt.Errorf("server: %w", err)
		}
	}
	if err := shareRooms(s.sfu, cfg.SharedRooms, cfg.LiveKit.Enabled, log); err != nil {
		return nil, err
	}
	if cfg.Mesh.Enabled {
		if s.mesh, err = newMesh(cfg, mainLn.Addr(), log, s.engine, s.sfu); err != nil {
			return nil, err
		}
	}

	httpLog := log.With().Str("component", "http").Logger()
	s.main.srv = newHTTPServer(s.mainRoutes(), httpLog)
	if s.admin != nil {
		s.admin.srv = newHTTPServer(s.adminRoutes(), httpLog.With().Bool("admin", true).Logger())
	}
	if s.mesh != nil && s.mesh.tls != nil {
		s.trunk = &listener{ln: s.mesh.tls.ln, srv: newHTTPServer(s.trunkRoutes(), httpLog.With().Bool("trunk", true).Logger())}
	}
	return s, nil
}

// engineConfig is the WebRTC engine's configuration: the media port and
// how it is advertised.
func engineConfig(cfg config.Config, mainAddr net.Addr) rtc.Config {
	return rtc.Config{
		BindAddress:     udpBindAddress(cfg, mainAddr),
		UDPPort:         cfg.WebRTC.UDPPort,
		PublicIPs:       cfg.WebRTC.PublicIPs,
		ICELite:         cfg.WebRTC.ICELite,
		IncludeLoopback: cfg.WebRTC.IncludeLoopback,
	}
}

// Addr is the main HTTP listener's address.
func (s *Server) Addr() net.Addr { return s.main.ln.Addr() }

// AdminAddr is the admin listener's address, nil when the admin routes are
// served on the main listener.
func (s *Server) AdminAddr() net.Addr {
	if s.admin == nil {
		return nil
	}
	return s.admin.ln.Addr()
}

// UDPAddr is the media UDP address.
func (s *Server) UDPAddr() net.Addr { return s.engine.UDPAddr() }

// Run serves until ctx is cancelled or a listener fails, then shuts down:
// it ends every session, stops the HTTP servers and closes the media port,
// all within a few seconds. It returns nil after a clean shutdown on ctx.
func (s *Server) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("server: Run called twice")
	}
	s.logReady()
	if s.matrix != nil {
		s.matrix.start()
	}
	if s.mesh != nil {
		s.mesh.start()
	}

	listeners := []*listener{&s.main}
	for _, l := range []*listener{s.admin, s.trunk} {
		if l != nil {
			listeners = append(listeners, l)
		}
	}
	errc := make(chan error, len(listeners))
	for _, l := range listeners {
		go func() {
			err := l.srv.Serve(l.ln)
			if errors.Is(err, http.ErrServerClosed) {
				err = nil
			} else if err != nil {
				err = fmt.Errorf("server: serve %s: %w", l.ln.Addr(), err)
			}
			errc <- err
		}()
	}

	var runErr error
	pending := len(listeners)
	select {
	case <-ctx.Done():
		s.log.Info().Msg("shutting down")
	case runErr = <-errc:
		pending--
		s.log.Error().Err(runErr).Msg("listener failed; shutting down")
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	closeErr := s.closeAll(sctx)
	for ; pending > 0; pending-- {
		if err := <-errc; err != nil && runErr == nil {
			runErr = err
		}
	}
	if closeErr != nil {
		s.log.Warn().Err(closeErr).Msg("shutdown was not clean")
	} else {
		s.log.Info().Msg("stopped")
	}
	return errors.Join(runErr, closeErr)
}

// closeAll releases everything New made, in dependency order: sessions first
// (so clients are told), then the HTTP servers, then the core and the media
// port. It tolerates a partly built Server.
func (s *Server) closeAll(ctx context.Context) error {
	var errs []error
	// Trunks first: their proxies leave while the front-ends can still
	// tell clients.
	if s.mesh != nil {
		if err := s.mesh.close(); err != nil {
			errs = append(errs, fmt.Errorf("server: close mesh: %w", err))
		}
	}
	if s.matrix != nil {
		if err := s.matrix.close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("server: close matrix: %w", err))
		}
	}
	if s.livekit != nil {
		if err := s.livekit.Close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("server: close livekit: %w", err))
		}
	}
	if s.whip != nil {
		if err := s.whip.Close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("server: close whip: %w", err))
		}
	}
	for _, l := range []*listener{&s.main, s.admin, s.trunk} {
		if l == nil || l.ln == nil {
			continue
		}
		if l.srv == nil {
			_ = l.ln.Close()
			continue
		}
		if err := l.srv.Shutdown(ctx); err != nil {
			// Out of time: drop the connections still open.
			_ = l.srv.Close()
			errs = append(errs, fmt.Errorf("server: shut down http %s: %w", l.ln.Addr(), err))
		}
	}
	if s.sfu != nil {
		s.sfu.Close()
	}
	if s.engine != nil {
		if err := s.engine.Close(); err != nil {
			errs = append(errs, fmt.Errorf("server: close rtc: %w", err))
		}
	}
	return errors.Join(errs...)
}

// logReady says where to point a browser and a WHIP client.
func (s *Server) logReady() {
	ev := s.log.Info().
		Str("url", browserURL(s.Addr())).
		Str("http", s.Addr().String()).
		Str("udp", s.UDPAddr().String()).
		Str("mode", s.mode())
	if s.admin != nil {
		ev = ev.Str("admin", s.AdminAddr().String())
	}
	if n := len(s.cfg.WHIP.Tokens); n > 0 {
		ev = ev.Int("tokens", n)
	}
	ev.Msg("focus is ready; open the url in a browser")
}

// mode names how WHIP/WHEP access is controlled.
func (s *Server) mode() string {
	switch {
	case len(s.cfg.WHIP.Tokens) > 0:
		return "tokens"
	case isLoopback(s.cfg.Listen):
		return "open"
	default:
		return "insecure-open"
	}
}

// browserURL is the page to open for a listener address. An unspecified
// address (all interfaces) is reachable as localhost from this host.
func browserURL(a net.Addr) string {
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return "http://" + a.String() + "/"
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "localhost"
	}
	return "http://" + net.JoinHostPort(host, port) + "/"
}

// udpBindAddress is webrtc.bind_address, or else the IP the main listener is
// bound to ("" for all interfaces).
func udpBindAddress(cfg config.Config, httpAddr net.Addr) string {
	if cfg.WebRTC.BindAddress != "" {
		return cfg.WebRTC.BindAddress
	}
	tcp, ok := httpAddr.(*net.TCPAddr)
	if !ok || tcp.IP == nil || tcp.IP.IsUnspecified() {
		return ""
	}
	return tcp.IP.String()
}

func whipTokens(ts []config.Token) []whip.Token {
	out := make([]whip.Token, 0, len(ts))
	for _, t := range ts {
		out = append(out, whip.Token{Token: t.Token, Rooms: t.Rooms, Publish: t.Publish, View: t.View})
	}
	return out
}

func iceServers(ss []config.ICEServer) []rtc.ICEServer {
	out := make([]rtc.ICEServer, 0, len(ss))
	for _, s := range ss {
		out = append(out, rtc.ICEServer{URLs: s.URLs, Username: s.Username, Credential: s.Credential})
	}
	return out
}

// keepUnwatched is the core's hook for media.keep_unwatched.
func keepUnwatched(keep bool) func(*focus.UpTrack) bool {
	if !keep {
		return nil
	}
	return func(*focus.UpTrack) bool { return true }
}
