package config_test

import (
	"reflect"
	"testing"
	"time"

	"github.com/focus-sfu/focus/config"
)

const testSecret = "0123456789abcdef0123456789abcdef" // 32 characters

func TestLiveKitDefaultsAreOff(t *testing.T) {
	l := config.Default().LiveKit
	if l.Enabled {
		t.Error("livekit.enabled defaults to true; the standalone default must not change")
	}
	want := config.LiveKit{
		APIKey:                "focus",
		TokenTTL:              time.Hour,
		Homeservers:           map[string]string{},
		FullAccessHomeservers: []string{},
	}
	if !reflect.DeepEqual(l, want) {
		t.Errorf("livekit defaults = %+v, want %+v", l, want)
	}
	if got := l.URLOrDefault("127.0.0.1:8080"); got != "ws://127.0.0.1:8080" {
		t.Errorf("URLOrDefault = %q, want ws://127.0.0.1:8080", got)
	}
	l.URL = "wss://focus.example.org"
	if got := l.URLOrDefault("127.0.0.1:8080"); got != "wss://focus.example.org" {
		t.Errorf("URLOrDefault = %q, want the configured URL", got)
	}
}

func TestLiveKitValidate(t *testing.T) {
	// enabled is a minimal working livekit section.
	enabled := func(c *config.Config) {
		c.LiveKit.Enabled = true
		c.LiveKit.APISecret = testSecret
		c.LiveKit.FullAccessHomeservers = []string{"example.org"}
	}
	with := func(f func(l *config.LiveKit)) func(c *config.Config) {
		return func(c *config.Config) { enabled(c); f(&c.LiveKit) }
	}
	tests := []validateCase{
		{"disabled with nothing set", func(*config.Config) {}, "", ""},
		{"enabled minimal", enabled, "", ""},
		{"wildcard full access", with(func(l *config.LiveKit) { l.FullAccessHomeservers = []string{"*"} }), "", ""},
		{"wss url with path", with(func(l *config.LiveKit) { l.URL = "wss://example.org/livekit/sfu" }), "", ""},
		{"http url", with(func(l *config.LiveKit) { l.URL = "http://127.0.0.1:8080" }), "", ""},
		{"homeservers", with(func(l *config.LiveKit) {
			l.Homeservers = map[string]string{
				"localhost":        "http://127.0.0.1:8008",
				"example.org:8448": "https://matrix.example.org/prefix",
				"[::1]:8448":       "http://[::1]:8008",
			}
		}), "", ""},
		{"listen on all interfaces with url", func(c *config.Config) {
			enabled(c)
			c.Listen = ":8080"
			c.LiveKit.URL = "wss://focus.example.org"
		}, "", ""},
		{"long ttl", with(func(l *config.LiveKit) { l.TokenTTL = 24 * time.Hour }), "", ""},

		{"enabled without secret", with(func(l *config.LiveKit) { l.APISecret = "" }), "livekit.api_secret",
			"config: livekit.api_secret: must be set when livekit.enabled is true: at least 32 random characters (e.g. openssl rand -hex 32)"},
		{"short secret", with(func(l *config.LiveKit) { l.APISecret = "secret" }), "livekit.api_secret",
			"config: livekit.api_secret: is 6 characters; use at least 32 (e.g. openssl rand -hex 32)"},
		{"short secret checked even when disabled", func(c *config.Config) { c.LiveKit.APISecret = testSecret[:31] }, "livekit.api_secret",
			"config: livekit.api_secret: is 31 characters; use at least 32 (e.g. openssl rand -hex 32)"},
		{"enabled without key", with(func(l *config.LiveKit) { l.APIKey = "" }), "livekit.api_key",
			"config: livekit.api_key: must be set when livekit.enabled is true"},
		{"key with space", with(func(l *config.LiveKit) { l.APIKey = "my key" }), "livekit.api_key",
			"config: livekit.api_key: must not contain spaces or control characters"},
		{"enabled without full access", with(func(l *config.LiveKit) { l.FullAccessHomeservers = nil }), "livekit.full_access_homeservers",
			`config: livekit.full_access_homeservers: must be set when livekit.enabled is true: the server names whose users may start calls (yours), or ["*"]`},
		{"wildcard with others", with(func(l *config.LiveKit) { l.FullAccessHomeservers = []string{"example.org", "*"} }), "livekit.full_access_homeservers[1]",
			`config: livekit.full_access_homeservers[1]: "*" already allows every homeserver; list it alone`},
		{"full access not a server name", with(func(l *config.LiveKit) { l.FullAccessHomeservers = []string{"https://example.org"} }), "livekit.full_access_homeservers[0]",
			`config: livekit.full_access_homeservers[0]: "https://example.org" is not a server name (host or host:port)`},
		{"url ftp", with(func(l *config.LiveKit) { l.URL = "ftp://example.org" }), "livekit.url",
			`config: livekit.url: "ftp://example.org" is not a ws://, wss://, http:// or https:// URL`},
		{"url without scheme", with(func(l *config.LiveKit) { l.URL = "focus.example.org:443" }), "livekit.url",
			`config: livekit.url: "focus.example.org:443" is not a ws://, wss://, http:// or https:// URL`},
		{"url with query", with(func(l *config.LiveKit) { l.URL = "wss://example.org/?a=b" }), "livekit.url",
			`config: livekit.url: "wss://example.org/?a=b": the URL has no query or fragment`},
		{"url with credentials", with(func(l *config.LiveKit) { l.URL = "wss://u:p@example.org" }), "livekit.url",
			`config: livekit.url: "wss://u:p@example.org" is not a ws://, wss://, http:// or https:// URL`},
		{"url bad port", with(func(l *config.LiveKit) { l.URL = "ws://example.org:0" }), "livekit.url",
			`config: livekit.url: "ws://example.org:0": port "0" is not a number in 1-65535`},
		{"url bad host", with(func(l *config.LiveKit) { l.URL = "ws://exa_mple.org" }), "livekit.url",
			`config: livekit.url: "ws://exa_mple.org": "exa_mple.org" is not a host name or IP address`},
		{"url checked even when disabled", func(c *config.Config) { c.LiveKit.URL = "example.org" }, "livekit.url",
			`config: livekit.url: "example.org" is not a ws://, wss://, http:// or https:// URL`},
		{"default url needs a host", func(c *config.Config) { enabled(c); c.Listen = "0.0.0.0:8080" }, "livekit.url",
			`config: livekit.url: must be set when listen ("0.0.0.0:8080") names no single host; give the ws:// or wss:// URL clients reach the focus at`},
		{"ttl zero", with(func(l *config.LiveKit) { l.TokenTTL = 0 }), "livekit.token_ttl",
			"config: livekit.token_ttl: 0s must be positive (e.g. 1h)"},
		{"ttl negative", func(c *config.Config) { c.LiveKit.TokenTTL = -time.Minute }, "livekit.token_ttl",
			"config: livekit.token_ttl: -1m0s must be positive (e.g. 1h)"},
		{"homeserver name bad", with(func(l *config.LiveKit) { l.Homeservers = map[string]string{"@u:x": "http://x"} }), `livekit.homeservers["@u:x"]`,
			`config: livekit.homeservers["@u:x"]: "@u:x" is not a server name (host or host:port)`},
		{"homeserver url not http", with(func(l *config.LiveKit) { l.Homeservers = map[string]string{"localhost": "127.0.0.1:8008"} }), `livekit.homeservers["localhost"]`,
			`config: livekit.homeservers["localhost"]: "127.0.0.1:8008" is not an http:// or https:// URL`},
		{"homeserver url ws", with(func(l *config.LiveKit) { l.Homeservers = map[string]string{"localhost": "ws://127.0.0.1:8008"} }), `livekit.homeservers["localhost"]`,
			`config: livekit.homeservers["localhost"]: "ws://127.0.0.1:8008" is not an http:// or https:// URL`},
		{"homeserver url empty", with(func(l *config.LiveKit) { l.Homeservers = map[string]string{"localhost": ""} }), `livekit.homeservers["localhost"]`,
			`config: livekit.homeservers["localhost"]: "" is not an http:// or https:// URL`},
		{"homeserver url with query", with(func(l *config.LiveKit) { l.Homeservers = map[string]string{"localhost": "http://hs/?x=1"} }), `livekit.homeservers["localhost"]`,
			`config: livekit.homeservers["localhost"]: "http://hs/?x=1": a homeserver URL has no query or fragment`},
		{"first bad homeserver in name order", with(func(l *config.LiveKit) {
			l.Homeservers = map[string]string{"b.example": "x", "a.example": "y"}
		}), `livekit.homeservers["a.example"]`,
			`config: livekit.homeservers["a.example"]: "y" is not an http:// or https:// URL`},
	}
	checkValidate(t, tests)
}

