package dendrite

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/focus-sfu/focus/internal/freeport"
)

// ServerName is the server name of every test homeserver: user IDs look
// like @alice:localhost.
const ServerName = "localhost"

// LogEnv names a file that receives, appended, the whole log of every
// Dendrite a test run starts, at cleanup, for runs where the tail printed
// on failure is not enough.
const LogEnv = "FOCUS_DENDRITE_LOG"

const (
	startTimeout = 30 * time.Second // from exec to /versions answering
	stopGrace    = 5 * time.Second  // from SIGTERM to SIGKILL
	failureTail  = 80               // log lines printed when a test fails
	startTries   = 3                // a free port can be taken before Dendrite binds it
)

// Options change how Start configures Dendrite.
type Options struct {
	// AppServiceRegistration lists appservice registration files (YAML)
	// for app_service_api.config_files. Dendrite reads them only at start,
	// so write them first.
	AppServiceRegistration []string
	// LogLevel, when set ("debug" or "trace"), adds a second log at that
	// level in Server.Dir/log/dendrite.log. The main log, Server.LogPath,
	// holds Dendrite's standard output at info level.
	LogLevel string
	// Configure, when set, may change the configuration, decoded from the
	// YAML, after Start's own changes and before Dendrite reads it.
	Configure func(cfg map[string]any)
}

// Server is a running Dendrite owned by one test. It stops when the test
// ends, or earlier with Stop.
type Server struct {
	// URL is the client and federation base URL, http://127.0.0.1:PORT,
	// without a trailing slash.
	URL        string
	ServerName string
	// Dir holds the configuration, keys, databases and logs.
	Dir        string
	ConfigPath string
	LogPath    string
	// SharedSecret is client_api.registration_shared_secret, for
	// /_synapse/admin/v1/register.
	SharedSecret string
	// HTTP is the client every helper here uses. Its idle connections are
	// closed at Stop, so tests that check for leaked goroutines pass.
	HTTP *http.Client

	tb        testing.TB
	bin       Binaries
	transport *http.Transport
	cmd       *exec.Cmd
	exited    chan struct{} // closed when the process has been waited for
	waitErr   error         // valid after exited is closed
	stopOnce  sync.Once
}

// Start builds (or finds) Dendrite, starts it on a free loopback port with
// a fresh configuration in tb.TempDir(), and waits until it answers. It
// ends the test if Dendrite cannot be had (see Require) or does not start.
//
// The configuration is generate-config -ci, with: registration closed
// (shared-secret registration stays open), federation enabled (Dendrite
// serves /_matrix/federation/v1/openid/userinfo only then), no rate
// limits, SQLite and in-memory JetStream under Dir, no full-text search.
func Start(tb testing.TB, opts Options) *Server {
	tb.Helper()
	bin := Require(tb)
	s := &Server{
		ServerName: ServerName,
		Dir:        tb.TempDir(),
		tb:         tb,
		bin:        bin,
	}
	s.ConfigPath = filepath.Join(s.Dir, "dendrite.yaml")
	s.LogPath = filepath.Join(s.Dir, "dendrite.out.log")
	if err := s.configure(tb.Context(), opts); err != nil {
		tb.Fatalf("%v", err)
	}
	s.transport = http.DefaultTransport.(*http.Transport).Clone()
	s.HTTP = &http.Client{Transport: s.transport, Timeout: 60 * time.Second}

	var err error
	for try := 1; try <= startTries; try++ {
		err = s.start(tb.Context())
		if !errors.Is(err, errAddrInUse) {
			break
		}
	}
	// Registered after tb.TempDir, so it runs before the directory goes.
	tb.Cleanup(func() {
		s.Stop()
		s.report()
	})
	if err != nil {
		tb.Fatalf("%v (the log's tail follows at cleanup)", err)
	}
	return s
}

