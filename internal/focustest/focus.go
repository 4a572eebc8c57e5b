// Package focustest runs the real focus in-process for a test: on loopback
// with ephemeral ports, its log kept in memory, stopped when the test ends.
package focustest

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/focus-sfu/focus/config"
	"github.com/focus-sfu/focus/server"
)

// LogEnv names a file that receives a test's whole focus log at cleanup,
// for runs where the tail printed on failure is not enough.
const LogEnv = "FOCUS_E2E_LOG"

// failureTail is how many log lines a failed test prints.
const failureTail = 150

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
	log        logBuffer
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
	f := &Focus{t: t, done: make(chan error, 1), stopWithin: 15 * time.Second}
	for _, o := range opts {
		o(f)
	}
	cfg := Config()
	if mod != nil {
		mod(&cfg)
	}
	// Debug, not trace: pion's own debug chatter goes out at trace.
	log := zerolog.New(&f.log).Level(zerolog.DebugLevel).Hook(clock{})
	ctx, cancel := context.WithCancel(context.Background())
	s, err := server.New(ctx, cfg, log)
	if err != nil {
		cancel()
		t.Fatalf("server.New: %v", err)
	}
	f.Server, f.cancel = s, cancel
	f.URL = "http://" + s.Addr().String()
	go func() { f.done <- s.Run(ctx) }()
	// Cleanups run last first: Stop, then the log report, so the log is
	// complete.
	t.Cleanup(f.report)
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
func (f *Focus) Log() string { return string(f.log.bytes()) }

// LogTail is the last n lines of the focus's log.
func (f *Focus) LogTail(n int) string {
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(f.log.bytes()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

func (f *Focus) report() {
	if path := os.Getenv(LogEnv); path != "" {
		if err := os.WriteFile(path, f.log.bytes(), 0o644); err != nil {
			f.t.Errorf("write focus log: %v", err)
		}
	}
	if f.t.Failed() {
		f.t.Logf("focus log (last lines; set %s=file for all):\n%s", LogEnv, f.LogTail(failureTail))
	}
}

// clock stamps log lines to the microsecond, to line them up with the
// clients' packet times, without touching zerolog's global format.
type clock struct{}

func (clock) Run(e *zerolog.Event, _ zerolog.Level, _ string) {
	e.Str("at", time.Now().Format("15:04:05.000000"))
}

// logBuffer collects the focus's log from many goroutines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) bytes() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return bytes.Clone(l.b.Bytes())
}
