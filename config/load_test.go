package config_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/focus-sfu/focus/config"
)

func TestDefaultIsValid(t *testing.T) {
	if err := config.Default().Validate(); err != nil {
		t.Fatalf("Default().Validate() = %v", err)
	}
}

func TestParseOverlaysDefault(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want func(c *config.Config)
	}{
		{name: "empty file", yaml: "", want: func(*config.Config) {}},
		{name: "only comments", yaml: "# nothing here\n", want: func(*config.Config) {}},
		{name: "null document", yaml: "~\n", want: func(*config.Config) {}},
		{
			name: "one nested key keeps its siblings",
			yaml: "webrtc:\n  udp_port: 9000\n",
			want: func(c *config.Config) { c.WebRTC.UDPPort = 9000 },
		},
		{
			name: "null keeps the default",
			yaml: "listen: ~\nlimits:\n  sessions_total:\ncors:\n  allowed_origins: null\n",
			want: func(*config.Config) {},
		},
		{
			name: "empty list replaces the default",
			yaml: "cors:\n  allowed_origins: []\n",
			want: func(c *config.Config) { c.CORS.AllowedOrigins = []string{} },
		},
		{
			name: "zero is kept, not mistaken for unset",
			yaml: "webrtc:\n  udp_port: 0\nlimits:\n  sessions_per_ip: 0\n",
			want: func(c *config.Config) { c.WebRTC.UDPPort = 0; c.Limits.SessionsPerIP = 0 },
		},
		{
			name: "yaml integer forms",
			yaml: "webrtc:\n  udp_port: 0x1F40\nlimits:\n  sessions_total: 10_000\n",
			want: func(c *config.Config) { c.WebRTC.UDPPort = 8000; c.Limits.SessionsTotal = 10000 },
		},
		{
			name: "unquoted number as a string",
			yaml: "admin:\n  token: 12345\n",
			want: func(c *config.Config) { c.Admin.Token = "12345" },
		},
		{
			name: "aliased values",
			yaml: "whip:\n  tokens:\n    - {token: t1, rooms: &r [\"a-*\", \"b\"], publish: true}\n    - {token: t2, rooms: *r, view: true}\n",
			want: func(c *config.Config) {
				c.WHIP.Tokens = []config.Token{
					{Token: "t1", Rooms: []string{"a-*", "b"}, Publish: true},
					{Token: "t2", Rooms: []string{"a-*", "b"}, View: true},
				}
			},
		},
		{
			name: "everything",
			yaml: `
listen: "[::1]:9090"
admin: {listen: "127.0.0.1:9091", token: s3cret, metrics: false, pprof: true}
webrtc:
  udp_port: 50000
  bind_address: 10.0.0.2
  public_ips: [203.0.113.7, "2001:db8::7"]
  ice_lite: true
  include_loopback: true
  ice_servers:
    - urls: ["stun:stun.example.org", "turns:turn.example.org:5349?transport=tcp"]
      username: u
      credential: p
cors: {allowed_origins: ["https://example.org", "http://localhost:3000"]}
whip:
  insecure_open: true
  tokens: [{token: abc, rooms: ["*"], publish: true, view: false}]
limits: {sessions_per_room: 1, sessions_per_ip: 2, sessions_total: 3}
media: {packet_cache: 1024, speaker_threshold_dbov: 40, max_audio_forwarded: 3, keep_unwatched: true}
log: {level: trace, format: json}
matrix:
  enabled: true
  homeserver_url: "https://matrix.example.org"
  server_name: example.org
  as_token: ast
  hs_token: hst
  bot_localpart: sfu
  device_id: SFU1
  appservice_listen: "0.0.0.0:29333"
  appservice_url: "http://focus.internal:29333"
  data_dir: /var/lib/focus
  allowed_homeservers: [example.org, "other.example:8448"]
  allowed_users: ["@*:example.org"]
  allowed_rooms: ["!*:example.org"]
  auto_join: false
  max_participants_per_conference: 8
  max_conferences: 0
livekit:
  enabled: true
  api_key: lk
  api_secret: "0123456789abcdef0123456789abcdef"
  url: "wss://focus.example.org"
  token_ttl: 90m
  homeservers: {example.org: "https://matrix.example.org"}
  full_access_homeservers: [example.org]
mesh:
  enabled: true
  node_name: a
  bind: "0.0.0.0:7946"
  advertise: "203.0.113.7:7946"
  seeds: ["b.example.org:7946", "10.0.0.3:7946"]
  gossip_key: "MDEyMzQ1Njc4OWFiY2RlZg=="
  trunk_secret: "0123456789abcdef0123456789abcdef"
  trunk_url: "https://focus.example.org"
  rejoin_interval: 30s
  trunk_idle_timeout: 1m
`,
			want: func(c *config.Config) {
				*c = config.Config{
					Listen: "[::1]:9090",
					Admin:  config.Admin{Listen: "127.0.0.1:9091", Token: "s3cret", PProf: true},
					WebRTC: config.WebRTC{
						UDPPort:         50000,
						BindAddress:     "10.0.0.2",
						PublicIPs:       []string{"203.0.113.7", "2001:db8::7"},
						ICELite:         true,
						IncludeLoopback: true,
						ICEServers: []config.ICEServer{{
							URLs:     []string{"stun:stun.example.org", "turns:turn.example.org:5349?transport=tcp"},
							Username: "u", Credential: "p",
						}},
					},
					CORS:   config.CORS{AllowedOrigins: []string{"https://example.org", "http://localhost:3000"}},
					WHIP:   config.WHIP{InsecureOpen: true, Tokens: []config.Token{{Token: "abc", Rooms: []string{"*"}, Publish: true}}},
					Limits: config.Limits{SessionsPerRoom: 1, SessionsPerIP: 2, SessionsTotal: 3},
					Media:  config.Media{PacketCache: 1024, SpeakerThresholdDBov: 40, MaxAudioForwarded: 3, KeepUnwatched: true},
					Log:    config.Log{Level: "trace", Format: "json"},
					Matrix: config.Matrix{
						Enabled:            true,
						HomeserverURL:      "https://matrix.example.org",
						ServerName:         "example.org",
						ASToken:            "ast",
						HSToken:            "hst",
						BotLocalpart:       "sfu",
						DeviceID:           "SFU1",
						AppServiceListen:   "0.0.0.0:29333",
						AppServiceURL:      "http://focus.internal:29333",
						DataDir:            "/var/lib/focus",
						AllowedHomeservers: []string{"example.org", "other.example:8448"},
						AllowedUsers:       []string{"@*:example.org"},
						AllowedRooms:       []string{"!*:example.org"},
						AutoJoin:           false,
						MaxConferences:     0,

						MaxParticipantsPerConference: 8,
					},
					LiveKit: config.LiveKit{
						Enabled:               true,
						APIKey:                "lk",
						APISecret:             "0123456789abcdef0123456789abcdef",
						URL:                   "wss://focus.example.org",
						TokenTTL:              90 * time.Minute,
						Homeservers:           map[string]string{"example.org": "https://matrix.example.org"},
						FullAccessHomeservers: []string{"example.org"},
					},
					Mesh: config.Mesh{
						Enabled:          true,
						NodeName:         "a",
						Bind:             "0.0.0.0:7946",
						Advertise:        "203.0.113.7:7946",
						Seeds:            []string{"b.example.org:7946", "10.0.0.3:7946"},
						GossipKey:        "MDEyMzQ1Njc4OWFiY2RlZg==",
						TrunkSecret:      "0123456789abcdef0123456789abcdef",
						TrunkURL:         "https://focus.example.org",
						RejoinInterval:   30 * time.Second,
						TrunkIdleTimeout: time.Minute,
					},
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := config.Parse([]byte(tt.yaml))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			want := config.Default()
			tt.want(&want)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Parse =\n%+v\nwant\n%+v", got, want)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		key  string
		msg  string
	}{
		{"unknown top-level key", "lisen: x\n", "lisen", `config: unknown key "lisen"`},
		{"mesh without a trunk secret", "mesh:\n  enabled: true\n", "mesh.trunk_secret", `config: mesh.trunk_secret: must be set when mesh.enabled is true (e.g. openssl rand -hex 32)`},
		{"short trunk secret", "mesh:\n  trunk_secret: abc\n", "mesh.trunk_secret", `config: mesh.trunk_secret: is 3 characters; use at least 32 (e.g. openssl rand -hex 32)`},
		{"gossip key not base64", "mesh:\n  gossip_key: \"!!\"\n", "mesh.gossip_key", `config: mesh.gossip_key: is not base64 (e.g. openssl rand -base64 32)`},
		{"gossip key of 5 bytes", "mesh:\n  gossip_key: \"YWJjZGU=\"\n", "mesh.gossip_key", `config: mesh.gossip_key: decodes to 5 bytes; want 16, 24 or 32 (e.g. openssl rand -base64 32)`},
		{"seed without a port", "mesh:\n  seeds: [a.example.org]\n", "mesh.seeds[0]", `config: mesh.seeds[0]: "a.example.org" is not host:port`},
		{"trunk url not http", "mesh:\n  trunk_url: \"ftp://x\"\n", "mesh.trunk_url", `config: mesh.trunk_url: "ftp://x" is not an http(s):// URL`},
		{"rejoin interval too short", "mesh:\n  rejoin_interval: 10ms\n", "mesh.rejoin_interval", `config: mesh.rejoin_interval: 10ms is under 1s`},
		{"trunk tls without files", "mesh:\n  trunk_tls:\n    listen: \"127.0.0.1:7443\"\n", "mesh.trunk_tls.cert_file", `config: mesh.trunk_tls.cert_file: must be set with mesh.trunk_tls.listen`},
		{"trunk tls files without listen", "mesh:\n  trunk_tls:\n    ca_file: ca.pem\n", "mesh.trunk_tls.listen", `config: mesh.trunk_tls.listen: must be set with the certificate files (host:port)`},
		{"http trunk url with trunk tls", "mesh:\n  trunk_url: \"http://x\"\n  trunk_tls: {listen: \"127.0.0.1:7443\", cert_file: c, key_file: k, ca_file: a}\n", "mesh.trunk_url", `config: mesh.trunk_url: "http://x" must be https:// with mesh.trunk_tls`},
		{"trunk idle timeout too short", "mesh:\n  trunk_idle_timeout: 0s\n", "mesh.trunk_idle_timeout", `config: mesh.trunk_idle_timeout: 0s is under 1s`},
		{"unknown nested key", "webrtc:\n  udp_prot: 1\n", "webrtc.udp_prot", `config: unknown key "webrtc.udp_prot"`},
		{"unknown key in a list item", "whip:\n  tokens:\n    - token: a\n      rom: [x]\n", "whip.tokens[0].rom", `config: unknown key "whip.tokens[0].rom"`},
		{"unknown key in the second list item", "webrtc:\n  ice_servers:\n    - urls: [\"stun:a\"]\n    - url: [\"stun:b\"]\n", "webrtc.ice_servers[1].url", `config: unknown key "webrtc.ice_servers[1].url"`},
		{"anchor holder is still an unknown key", "x: &r [a]\n", "x", `config: unknown key "x"`},
		{"word for an integer", "limits:\n  sessions_per_ip: lots\n", "limits.sessions_per_ip", `config: limits.sessions_per_ip: expected an integer, got "lots"`},
		{"quoted integer", "webrtc:\n  udp_port: \"7882\"\n", "webrtc.udp_port", `config: webrtc.udp_port: expected an integer, got the quoted string "7882"`},
		{"float for an integer", "limits:\n  sessions_total: 1.5\n", "limits.sessions_total", `config: limits.sessions_total: expected an integer, got "1.5"`},
		{"huge integer", "limits:\n  sessions_total: 99999999999999999999999\n", "limits.sessions_total", `config: limits.sessions_total: expected an integer, got "99999999999999999999999"`},
		{"uint64 integer", "limits:\n  sessions_total: 18446744073709551615\n", "limits.sessions_total", `config: limits.sessions_total: 18446744073709551615 is out of range`},
		{"list for an integer", "webrtc:\n  udp_port: [1]\n", "webrtc.udp_port", `config: webrtc.udp_port: expected an integer, got a list`},
		{"yes is not a bool", "webrtc:\n  ice_lite: yes\n", "webrtc.ice_lite", `config: webrtc.ice_lite: expected true or false, got "yes"`},
		{"string for a list", "webrtc:\n  public_ips: 1.2.3.4\n", "webrtc.public_ips", `config: webrtc.public_ips: expected a list, got "1.2.3.4"`},
		{"mapping for a string", "listen: {host: a}\n", "listen", `config: listen: expected a string, got a mapping`},
		{"list item of the wrong type", "whip:\n  tokens:\n    - token: a\n      rooms: [[x]]\n", "whip.tokens[0].rooms[0]", `config: whip.tokens[0].rooms[0]: expected a string, got a list`},
		{"scalar for a section", "webrtc: 7882\n", "webrtc", `config: webrtc: expected a mapping, got "7882"`},
		{"top level is a list", "- a\n", "", `config: expected a mapping of keys at the top level, got a list`},
		{"top level is a scalar", "hello\n", "", `config: expected a mapping of keys at the top level, got "hello"`},
		{"duplicate key", "log:\n  level: info\n  level: debug\n", "log.level", `config: log.level: set more than once`},
		{"merge key", "log:\n  <<: {level: info}\n", "log.<<", `config: log.<<: merge keys are not supported`},
		{"non-string key", "? [a]\n: b\n", "", `config: keys must be plain strings, got a list`},
		{"two documents", "listen: \"127.0.0.1:1\"\n---\nlisten: \"127.0.0.1:2\"\n", "", `config: the file holds more than one YAML document`},
		{"self-referencing alias", "cors:\n  allowed_origins: &x [*x]\n", "cors.allowed_origins[0]", `config: cors.allowed_origins[0]: expected a string, got a list`},
		{"validation runs after loading", "webrtc:\n  udp_port: 70000\n", "webrtc.udp_port", `config: webrtc.udp_port: 70000 is out of range 0-65535`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := config.Parse([]byte(tt.yaml))
			checkError(t, err, tt.key, tt.msg)
		})
	}
}

func TestParseInvalidYAML(t *testing.T) {
	for _, y := range []string{"listen: [\n", "a: b: c\n", "\t- x\n", "x: *missing\n"} {
		_, err := config.Parse([]byte(y))
		var ce *config.Error
		if !errors.As(err, &ce) {
			t.Fatalf("Parse(%q) = %v, want a *config.Error", y, err)
		}
		if !strings.HasPrefix(err.Error(), "config: invalid YAML: ") {
			t.Errorf("Parse(%q) = %q, want an invalid YAML error", y, err)
		}
	}
}

func TestParseAliasExpansionIsBounded(t *testing.T) {
	// 400 aliases of a 400-item list expand to 160,000 values.
	var b strings.Builder
	b.WriteString("cors:\n  allowed_origins: &o [")
	for i := range 400 {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(`"*"`)
	}
	b.WriteString("]\nwebrtc:\n  ice_servers:\n")
	for range 400 {
		b.WriteString("    - urls: *o\n")
	}
	_, err := config.Parse([]byte(b.String()))
	checkError(t, err, "", "config: the file expands to more than 100000 values")
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	if err := os.WriteFile(good, []byte("listen: \"127.0.0.1:9999\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := config.Load(good)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if c.Listen != "127.0.0.1:9999" || c.WebRTC.UDPPort != 7882 {
		t.Errorf("Load = %+v, want listen from the file and udp_port from Default", c)
	}

	missing := filepath.Join(dir, "missing.yaml")
	_, err = config.Load(missing)
	checkError(t, err, "", "config: cannot read "+missing+": no such file or directory")
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("errors.Is(%v, fs.ErrNotExist) = false", err)
	}

	big := filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(big, []byte("# "+strings.Repeat("x", 1<<20)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = config.Load(big)
	checkError(t, err, "", "config: cannot read "+big+": larger than 1048576 bytes")
}

func TestSampleLoads(t *testing.T) {
	c, err := config.Load("../config.sample.yaml")
	if err != nil {
		t.Fatalf("config.sample.yaml: %v", err)
	}
	// Apart from its example entries, the sample shows the defaults.
	c.WebRTC.ICEServers = nil
	c.WHIP.Tokens = nil
	c.WebRTC.PublicIPs = nil
	c.SharedRooms = nil
	if want := config.Default(); !reflect.DeepEqual(c, want) {
		t.Errorf("sample without its examples =\n%+v\nwant Default()\n%+v", c, want)
	}
}

func checkError(t *testing.T, err error, key, msg string) {
	t.Helper()
	var ce *config.Error
	if !errors.As(err, &ce) {
		t.Fatalf("error = %v (%T), want a *config.Error", err, err)
	}
	if ce.Key != key {
		t.Errorf("Key = %q, want %q", ce.Key, key)
	}
	if err.Error() != msg {
		t.Errorf("message = %q\n         want %q", err.Error(), msg)
	}
}