// configure writes the key and the configuration into s.Dir.
func (s *Server) configure(ctx context.Context, opts Options) error {
	key := filepath.Join(s.Dir, "matrix_key.pem")
	if out, err := s.run(ctx, s.bin.GenerateKeys, "-private-key", key); err != nil {
		return fmt.Errorf("dendrite: generate-keys: %w\n%s", err, out)
	}
	raw, err := s.run(ctx, s.bin.GenerateConfig, "-ci", "-dir", s.Dir, "-server", ServerName)
	if err != nil {
		return fmt.Errorf("dendrite: generate-config: %w\n%s", err, raw)
	}
	var cfg map[string]any
	if err := yaml.Unmarshal(raw, &cfg); err != nil {
		return fmt.Errorf("dendrite: generate-config output: %w", err)
	}
	regs := make([]any, 0, len(opts.AppServiceRegistration))
	for _, p := range opts.AppServiceRegistration {
		abs, err := filepath.Abs(p)
		if err != nil {
			return fmt.Errorf("dendrite: appservice registration %q: %w", p, err)
		}
		if _, err := os.Stat(abs); err != nil {
			return fmt.Errorf("dendrite: appservice registration: %w", err)
		}
		regs = append(regs, abs)
	}
	logging := []any{}
	if opts.LogLevel != "" {
		logging = append(logging, map[string]any{
			"type": "file", "level": opts.LogLevel,
			"params": map[string]any{"path": filepath.Join(s.Dir, "log")},
		})
	}
	edits := []struct {
		path  string
		value any
	}{
		{"global.private_key", key},
		{"global.disable_federation", false},
		{"global.jetstream.in_memory", true},
		{"global.jetstream.storage_path", s.Dir},
		{"client_api.registration_disabled", true},
		{"client_api.rate_limiting.enabled", false},
		{"app_service_api.config_files", regs},
		{"sync_api.search.enabled", false},
		{"logging", logging},
	}
	for _, e := range edits {
		if err := set(cfg, e.path, e.value); err != nil {
			return err
		}
	}
	if opts.Configure != nil {
		opts.Configure(cfg)
	}
	secret, _ := get(cfg, "client_api.registration_shared_secret").(string)
	if secret == "" {
		return errors.New("dendrite: the configuration has no client_api.registration_shared_secret; CreateUser needs one")
	}
	s.SharedSecret = secret
	out, err := yaml.Marshal(cfg)
	if err != nil {
		return fmt.Errorf("dendrite: encode the configuration: %w", err)
	}
	if err := os.WriteFile(s.ConfigPath, out, 0o600); err != nil {
		return fmt.Errorf("dendrite: %w", err)
	}
	return nil
}

// run runs one of the helper programs in s.Dir and returns its standard
// output, or its combined output on failure.
func (s *Server) run(ctx context.Context, name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = s.Dir
	out, err := cmd.Output()
	if err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			out = append(out, exit.Stderr...)
		}
		return out, err
	}
	return out, nil
}

// set stores value at a dotted path in a decoded YAML document, making the
// maps on the way.
func set(cfg map[string]any, path string, value any) error {
	keys := strings.Split(path, ".")
	m := cfg
	for _, k := range keys[:len(keys)-1] {
		next, ok := m[k]
		if !ok || next == nil {
			nm := map[string]any{}
			m[k] = nm
			m = nm
			continue
		}
		nm, ok := next.(map[string]any)
		if !ok {
			return fmt.Errorf("dendrite: configuration %s: %q is a %T, not a map", path, k, next)
		}
		m = nm
	}
	m[keys[len(keys)-1]] = value
	return nil
}