func TestLiveKitParse(t *testing.T) {
	c, err := config.Parse([]byte(`
livekit:
  enabled: true
  api_secret: "` + testSecret + `"
  token_ttl: 1h30m
  homeservers:
    localhost: "http://127.0.0.1:8008"
    "example.org:8448": "https://matrix.example.org"
  full_access_homeservers: ["*"]
`))
	if err != nil {
		t.Fatal(err)
	}
	want := config.Default().LiveKit
	want.Enabled = true
	want.APISecret = testSecret
	want.TokenTTL = 90 * time.Minute
	want.Homeservers = map[string]string{"localhost": "http://127.0.0.1:8008", "example.org:8448": "https://matrix.example.org"}
	want.FullAccessHomeservers = []string{"*"}
	if !reflect.DeepEqual(c.LiveKit, want) {
		t.Errorf("livekit = %+v\nwant %+v", c.LiveKit, want)
	}

	// null keeps the defaults; {} replaces the map with an empty one.
	c, err = config.Parse([]byte("livekit:\n  token_ttl: ~\n  homeservers: {}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.LiveKit.TokenTTL != time.Hour || c.LiveKit.Homeservers == nil || len(c.LiveKit.Homeservers) != 0 {
		t.Errorf("livekit = %+v", c.LiveKit)
	}
}

func TestLiveKitParseErrors(t *testing.T) {
	tests := []struct {
		name, yaml, key, msg string
	}{
		{"unknown key", "livekit:\n  secret: x\n", "livekit.secret", `config: unknown key "livekit.secret"`},
		{"ttl without unit", "livekit:\n  token_ttl: 3600\n", "livekit.token_ttl",
			`config: livekit.token_ttl: expected a duration like 1h or 30m, got "3600"`},
		{"ttl not a duration", "livekit:\n  token_ttl: an hour\n", "livekit.token_ttl",
			`config: livekit.token_ttl: expected a duration like 1h or 30m, got "an hour"`},
		{"ttl a list", "livekit:\n  token_ttl: [1h]\n", "livekit.token_ttl",
			"config: livekit.token_ttl: expected a duration like 1h or 30m, got a list"},
		{"homeservers a list", "livekit:\n  homeservers: [localhost]\n", "livekit.homeservers",
			"config: livekit.homeservers: expected a mapping, got a list"},
		{"homeserver url a mapping", "livekit:\n  homeservers:\n    localhost: {url: x}\n", `livekit.homeservers["localhost"]`,
			`config: livekit.homeservers["localhost"]: expected a string, got a mapping`},
		{"homeserver twice", "livekit:\n  homeservers:\n    localhost: http://a\n    localhost: http://b\n", `livekit.homeservers["localhost"]`,
			`config: livekit.homeservers["localhost"]: set more than once`},
		{"homeserver key a list", "livekit:\n  homeservers:\n    ? [a]\n    : http://a\n", "livekit.homeservers",
			"config: livekit.homeservers: keys must be plain strings, got a list"},
		{"homeserver merge key", "livekit:\n  homeservers:\n    <<: {a: http://a}\n", `livekit.homeservers["<<"]`,
			`config: livekit.homeservers["<<"]: merge keys are not supported`},
		{"homeserver checked after parse", "livekit:\n  homeservers:\n    localhost: ~\n", `livekit.homeservers["localhost"]`,
			`config: livekit.homeservers["localhost"]: "" is not an http:// or https:// URL`},
		{"enabled alone", "livekit:\n  enabled: true\n", "livekit.api_secret",
			"config: livekit.api_secret: must be set when livekit.enabled is true: at least 32 random characters (e.g. openssl rand -hex 32)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := config.Parse([]byte(tt.yaml))
			checkError(t, err, tt.key, tt.msg)
		})
	}
}
