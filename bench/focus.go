package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// FocusTarget runs `focus serve` for each run: this binary (Command) with a
// generated configuration on loopback ports it picks itself, open access,
// no session limits, pinned to CPU.
type FocusTarget struct {
	// Command is the focus binary and any leading arguments; "serve
	// --config FILE" is appended.
	Command []string
	// CPU pins the server (taskset -c); -1 leaves it unpinned.
	CPU int
	// LogDir keeps each server's log and config in a directory of its own
	// under it; empty uses a temporary directory, removed after the run.
	LogDir string
}

// Name is "focus".
func (t *FocusTarget) Name() string { return "focus" }

// focusConfig is the server's configuration: loopback with ports the
// server picks (it logs them), open WHIP and WHEP (allowed on loopback),
// no session limits, and the JSON log the bench reads the ports from.
const focusConfig = `# written by focus bench
listen: "127.0.0.1:0"
webrtc:
  udp_port: 0
limits:
  sessions_per_room: 0
  sessions_per_ip: 0
  sessions_total: 0
log:
  level: info
  format: json
`

// focusRoom is the one room every publisher and subscriber of a run uses.
const focusRoom = "bench"

// Start runs a fresh focus and waits for its "ready" log line.
func (t *FocusTarget) Start(ctx context.Context) (Server, error) {
	dir, rm, err := serverDir(t.LogDir, "focus")
	if err != nil {
		return nil, err
	}
	cfg := filepath.Join(dir, "focus.yaml")
	if err := os.WriteFile(cfg, []byte(focusConfig), 0o600); err != nil {
		return nil, fmt.Errorf("bench: focus config: %w", err)
	}
	ready := make(chan string, 1)
	args := append(append([]string(nil), t.Command...), "serve", "--config", cfg)
	p, err := startProcess("focus", t.CPU, dir, rm, args, nil, func(line string) bool {
		var ev struct {
			Message string `json:"message"`
			HTTP    string `json:"http"`
		}
		if json.Unmarshal([]byte(line), &ev) != nil || !strings.HasPrefix(ev.Message, "focus is ready") || ev.HTTP == "" {
			return false
		}
		ready <- ev.HTTP
		return true
	})
	if err != nil {
		return nil, err
	}
	s := &focusServer{p: p, version: commandVersion(t.Command[0], "version")}
	select {
	case addr := <-ready:
		s.base = "http://" + addr
		return s, nil
	case <-p.exited:
	case <-time.After(20 * time.Second):
	case <-ctx.Done():
	}
	err = p.failure("did not log that it was ready")
	_ = p.stop(5 * time.Second)
	return nil, err
}

type focusServer struct {
	p       *process
	base    string
	version string
}

func (s *focusServer) PID() int        { return s.p.pid() }
func (s *focusServer) Version() string { return s.version }
func (s *focusServer) Shared() bool    { return false }
func (s *focusServer) Close() error    { return s.p.stop(10 * time.Second) }

func (s *focusServer) Publish(PublisherSpec) (Request, error) {
	return Request{URL: s.base + "/whip/" + focusRoom}, nil
}

func (s *focusServer) Subscribe(_ SubscriberSpec, pub Published) (Request, error) {
	return Request{URL: s.base + "/whep/" + focusRoom + "?stream=" + url.QueryEscape(pub.ID)}, nil
}
