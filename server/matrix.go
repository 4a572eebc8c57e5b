package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"

	"github.com/rs/zerolog"

	"github.com/focus-sfu/focus/config"
	"github.com/focus-sfu/focus/focus"
	"github.com/focus-sfu/focus/matrix"
	"github.com/focus-sfu/focus/rtc"
)

// matrixFrontend is the MSC3898 front-end with its homeserver transport
// and the listener the homeserver pushes transactions to.
type matrixFrontend struct {
	transport *matrix.Transport
	olm       *matrix.Olm
	focus     *matrix.Focus
	ln        net.Listener
	srv       *http.Server
	log       zerolog.Logger

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// newMatrix builds the front-end; instrument wraps the appservice API
// for the HTTP metrics.
func newMatrix(ctx context.Context, cfg config.Config, log zerolog.Logger, engine *rtc.Engine, sfu *focus.SFU,
	instrument func(route string, h http.Handler) http.Handler) (*matrixFrontend, error) {
	mcfg, err := matrix.NewConfig(cfg.Matrix)
	if err != nil {
		return nil, err
	}
	log = log.With().Str("component", "matrix").Logger()
	olm, err := matrix.NewOlm(mcfg, log)
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	mcfg.Crypto = olm
	t, err := matrix.NewTransport(mcfg, log)
	if err != nil {
		_ = olm.Close()
		return nil, fmt.Errorf("server: %w", err)
	}
	olm.Attach(t)
	f, err := matrix.New(matrix.Options{
		SFU:                          sfu,
		Engine:                       engine,
		Sender:                       t,
		Memberships:                  matrix.NewMemberships(nil),
		Policy:                       mcfg.Policy,
		MaxParticipantsPerConference: mcfg.MaxParticipantsPerConference,
		MaxConferences:               mcfg.MaxConferences,
		Log:                          log,
	})
	if err != nil {
		_ = t.Close()
		_ = olm.Close()
		return nil, fmt.Errorf("server: %w", err)
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", cfg.Matrix.AppServiceListen)
	if err != nil {
		_ = t.Close()
		_ = olm.Close()
		return nil, fmt.Errorf("server: listen %s (matrix.appservice_listen): %w", cfg.Matrix.AppServiceListen, err)
	}
	return &matrixFrontend{
		transport: t,
		olm:       olm,
		focus:     f,
		ln:        ln,
		srv:       newHTTPServer(instrument(routeMatrixAppService, t.Handler()), log),
		log:       log,
	}, nil
}

// start serves transactions, syncs with the homeserver and expires
// memberships until stop.
func (m *matrixFrontend) start() {
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	m.wg.Add(3)
	go func() {
		defer m.wg.Done()
		if err := m.srv.Serve(m.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			m.log.Error().Err(err).Msg("appservice listener failed")
		}
	}()
	go func() {
		defer m.wg.Done()
		if err := m.transport.Run(ctx, m.focus); err != nil {
			m.log.Error().Err(err).Msg("homeserver connection ended")
		}
	}()
	go func() {
		defer m.wg.Done()
		_ = m.focus.Run(ctx)
	}()
	m.log.Info().Str("appservice", m.ln.Addr().String()).Str("bot", string(m.transport.UserID())).
		Str("device", string(m.transport.DeviceID())).Msg("matrix front-end started")
}

// close hangs up every call, then stops the transport and the listener.
func (m *matrixFrontend) close(ctx context.Context) error {
	var errs []error
	if err := m.focus.Close(ctx); err != nil {
		errs = append(errs, err)
	}
	if m.cancel != nil {
		m.cancel()
	}
	if err := m.srv.Shutdown(ctx); err != nil {
		_ = m.srv.Close()
		errs = append(errs, err)
	}
	_ = m.ln.Close() // Serve may never have run
	m.wg.Wait()
	if err := m.transport.Close(); err != nil {
		errs = append(errs, err)
	}
	if err := m.olm.Close(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// AppServiceAddr is the address the homeserver pushes transactions to, or
// nil when Matrix is off.
func (s *Server) AppServiceAddr() net.Addr {
	if s.matrix == nil {
		return nil
	}
	return s.matrix.ln.Addr()
}
