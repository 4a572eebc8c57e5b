package server

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/focus-sfu/focus/config"
)

func TestIsLoopback(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"127.0.0.1:8080", true},
		{"127.9.9.9:1", true},
		{"[::1]:8080", true},
		{"localhost:8080", true},
		{"LOCALHOST:0", true},
		{"[::ffff:127.0.0.1]:80", true},
		{":8080", false},
		{"0.0.0.0:8080", false},
		{"[::]:8080", false},
		{"192.168.1.2:8080", false},
		{"example.org:80", false},
		{"localhost.example.org:80", false},
		{"127.0.0.1", false},
	}
	for _, tt := range tests {
		if got := isLoopback(tt.in); got != tt.want {
			t.Errorf("isLoopback(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestBrowserURL(t *testing.T) {
	tests := []struct {
		addr net.Addr
		want string
	}{
		{&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8080}, "http://127.0.0.1:8080/"},
		{&net.TCPAddr{IP: net.IPv4zero, Port: 8080}, "http://localhost:8080/"},
		{&net.TCPAddr{IP: net.IPv6unspecified, Port: 80}, "http://localhost:80/"},
		{&net.TCPAddr{IP: net.IPv6loopback, Port: 80}, "http://[::1]:80/"},
	}
	for _, tt := range tests {
		if got := browserURL(tt.addr); got != tt.want {
			t.Errorf("browserURL(%v) = %q, want %q", tt.addr, got, tt.want)
		}
	}
}

func TestUDPBindAddress(t *testing.T) {
	tests := []struct {
		bind string
		http net.Addr
		want string
	}{
		{"", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}, "127.0.0.1"},
		{"", &net.TCPAddr{IP: net.IPv4zero, Port: 1}, ""},
		{"", &net.TCPAddr{IP: net.IPv6unspecified, Port: 1}, ""},
		{"", &net.TCPAddr{IP: net.IPv6loopback, Port: 1}, "::1"},
		{"10.0.0.1", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}, "10.0.0.1"},
	}
	for _, tt := range tests {
		cfg := config.Default()
		cfg.WebRTC.BindAddress = tt.bind
		if got := udpBindAddress(cfg, tt.http); got != tt.want {
			t.Errorf("udpBindAddress(%q, %v) = %q, want %q", tt.bind, tt.http, got, tt.want)
		}
	}
}

// The HTTP limits are not observable quickly from outside (the shortest is
// 5 s), so check them here.
func TestHTTPServerLimits(t *testing.T) {
	srv := newHTTPServer(nil, zerolog.Nop())
	if srv.ReadHeaderTimeout != 5*time.Second || srv.ReadTimeout != 30*time.Second ||
		srv.WriteTimeout != 30*time.Second || srv.IdleTimeout != 120*time.Second ||
		srv.MaxHeaderBytes != 64<<10 {
		t.Errorf("http.Server limits = header %v read %v write %v idle %v maxheader %d",
			srv.ReadHeaderTimeout, srv.ReadTimeout, srv.WriteTimeout, srv.IdleTimeout, srv.MaxHeaderBytes)
	}
}

func TestNewLogger(t *testing.T) {
	var b strings.Builder
	log, err := NewLogger(&b, config.Log{Level: "info", Format: "json"})
	if err != nil {
		t.Fatal(err)
	}
	log.Debug().Msg("hidden")
	log.Info().Str("conf", "a").Msg("shown")
	if out := b.String(); strings.Contains(out, "hidden") || !strings.Contains(out, `"conf":"a"`) || !strings.HasPrefix(out, "{") {
		t.Errorf("json info logger wrote %q", out)
	}

	b.Reset()
	log, err = NewLogger(&b, config.Log{Level: "warn", Format: "console"})
	if err != nil {
		t.Fatal(err)
	}
	log.Info().Msg("hidden")
	log.Warn().Str("conf", "a").Msg("shown")
	if out := b.String(); strings.Contains(out, "hidden") || !strings.Contains(out, "conf=a") || strings.Contains(out, "\x1b[") {
		t.Errorf("console warn logger wrote %q", out)
	}

	for _, c := range []config.Log{{Level: "loud", Format: "json"}, {Level: "", Format: "json"}, {Level: "info", Format: "xml"}} {
		if _, err := NewLogger(&b, c); err == nil {
			t.Errorf("NewLogger(%+v) = nil error", c)
		}
	}
}
