package config

import (
	"fmt"
	"maps"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"
)

// MinLiveKitSecretLen is the shortest livekit.api_secret accepted: the
// secret keys HMAC-SHA256, and anything shorter than 32 characters is
// within reach of a brute-force search of the JWTs it signs.
const MinLiveKitSecretLen = 32

// LiveKit configures the Element Call front-end: the LiveKit signalling
// protocol on /rtc and the token service on /sfu/get and /get_token that
// trades a Matrix OpenID token for a LiveKit JWT. See docs/element-call.md.
type LiveKit struct {
	// Enabled turns the front-end on.
	Enabled bool `yaml:"enabled"`
	// APIKey is the JWTs' issuer (iss) and key ID.
	APIKey string `yaml:"api_key"`
	// APISecret is the HMAC secret that signs and verifies the JWTs.
	APISecret string `yaml:"api_secret"`
	// URL is the ws(s):// (or http(s)://) URL handed to clients as {url}.
	// Empty means ws:// + the main listener's address.
	URL string `yaml:"url"`
	// TokenTTL is how long a JWT from the token service stays valid.
	TokenTTL time.Duration `yaml:"token_ttl"`
	// Homeservers maps server names to homeserver base URLs for the OpenID
	// check, instead of federation discovery. Mapped names skip the guard
	// that refuses private and loopback addresses.
	Homeservers map[string]string `yaml:"homeservers"`
	// FullAccessHomeservers are the server names whose users may create
	// rooms; ["*"] is everyone. Other users may only join rooms that exist.
	FullAccessHomeservers []string `yaml:"full_access_homeservers"`
}

// defaultLiveKit is the livekit section of Default: off, with the values a
// deployment usually keeps.
func defaultLiveKit() LiveKit {
	return LiveKit{
		APIKey:                "focus",
		TokenTTL:              time.Hour,
		Homeservers:           map[string]string{},
		FullAccessHomeservers: []string{},
	}
}

// URLOrDefault is URL, or ws:// + listenAddr when it is empty. listenAddr
// is the address the main listener is bound to (host:port), so that port
// 0 resolves to the real port.
func (l LiveKit) URLOrDefault(listenAddr string) string {
	if l.URL != "" {
		return l.URL
	}
	return "ws://" + listenAddr
}

// validate checks the section. Values that are set are always checked;
// what a running front-end needs is required only when Enabled. listen is
// the main listener (the top-level listen key), which the default URL uses.
func (l LiveKit) validate(listen string) error {
	if strings.ContainsFunc(l.APIKey, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return errorf("livekit.api_key", "must not contain spaces or control characters")
	}
	if l.APISecret != "" && len(l.APISecret) < MinLiveKitSecretLen {
		return errorf("livekit.api_secret", fmt.Sprintf(
			"is %d characters; use at least %d (e.g. openssl rand -hex 32)", len(l.APISecret), MinLiveKitSecretLen))
	}
	if l.URL != "" {
		if err := checkLiveKitURL("livekit.url", l.URL); err != nil {
			return err
		}
	}
	if l.TokenTTL <= 0 {
		return errorf("livekit.token_ttl", fmt.Sprintf("%s must be positive (e.g. 1h)", l.TokenTTL))
	}
	for _, name := range slices.Sorted(maps.Keys(l.Homeservers)) {
		key := mapKey("livekit.homeservers", name)
		if err := CheckServerName(key, name); err != nil {
			return err
		}
		if err := checkHomeserverURL(key, l.Homeservers[name]); err != nil {
			return err
		}
	}
	for i, hs := range l.FullAccessHomeservers {
		key := indexKey("livekit.full_access_homeservers", i)
		if hs == "*" {
			if len(l.FullAccessHomeservers) > 1 {
				return errorf(key, `"*" already allows every homeserver; list it alone`)
			}
			continue
		}
		if err := CheckServerName(key, hs); err != nil {
			return err
		}
	}
	if !l.Enabled {
		return nil
	}
	switch {
	case l.APIKey == "":
		return errorf("livekit.api_key", "must be set when livekit.enabled is true")
	case l.APISecret == "":
		return errorf("livekit.api_secret", fmt.Sprintf(
			"must be set when livekit.enabled is true: at least %d random characters (e.g. openssl rand -hex 32)", MinLiveKitSecretLen))
	case len(l.FullAccessHomeservers) == 0:
		return errorf("livekit.full_access_homeservers",
			`must be set when livekit.enabled is true: the server names whose users may start calls (yours), or ["*"]`)
	}
	if l.URL == "" {
		if host, _, err := net.SplitHostPort(listen); err == nil && !reachableHost(host) {
			return errorf("livekit.url", fmt.Sprintf(
				"must be set when listen (%q) names no single host; give the ws:// or wss:// URL clients reach the focus at", listen))
		}
	}
	return nil
}

// checkLiveKitURL accepts the URL a LiveKit client connects to: ws, wss,
// http or https, with a host and optionally a path (a reverse proxy's
// prefix), without credentials, query or fragment.
func checkLiveKitURL(key, s string) error {
	if err := checkURL(key, s, "a ws://, wss://, http:// or https:// URL", "ws", "wss", "http", "https"); err != nil {
		return err
	}
	if u, _ := url.Parse(s); u.RawQuery != "" || u.Fragment != "" {
		return errorf(key, fmt.Sprintf("%q: the URL has no query or fragment", s))
	}
	return nil
}