// get returns the value at a dotted path, or nil.
func get(cfg map[string]any, path string) any {
	var v any = cfg
	for _, k := range strings.Split(path, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

var errAddrInUse = errors.New("dendrite: the chosen port was taken before Dendrite bound it")

// start runs Dendrite on a free port and waits until it answers.
func (s *Server) start(ctx context.Context) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	logf, err := os.OpenFile(s.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("dendrite: log: %w", err)
	}
	// Dendrite is stopped by Stop, not by the test's context, so that
	// cleanup can still give it its SIGTERM.
	cmd := exec.Command(s.bin.Dendrite, "-config", s.ConfigPath, "-http-bind-address", addr)
	cmd.Dir = s.Dir
	cmd.Stdout = logf
	cmd.Stderr = logf
	prepare(cmd)
	began := time.Now()
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("dendrite: start: %w", err)
	}
	s.cmd = cmd
	s.URL = "http://" + addr
	exited := make(chan struct{})
	s.exited = exited
	go func() {
		s.waitErr = cmd.Wait()
		logf.Close()
		close(exited)
	}()

	deadline := time.NewTimer(startTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	for {
		if s.answers(ctx) {
			s.tb.Logf("dendrite: %s up in %v (%s)", s.URL, time.Since(began).Round(time.Millisecond), s.Dir)
			return nil
		}
		select {
		case <-s.exited:
			if strings.Contains(s.logTail(), "address already in use") {
				return errAddrInUse
			}
			return fmt.Errorf("dendrite: exited during start: %v", s.waitErr)
		case <-deadline.C:
			s.kill()
			return fmt.Errorf("dendrite: no answer from %s/_matrix/client/versions within %v", s.URL, startTimeout)
		case <-ctx.Done():
			s.kill()
			return fmt.Errorf("dendrite: start: %w", ctx.Err())
		case <-tick.C:
		}
	}
}

// answers reports whether GET /_matrix/client/versions returns 200.
func (s *Server) answers(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/_matrix/client/versions", nil)
	if err != nil {
		return false
	}
	resp, err := s.HTTP.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// kill ends the process at once and waits for it.
func (s *Server) kill() {
	_ = s.cmd.Process.Kill()
	<-s.exited
}

func freePort() (int, error) {
	port, err := freeport.Loopback()
	if err != nil {
		return 0, fmt.Errorf("dendrite: find a free port: %w", err)
	}
	return port, nil
}

// Stop stops Dendrite: SIGTERM, then SIGKILL if it has not exited within
// 5 s. It fails the test if Dendrite had exited on its own before. It is
// safe to call more than once; cleanup calls it too.
func (s *Server) Stop() {
	s.stopOnce.Do(func() {
		defer s.transport.CloseIdleConnections()
		if s.cmd == nil {
			return
		}
		select {
		case <-s.exited:
			if !s.tb.Failed() {
				s.tb.Errorf("dendrite: exited during the test: %v", s.waitErr)
			}
			return
		default:
		}
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.exited:
		case <-time.After(stopGrace):
			s.tb.Logf("dendrite: still running %v after SIGTERM; killing it", stopGrace)
			s.kill()
		}
	})
}

// report prints the log's tail if the test failed, and appends the whole
// log to $FOCUS_DENDRITE_LOG when that is set.
func (s *Server) report() {
	if s.tb.Failed() {
		s.tb.Logf("dendrite: last lines of %s:\n%s", s.LogPath, s.logTail())
	}
	dst := os.Getenv(LogEnv)
	if dst == "" {
		return
	}
	log, err := os.ReadFile(s.LogPath)
	if err != nil {
		s.tb.Logf("dendrite: %s: %v", LogEnv, err)
		return
	}
	f, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		s.tb.Logf("dendrite: %s: %v", LogEnv, err)
		return
	}
	defer f.Close()
	fmt.Fprintf(f, "=== %s: Dendrite at %s\n%s\n", s.tb.Name(), s.URL, log)
}

func (s *Server) logTail() string {
	b, err := os.ReadFile(s.LogPath)
	if err != nil {
		return err.Error()
	}
	return tail(string(b), failureTail)
}

// Client returns a mautrix client for this server that uses s.HTTP, with
// the given identity and token (either may be empty).
func (s *Server) Client(tb testing.TB, user id.UserID, token string) *mautrix.Client {
	tb.Helper()
	cli, err := mautrix.NewClient(s.URL, user, token)
	if err != nil {
		tb.Fatalf("dendrite: client: %v", err)
	}
	cli.Client = s.HTTP
	return cli
}

// endpoint returns s.URL joined with path and the query.
func (s *Server) endpoint(path string, query url.Values) string {
	u := s.URL + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	return u
}
