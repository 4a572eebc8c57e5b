package config_test

import (
	"testing"

	"github.com/focus-sfu/focus/config"
)

func TestValidate(t *testing.T) {
	token := func(tok config.Token) func(c *config.Config) {
		return func(c *config.Config) { c.WHIP.Tokens = []config.Token{tok} }
	}
	ice := func(s config.ICEServer) func(c *config.Config) {
		return func(c *config.Config) { c.WebRTC.ICEServers = []config.ICEServer{s} }
	}
	tests := []validateCase{
		{"listen ipv6", func(c *config.Config) { c.Listen = "[::1]:8080" }, "", ""},
		{"listen all interfaces", func(c *config.Config) { c.Listen = ":8080" }, "", ""},
		{"listen host name", func(c *config.Config) { c.Listen = "localhost:0" }, "", ""},
		{"listen empty", func(c *config.Config) { c.Listen = "" }, "listen", `config: listen: must be set (host:port)`},
		{"listen without port", func(c *config.Config) { c.Listen = "127.0.0.1" }, "listen", `config: listen: "127.0.0.1" is not host:port`},
		{"listen port not a number", func(c *config.Config) { c.Listen = "127.0.0.1:http" }, "listen", `config: listen: "127.0.0.1:http": port "http" is not a number`},
		{"listen port out of range", func(c *config.Config) { c.Listen = "127.0.0.1:70000" }, "listen", `config: listen: "127.0.0.1:70000": port 70000 is out of range 0-65535`},
		{"listen bad host", func(c *config.Config) { c.Listen = "256.1.1.1:80" }, "listen", `config: listen: "256.1.1.1:80": "256.1.1.1" is not a host name or IP address`},
		{"listen host with space", func(c *config.Config) { c.Listen = "my host:80" }, "listen", `config: listen: "my host:80": "my host" is not a host name or IP address`},
		{"admin listen", func(c *config.Config) { c.Admin.Listen = "127.0.0.1:9090" }, "", ""},
		{"admin listen bad", func(c *config.Config) { c.Admin.Listen = "9090" }, "admin.listen", `config: admin.listen: "9090" is not host:port`},
		{"udp port max", func(c *config.Config) { c.WebRTC.UDPPort = 65535 }, "", ""},
		{"udp port too big", func(c *config.Config) { c.WebRTC.UDPPort = 70000 }, "webrtc.udp_port", `config: webrtc.udp_port: 70000 is out of range 0-65535`},
		{"packet cache too small", func(c *config.Config) { c.Media.PacketCache = 8 }, "media.packet_cache", `config: media.packet_cache: 8 is out of range 16-4096`},
		{"speaker threshold out of range", func(c *config.Config) { c.Media.SpeakerThresholdDBov = 128 }, "media.speaker_threshold_dbov", `config: media.speaker_threshold_dbov: 128 is out of range 0-127`},
		{"negative audio forwarding", func(c *config.Config) { c.Media.MaxAudioForwarded = -1 }, "media.max_audio_forwarded", `config: media.max_audio_forwarded: -1 is negative; use 0 to forward all`},
		{"udp port negative", func(c *config.Config) { c.WebRTC.UDPPort = -1 }, "webrtc.udp_port", `config: webrtc.udp_port: -1 is out of range 0-65535`},
		{"bind address ipv6", func(c *config.Config) { c.WebRTC.BindAddress = "::" }, "", ""},
		{"bind address host name", func(c *config.Config) { c.WebRTC.BindAddress = "example.org" }, "webrtc.bind_address", `config: webrtc.bind_address: "example.org" is not an IP address`},
		{"public ips", func(c *config.Config) { c.WebRTC.PublicIPs = []string{"198.51.100.1", "2001:db8::1"} }, "", ""},
		{"public ip bad", func(c *config.Config) { c.WebRTC.PublicIPs = []string{"198.51.100.1", "host"} }, "webrtc.public_ips[1]", `config: webrtc.public_ips[1]: "host" is not an IP address`},
		{"public ip unspecified", func(c *config.Config) { c.WebRTC.PublicIPs = []string{"0.0.0.0"} }, "webrtc.public_ips[0]", `config: webrtc.public_ips[0]: "0.0.0.0" cannot be advertised; give the address clients should reach`},
		{"public ip with zone", func(c *config.Config) { c.WebRTC.PublicIPs = []string{"fe80::1%eth0"} }, "webrtc.public_ips[0]", `config: webrtc.public_ips[0]: "fe80::1%eth0" is not an IP address`},
		{"stun", ice(config.ICEServer{URLs: []string{"stun:stun.example.org", "stuns:[2001:db8::1]:5349", "STUN:1.2.3.4:3478"}}), "", ""},
		{"turn", ice(config.ICEServer{URLs: []string{"turn:t.example.org?transport=udp"}, Username: "u", Credential: "c"}), "", ""},
		{"ice no urls", ice(config.ICEServer{}), "webrtc.ice_servers[0].urls", `config: webrtc.ice_servers[0].urls: must list at least one URL`},
		{"ice http url", ice(config.ICEServer{URLs: []string{"stun:a", "https://a"}}), "webrtc.ice_servers[0].urls[1]", `config: webrtc.ice_servers[0].urls[1]: "https://a": scheme "https" is not one of stun, stuns, turn, turns`},
		{"ice no scheme", ice(config.ICEServer{URLs: []string{"stun.example.org"}}), "webrtc.ice_servers[0].urls[0]", `config: webrtc.ice_servers[0].urls[0]: "stun.example.org" has no scheme; use stun:, stuns:, turn: or turns:`},
		{"ice no host", ice(config.ICEServer{URLs: []string{"stun:"}}), "webrtc.ice_servers[0].urls[0]", `config: webrtc.ice_servers[0].urls[0]: "stun:": "" is not a host name or IP address`},
		{"ice bad port", ice(config.ICEServer{URLs: []string{"stun:a:0"}}), "webrtc.ice_servers[0].urls[0]", `config: webrtc.ice_servers[0].urls[0]: "stun:a:0": port "0" is not a number in 1-65535`},
		{"stun with query", ice(config.ICEServer{URLs: []string{"stun:a?transport=udp"}}), "webrtc.ice_servers[0].urls[0]", `config: webrtc.ice_servers[0].urls[0]: "stun:a?transport=udp": only turn: and turns: URLs take a ?transport= query`},
		{"turn bad query", ice(config.ICEServer{URLs: []string{"turn:a?transport=sctp"}, Username: "u", Credential: "c"}), "webrtc.ice_servers[0].urls[0]", `config: webrtc.ice_servers[0].urls[0]: "turn:a?transport=sctp": query must be transport=udp or transport=tcp`},
		{"turn no username", ice(config.ICEServer{URLs: []string{"turns:a"}, Credential: "c"}), "webrtc.ice_servers[0].username", `config: webrtc.ice_servers[0].username: required for turn: and turns: URLs`},
		{"turn no credential", ice(config.ICEServer{URLs: []string{"turn:a"}, Username: "u"}), "webrtc.ice_servers[0].credential", `config: webrtc.ice_servers[0].credential: required for turn: and turns: URLs`},
		{"origins", func(c *config.Config) { c.CORS.AllowedOrigins = []string{"https://a.example", "http://localhost:3000"} }, "", ""},
		{"origin with path", func(c *config.Config) { c.CORS.AllowedOrigins = []string{"https://a.example/x"} }, "cors.allowed_origins[0]", `config: cors.allowed_origins[0]: "https://a.example/x" is not "*" or an origin like https://example.org`},
		{"origin trailing slash", func(c *config.Config) { c.CORS.AllowedOrigins = []string{"*", "https://a.example/"} }, "cors.allowed_origins[1]", `config: cors.allowed_origins[1]: "https://a.example/": origins have no trailing slash`},
		{"origin bare host", func(c *config.Config) { c.CORS.AllowedOrigins = []string{"a.example"} }, "cors.allowed_origins[0]", `config: cors.allowed_origins[0]: "a.example" is not "*" or an origin like https://example.org`},
		{"token", token(config.Token{Token: "t", Rooms: []string{"a-*", "b?", "[cd]"}, View: true}), "", ""},
		{"token empty", token(config.Token{Rooms: []string{"*"}, View: true}), "whip.tokens[0].token", `config: whip.tokens[0].token: must not be empty`},
		{"token with space", token(config.Token{Token: "a b", Rooms: []string{"*"}, View: true}), "whip.tokens[0].token", `config: whip.tokens[0].token: must not contain spaces or control characters`},
		{"token grants nothing", token(config.Token{Token: "t", Rooms: []string{"*"}}), "whip.tokens[0]", `config: whip.tokens[0]: grants nothing; set publish, view or both to true`},
		{"token no rooms", token(config.Token{Token: "t", Publish: true}), "whip.tokens[0].rooms", `config: whip.tokens[0].rooms: must list at least one room glob ("*" for every room)`},
		{"token empty room", token(config.Token{Token: "t", Rooms: []string{"a", ""}, Publish: true}), "whip.tokens[0].rooms[1]", `config: whip.tokens[0].rooms[1]: must not be empty`},
		{"token bad glob", token(config.Token{Token: "t", Rooms: []string{"a["}, Publish: true}), "whip.tokens[0].rooms[0]", `config: whip.tokens[0].rooms[0]: "a[" is not a valid glob: syntax error in pattern`},
		{"duplicate tokens", func(c *config.Config) {
			c.WHIP.Tokens = []config.Token{{Token: "t", Rooms: []string{"*"}, View: true}, {Token: "t", Rooms: []string{"*"}, Publish: true}}
		}, "whip.tokens[1].token", `config: whip.tokens[1].token: same token as whip.tokens[0]`},
		{"limits zero", func(c *config.Config) { c.Limits = config.Limits{} }, "", ""},
		{"limit negative", func(c *config.Config) { c.Limits.SessionsPerIP = -5 }, "limits.sessions_per_ip", `config: limits.sessions_per_ip: -5 is negative; use 0 for unlimited`},
		{"limit per room negative", func(c *config.Config) { c.Limits.SessionsPerRoom = -1 }, "limits.sessions_per_room", `config: limits.sessions_per_room: -1 is negative; use 0 for unlimited`},
		{"limit total negative", func(c *config.Config) { c.Limits.SessionsTotal = -1 }, "limits.sessions_total", `config: limits.sessions_total: -1 is negative; use 0 for unlimited`},
		{"log trace json", func(c *config.Config) { c.Log = config.Log{Level: "trace", Format: "json"} }, "", ""},
		{"log level bad", func(c *config.Config) { c.Log.Level = "verbose" }, "log.level", `config: log.level: "verbose" is not one of trace, debug, info, warn, error`},
		{"log format bad", func(c *config.Config) { c.Log.Format = "xml" }, "log.format", `config: log.format: "xml" is not one of console, json`},
	}
	checkValidate(t, tests)
}

// validateCase changes the default config and expects Validate to
// fail with key and msg, or to pass when both are empty.
type validateCase struct {
	name   string
	change func(c *config.Config)
	key    string // "" = valid
	msg    string
}

func checkValidate(t *testing.T, tests []validateCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := config.Default()
			tt.change(&c)
			err := c.Validate()
			if tt.key == "" && tt.msg == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			checkError(t, err, tt.key, tt.msg)
		})
	}
}
