package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"github.com/focus-sfu/focus/config"
	"github.com/focus-sfu/focus/internal/focustest"
	"github.com/focus-sfu/focus/server"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// start runs a focus for the test. Its Stop, also run at cleanup, fails
// the test unless Run returns nil within the 5 s shutdown budget.
func start(t *testing.T, mod func(*config.Config)) *focustest.Focus {
	t.Helper()
	return focustest.Start(t, mod, focustest.StopWithin(5*time.Second))
}

// logLines decodes JSON log output into one map per line.
func logLines(t *testing.T, log string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(log), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

func get(t *testing.T, url string, header http.Header) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func TestRoutes(t *testing.T) {
	f := start(t, func(c *config.Config) { c.Admin.Token = "admin-secret" })
	s, base := f.Server, f.URL
	if s.AdminAddr() != nil {
		t.Errorf("AdminAddr = %v, want nil without admin.listen", s.AdminAddr())
	}

	code, body := get(t, base+"/healthz", nil)
	if code != http.StatusOK || strings.TrimSpace(body) != "ok" {
		t.Errorf("/healthz = %d %q, want 200 ok", code, body)
	}
	code, body = get(t, base+"/", nil)
	if code != http.StatusOK || !strings.Contains(strings.ToLower(body), "<html") {
		t.Errorf("/ = %d, want the web page; body starts %.80q", code, body)
	}
	if code, _ := get(t, base+"/api/rooms", nil); code != http.StatusUnauthorized {
		t.Errorf("/api/rooms without the admin token = %d, want 401", code)
	}
	code, body = get(t, base+"/api/rooms", http.Header{"Authorization": {"Bearer admin-secret"}})
	if code != http.StatusOK {
		t.Fatalf("/api/rooms with the admin token = %d %q, want 200", code, body)
	}
	var rooms struct{ Rooms []json.RawMessage }
	if err := json.Unmarshal([]byte(body), &rooms); err != nil || len(rooms.Rooms) != 0 {
		t.Errorf("/api/rooms = %q (%v), want no rooms", body, err)
	}

	// The WHIP front-end is mounted: a non-SDP body is refused by it, not
	// by a 404 from the page.
	resp, err := http.Post(base+"/whip/room1", "text/plain", strings.NewReader("hello"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound || resp.StatusCode < 400 {
		t.Errorf("POST /whip/room1 text/plain = %d, want a WHIP 4xx", resp.StatusCode)
	}
	resp, err = http.Post(base+"/whep/room1", "text/plain", strings.NewReader("hello"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound || resp.StatusCode < 400 {
		t.Errorf("POST /whep/room1 text/plain = %d, want a WHEP 4xx", resp.StatusCode)
	}
}

func TestBodyLimit(t *testing.T) {
	base := start(t, nil).URL
	big := strings.Repeat("v=0\r\n", (64<<10)/5+10)

	// Declared too large: refused before any handler reads it.
	resp, err := http.Post(base+"/whip/room1", "application/sdp", strings.NewReader(big))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("POST 64 KiB+ with Content-Length = %d, want 413", resp.StatusCode)
	}

	// Undeclared (chunked): cut off while the handler reads it.
	req, err := http.NewRequest(http.MethodPost, base+"/whip/room1", io.MultiReader(strings.NewReader(big)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/sdp")
	req.ContentLength = -1
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode < 400 || resp.StatusCode >= 500 {
		t.Errorf("POST 64 KiB+ chunked = %d, want a 4xx", resp.StatusCode)
	}
}

func TestAdminListener(t *testing.T) {
	s := start(t, func(c *config.Config) { c.Admin.Listen = "127.0.0.1:0" }).Server
	if s.AdminAddr() == nil {
		t.Fatal("AdminAddr = nil with admin.listen set")
	}
	main := "http://" + s.Addr().String()
	admin := "http://" + s.AdminAddr().String()
	if code, _ := get(t, admin+"/api/rooms", nil); code != http.StatusOK {
		t.Errorf("admin /api/rooms = %d, want 200", code)
	}
	if code, _ := get(t, main+"/api/rooms", nil); code != http.StatusNotFound {
		t.Errorf("main /api/rooms = %d, want 404 when admin.listen is set", code)
	}
	for _, base := range []string{main, admin} {
		if code, _ := get(t, base+"/healthz", nil); code != http.StatusOK {
			t.Errorf("%s/healthz = %d, want 200", base, code)
		}
	}
	if code, _ := get(t, admin+"/", nil); code != http.StatusNotFound {
		t.Errorf("admin / = %d, want 404 (the page is on the main listener)", code)
	}
}

func TestReadyLog(t *testing.T) {
	f := start(t, nil)
	f.Stop()
	s, logs := f.Server, f.Log()

	udp, ok := s.UDPAddr().(*net.UDPAddr)
	if !ok || udp.Port == 0 {
		t.Fatalf("UDPAddr = %v, want a bound port", s.UDPAddr())
	}
	var ready map[string]any
	for _, l := range logLines(t, logs) {
		if _, ok := l["url"]; ok {
			ready = l
		}
	}
	if ready == nil {
		t.Fatalf("no start-up line with a url in:\n%s", logs)
	}
	want := map[string]any{
		"level": "info",
		"url":   "http://" + s.Addr().String() + "/",
		"http":  s.Addr().String(),
		"udp":   udp.String(),
		"mode":  "open",
	}
	for k, v := range want {
		if ready[k] != v {
			t.Errorf("start-up line %s = %v, want %v", k, ready[k], v)
		}
	}
	if !strings.Contains(logs, `"stopped"`) {
		t.Errorf("no stop line in:\n%s", logs)
	}
}

func TestExposureRule(t *testing.T) {
	tokens := []config.Token{{Token: "t", Rooms: []string{"*"}, Publish: true, View: true}}
	tests := []struct {
		name     string
		listen   string
		tokens   []config.Token
		insecure bool
		refused  bool
		warning  string // expected in the log when not refused
		mode     string
	}{
		{name: "loopback open", listen: "127.0.0.1:0", mode: "open"},
		{name: "localhost open", listen: "localhost:0", mode: "open"},
		{name: "all interfaces open", listen: ":0", refused: true},
		{name: "any ipv4 open", listen: "0.0.0.0:0", refused: true},
		{name: "any ipv4 insecure", listen: "0.0.0.0:0", insecure: true, warning: "INSECURE", mode: "insecure-open"},
		{name: "any ipv4 tokens", listen: "0.0.0.0:0", tokens: tokens, warning: "admin.token is empty", mode: "tokens"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := focustest.Config()
			cfg.Listen = tt.listen
			cfg.WHIP.Tokens = tt.tokens
			cfg.WHIP.InsecureOpen = tt.insecure
			if tt.refused {
				s, err := server.New(context.Background(), cfg, zerolog.Nop())
				if s != nil {
					t.Fatal("New returned a server for a refused config")
				}
				var ce *config.Error
				if !errors.As(err, &ce) || ce.Key != "listen" || !strings.Contains(err.Error(), "whip.insecure_open") {
					t.Fatalf("New = %v, want a config.Error on listen naming whip.insecure_open", err)
				}
				return
			}
			f := start(t, func(c *config.Config) { *c = cfg })
			f.Stop()
			logs := f.Log()
			if tt.warning != "" && !strings.Contains(logs, tt.warning) {
				t.Errorf("log lacks %q:\n%s", tt.warning, logs)
			}
			if tt.warning == "" && strings.Contains(logs, `"warn"`) {
				t.Errorf("unexpected warning:\n%s", logs)
			}
			if !strings.Contains(logs, `"mode":"`+tt.mode+`"`) {
				t.Errorf("log lacks mode %q:\n%s", tt.mode, logs)
			}
		})
	}
}

func TestNewErrors(t *testing.T) {
	t.Run("invalid config", func(t *testing.T) {
		cfg := focustest.Config()
		cfg.WebRTC.UDPPort = 70000
		_, err := server.New(context.Background(), cfg, zerolog.Nop())
		var ce *config.Error
		if !errors.As(err, &ce) || ce.Key != "webrtc.udp_port" {
			t.Fatalf("New = %v, want a config.Error on webrtc.udp_port", err)
		}
	})
	t.Run("trunk tls files unreadable", func(t *testing.T) {
		cfg := focustest.Config()
		cfg.Mesh.Enabled = true
		cfg.Mesh.Bind = "127.0.0.1:0"
		cfg.Mesh.TrunkSecret = strings.Repeat("s", config.MinTrunkSecretLen)
		cfg.Mesh.TrunkTLS = config.TrunkTLS{Listen: "127.0.0.1:0", CertFile: "/nonexistent/cert.pem", KeyFile: "/nonexistent/key.pem", CAFile: "/nonexistent/ca.pem"}
		_, err := server.New(context.Background(), cfg, zerolog.Nop())
		var ce *config.Error
		if !errors.As(err, &ce) || ce.Key != "mesh.trunk_tls.cert_file" {
			t.Fatalf("New = %v, want a config.Error on mesh.trunk_tls.cert_file", err)
		}
	})
	t.Run("port in use", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		cfg := focustest.Config()
		cfg.Listen = ln.Addr().String()
		_, err = server.New(context.Background(), cfg, zerolog.Nop())
		var ce *config.Error
		if err == nil || errors.As(err, &ce) || !strings.Contains(err.Error(), "listen") {
			t.Fatalf("New = %v, want a listen error that is not a config.Error", err)
		}
	})
	t.Run("udp port in use releases the http port", func(t *testing.T) {
		pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		cfg := focustest.Config()
		cfg.WebRTC.UDPPort = pc.LocalAddr().(*net.UDPAddr).Port
		// A fixed HTTP port, so we can check it is free again afterwards.
		probe, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		cfg.Listen = probe.Addr().String()
		probe.Close()
		if _, err := server.New(context.Background(), cfg, zerolog.Nop()); err == nil {
			t.Fatal("New succeeded with the UDP port taken")
		}
		again, err := net.Listen("tcp", cfg.Listen)
		if err != nil {
			t.Fatalf("HTTP port still bound after New failed: %v", err)
		}
		again.Close()
	})
}

func TestRunTwice(t *testing.T) {
	f := start(t, nil)
	f.Stop()
	if err := f.Server.Run(context.Background()); err == nil {
		t.Error("second Run returned nil, want an error")
	}
}
