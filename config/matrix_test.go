package config_test

import (
	"testing"

	"github.com/focus-sfu/focus/config"
)

func TestMatrixDefaultsAreOff(t *testing.T) {
	m := config.Default().Matrix
	if m.Enabled {
		t.Error("matrix.enabled defaults to true; the standalone default must not change")
	}
	if m.BotLocalpart != "focus" || m.DeviceID != "FOCUS" || m.AppServiceListen != "127.0.0.1:8009" ||
		m.DataDir != "./focus-data" || !m.AutoJoin {
		t.Errorf("matrix defaults = %+v", m)
	}
	if got := m.AppServiceURLOrDefault(); got != "http://127.0.0.1:8009" {
		t.Errorf("AppServiceURLOrDefault() = %q, want http://127.0.0.1:8009", got)
	}
	m.AppServiceURL = "https://focus.example.org/as"
	if got := m.AppServiceURLOrDefault(); got != "https://focus.example.org/as" {
		t.Errorf("AppServiceURLOrDefault() = %q, want the configured URL", got)
	}
	m.ServerName = "example.org"
	if got := m.BotUserID(); got != "@focus:example.org" {
		t.Errorf("BotUserID() = %q", got)
	}
}

func TestMatrixValidate(t *testing.T) {
	// enabled is a minimal working Matrix section.
	enabled := func(c *config.Config) {
		c.Matrix.Enabled = true
		c.Matrix.HomeserverURL = "http://127.0.0.1:8008"
		c.Matrix.ServerName = "localhost"
		c.Matrix.Registration = "registration.yaml"
	}
	with := func(f func(m *config.Matrix)) func(c *config.Config) {
		return func(c *config.Config) { enabled(c); f(&c.Matrix) }
	}
	tests := []validateCase{
		{"disabled with nothing set", func(*config.Config) {}, "", ""},
		{"enabled minimal", enabled, "", ""},
		{"inline tokens", with(func(m *config.Matrix) { m.Registration = ""; m.ASToken = "a"; m.HSToken = "h" }), "", ""},
		{"server name with port", with(func(m *config.Matrix) { m.ServerName = "example.org:8448" }), "", ""},
		{"server name ipv4", with(func(m *config.Matrix) { m.ServerName = "192.0.2.1:8448" }), "", ""},
		{"server name ipv6", with(func(m *config.Matrix) { m.ServerName = "[2001:db8::1]:8448" }), "", ""},
		{"https homeserver with path", with(func(m *config.Matrix) { m.HomeserverURL = "https://example.org/matrix" }), "", ""},
		{"appservice listen all interfaces with url", with(func(m *config.Matrix) {
			m.AppServiceListen = ":8009"
			m.AppServiceURL = "http://focus:8009"
		}), "", ""},
		{"policy", with(func(m *config.Matrix) {
			m.AllowedHomeservers = []string{"example.org", "localhost:8448"}
			m.AllowedUsers = []string{"@*:example.org"}
			m.AllowedRooms = []string{"!*:example.org"}
		}), "", ""},
		{"limits zero", with(func(m *config.Matrix) { m.MaxConferences = 0; m.MaxParticipantsPerConference = 0 }), "", ""},

		{"enabled without homeserver", with(func(m *config.Matrix) { m.HomeserverURL = "" }), "matrix.homeserver_url",
			"config: matrix.homeserver_url: must be set when matrix.enabled is true (e.g. http://127.0.0.1:8008)"},
		{"enabled without server name", with(func(m *config.Matrix) { m.ServerName = "" }), "matrix.server_name",
			"config: matrix.server_name: must be set when matrix.enabled is true (the part after the colon in user IDs)"},
		{"enabled without tokens", with(func(m *config.Matrix) { m.Registration = "" }), "matrix.registration",
			"config: matrix.registration: must be set when matrix.enabled is true, unless as_token and hs_token are; run focus generate-registration"},
		{"enabled without data dir", with(func(m *config.Matrix) { m.DataDir = "" }), "matrix.data_dir",
			"config: matrix.data_dir: must be set when matrix.enabled is true"},
		{"homeserver not a URL", with(func(m *config.Matrix) { m.HomeserverURL = "localhost:8008" }), "matrix.homeserver_url",
			`config: matrix.homeserver_url: "localhost:8008" is not an http:// or https:// URL`},
		{"homeserver with query", with(func(m *config.Matrix) { m.HomeserverURL = "http://hs?x=1" }), "matrix.homeserver_url",
			`config: matrix.homeserver_url: "http://hs?x=1": a homeserver URL has no query or fragment`},
		{"homeserver bad port", with(func(m *config.Matrix) { m.HomeserverURL = "http://hs:0" }), "matrix.homeserver_url",
			`config: matrix.homeserver_url: "http://hs:0": port "0" is not a number in 1-65535`},
		{"homeserver checked even when disabled", func(c *config.Config) { c.Matrix.HomeserverURL = "ftp://hs" }, "matrix.homeserver_url",
			`config: matrix.homeserver_url: "ftp://hs" is not an http:// or https:// URL`},
		{"server name with scheme", with(func(m *config.Matrix) { m.ServerName = "https://example.org" }), "matrix.server_name",
			`config: matrix.server_name: "https://example.org" is not a server name (host or host:port)`},
		{"server name bad port", with(func(m *config.Matrix) { m.ServerName = "example.org:99999" }), "matrix.server_name",
			`config: matrix.server_name: "example.org:99999" is not a server name (host or host:port)`},
		{"server name bare ipv6", with(func(m *config.Matrix) { m.ServerName = "2001:db8::1" }), "matrix.server_name",
			`config: matrix.server_name: "2001:db8::1" is not a server name (host or host:port)`},
		{"registration and tokens", with(func(m *config.Matrix) { m.ASToken = "a"; m.HSToken = "h" }), "matrix.as_token",
			"config: matrix.as_token: set either matrix.registration or as_token and hs_token, not both"},
		{"registration and hs token", with(func(m *config.Matrix) { m.HSToken = "h" }), "matrix.hs_token",
			"config: matrix.hs_token: set either matrix.registration or as_token and hs_token, not both"},
		{"as token alone", with(func(m *config.Matrix) { m.Registration = ""; m.ASToken = "a" }), "matrix.hs_token",
			"config: matrix.hs_token: must be set with matrix.as_token"},
		{"hs token alone", with(func(m *config.Matrix) { m.Registration = ""; m.HSToken = "h" }), "matrix.as_token",
			"config: matrix.as_token: must be set with matrix.hs_token"},
		{"same tokens", with(func(m *config.Matrix) { m.Registration = ""; m.ASToken = "t"; m.HSToken = "t" }), "matrix.hs_token",
			"config: matrix.hs_token: must differ from matrix.as_token"},
		{"token with space", with(func(m *config.Matrix) { m.Registration = ""; m.ASToken = "a b"; m.HSToken = "h" }), "matrix.as_token",
			"config: matrix.as_token: must not contain spaces or control characters"},
		{"bot localpart empty", with(func(m *config.Matrix) { m.BotLocalpart = "" }), "matrix.bot_localpart",
			"config: matrix.bot_localpart: must not be empty"},
		{"bot localpart upper case", with(func(m *config.Matrix) { m.BotLocalpart = "Focus" }), "matrix.bot_localpart",
			`config: matrix.bot_localpart: "Focus" may only contain a-z, 0-9 and ._=-/+`},
		{"bot localpart full user id", with(func(m *config.Matrix) { m.BotLocalpart = "@focus:example.org" }), "matrix.bot_localpart",
			`config: matrix.bot_localpart: "@focus:example.org" may only contain a-z, 0-9 and ._=-/+`},
		{"device id empty", with(func(m *config.Matrix) { m.DeviceID = "" }), "matrix.device_id",
			"config: matrix.device_id: must not be empty"},
		{"device id with space", with(func(m *config.Matrix) { m.DeviceID = "MY DEVICE" }), "matrix.device_id",
			`config: matrix.device_id: "MY DEVICE" must not contain spaces, slashes or control characters`},
		{"appservice listen empty", with(func(m *config.Matrix) { m.AppServiceListen = "" }), "matrix.appservice_listen",
			"config: matrix.appservice_listen: must be set (host:port)"},
		{"appservice listen no port", with(func(m *config.Matrix) { m.AppServiceListen = "127.0.0.1" }), "matrix.appservice_listen",
			`config: matrix.appservice_listen: "127.0.0.1" is not host:port`},
		{"appservice listen all interfaces without url", with(func(m *config.Matrix) { m.AppServiceListen = "0.0.0.0:8009" }), "matrix.appservice_url",
			`config: matrix.appservice_url: must be set when matrix.appservice_listen ("0.0.0.0:8009") names no single host; give the URL the homeserver reaches the focus at`},
		{"appservice url not http", with(func(m *config.Matrix) { m.AppServiceURL = "focus:8009" }), "matrix.appservice_url",
			`config: matrix.appservice_url: "focus:8009" is not an http:// or https:// URL`},
		{"allowed homeserver bad", with(func(m *config.Matrix) { m.AllowedHomeservers = []string{"example.org", "@u:x"} }), "matrix.allowed_homeservers[1]",
			`config: matrix.allowed_homeservers[1]: "@u:x" is not a server name (host or host:port)`},
		{"allowed user bad glob", with(func(m *config.Matrix) { m.AllowedUsers = []string{"@[a:x"} }), "matrix.allowed_users[0]",
			`config: matrix.allowed_users[0]: "@[a:x" is not a valid glob: syntax error in pattern`},
		{"allowed room empty", with(func(m *config.Matrix) { m.AllowedRooms = []string{"!a:x", ""} }), "matrix.allowed_rooms[1]",
			"config: matrix.allowed_rooms[1]: must not be empty"},
		{"max participants negative", with(func(m *config.Matrix) { m.MaxParticipantsPerConference = -1 }), "matrix.max_participants_per_conference",
			"config: matrix.max_participants_per_conference: -1 is negative; use 0 for unlimited"},
		{"max conferences negative", with(func(m *config.Matrix) { m.MaxConferences = -2 }), "matrix.max_conferences",
			"config: matrix.max_conferences: -2 is negative; use 0 for unlimited"},
	}
	checkValidate(t, tests)
}

func TestMatrixParseErrors(t *testing.T) {
	tests := []struct {
		name, yaml, key, msg string
	}{
		{"unknown key", "matrix:\n  homeserver: x\n", "matrix.homeserver", `config: unknown key "matrix.homeserver"`},
		{"enabled not a bool", "matrix:\n  enabled: yes\n", "matrix.enabled", `config: matrix.enabled: expected true or false, got "yes"`},
		{"users not a list", "matrix:\n  allowed_users: \"@a:b\"\n", "matrix.allowed_users", `config: matrix.allowed_users: expected a list, got the quoted string "@a:b"`},
		{"enabled alone", "matrix:\n  enabled: true\n", "matrix.homeserver_url",
			"config: matrix.homeserver_url: must be set when matrix.enabled is true (e.g. http://127.0.0.1:8008)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := config.Parse([]byte(tt.yaml))
			checkError(t, err, tt.key, tt.msg)
		})
	}
}
