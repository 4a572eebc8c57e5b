// Package focustest runs the real focus in-process for a test: on loopback
// with ephemeral ports, its log kept in memory, stopped when the test ends.
package focustest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/focus-sfu/focus/config"
	"github.com/focus-sfu/focus/server"
)

// Focus is a running focus owned by one test.
type Focus struct {
	// URL is the main listener's base URL, without a trailing slash.
	URL    string
	Server *server.Server

	t          testing.TB
	cancel     context.CancelFunc
	done       chan error
	stopWithin time.Duration
	stopOnce   sync.Once
	log        *Log
}

// Option changes how Start runs the focus.
type Option func(*Focus)

// StopWithin bounds how long Stop waits for Run to return; the default is
// 15 s.
func StopWithin(d time.Duration) Option {
	return func(f *Focus) { f.stopWithin = d }
}

// Config is the configuration Start uses before mod: the defaults, on
// loopback with ephemeral ports.
func Config() config.Config {
	c := config.Default()
	c.Listen = "127.0.0.1:0"
	c.WebRTC.UDPPort = 0
	return c
}

// Start runs a focus built from Config, changed by mod if it is not nil,
// until Stop or the end of the test. Its log is written to the file named
// by $FOCUS_E2E_LOG at cleanup, and its tail is printed if the test failed.
func Start(t testing.TB, mod func(*config.Config), opts ...Option) *Focus {
	t.Helper()
	f := &Focus{t: t, done: make(chan error, 1), stopWithin: 15 * time.Second, log: NewLog(t)}
	for _, o := range opts {
		o(f)
	}
	cfg := Config()
	if mod != nil {
		mod(&cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s, err := server.New(ctx, cfg, f.log.Logger())
	if err != nil {
		cancel()
		t.Fatalf("server.New: %v", err)
	}
	f.Server, f.cancel = s, cancel
	f.URL = "http://" + s.Addr().String()
	go func() { f.done <- s.Run(ctx) }()
	// Cleanups run last first: Stop, then the log report, so the log is
	// complete.
	t.Cleanup(f.log.Report)
	t.Cleanup(f.Stop)
	return f
}

// Stop cancels the focus and fails the test unless Run returns nil within
// the bound. Calls after the first do nothing.
func (f *Focus) Stop() {
	f.stopOnce.Do(func() {
		f.cancel()
		select {
		case err := <-f.done:
			if err != nil {
				f.t.Errorf("focus Run: %v", err)
			}
		case <-time.After(f.stopWithin):
			f.t.Errorf("focus Run did not return within %v of cancel", f.stopWithin)
		}
	})
}

// Log is the focus's whole log so far, one JSON object a line.
func (f *Focus) Log() string { return f.log.String() }

// LogTail is the last n lines of the focus's log.
func (f *Focus) LogTail(n int) string { return f.log.Tail(n) }
