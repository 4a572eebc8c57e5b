package config

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// Matrix configures the Matrix front-end: the focus as an appservice bot
// that MSC3898 clients call over to-device messages. See docs/matrix.md.
type Matrix struct {
	// Enabled turns the Matrix front-end on. Off, the focus is standalone.
	Enabled bool `yaml:"enabled"`
	// HomeserverURL is the client-server API base URL of the homeserver,
	// e.g. http://127.0.0.1:8008.
	HomeserverURL string `yaml:"homeserver_url"`
	// ServerName is the homeserver's server name, the part after the colon
	// in user IDs (example.org).
	ServerName string `yaml:"server_name"`
	// Registration is the path of the appservice registration file, from
	// which as_token and hs_token are read. Either this or both tokens.
	Registration string `yaml:"registration"`
	// ASToken and HSToken are the appservice tokens, inline instead of a
	// registration file.
	ASToken string `yaml:"as_token"`
	HSToken string `yaml:"hs_token"`
	// BotLocalpart is the localpart of the focus's user (@focus:example.org).
	BotLocalpart string `yaml:"bot_localpart"`
	// DeviceID is the device the bot logs in as; clients address it.
	DeviceID string `yaml:"device_id"`
	// AppServiceListen is the host:port the homeserver pushes transactions
	// to. It is a listener of its own, apart from listen.
	AppServiceListen string `yaml:"appservice_listen"`
	// AppServiceURL is the URL written into the registration. Empty means
	// http:// + AppServiceListen.
	AppServiceURL string `yaml:"appservice_url"`
	// DataDir keeps the sync token, processed transaction IDs and the
	// device's access token (and later its keys).
	DataDir string `yaml:"data_dir"`
	// AllowedHomeservers are server names whose users may use the focus.
	// Empty allows every homeserver.
	AllowedHomeservers []string `yaml:"allowed_homeservers"`
	// AllowedUsers are path.Match globs on user IDs. Empty allows everyone.
	AllowedUsers []string `yaml:"allowed_users"`
	// AllowedRooms are path.Match globs on room IDs. Empty allows every room.
	AllowedRooms []string `yaml:"allowed_rooms"`
	// AutoJoin joins rooms the bot is invited to, when the policy allows
	// the inviter and the room.
	AutoJoin bool `yaml:"auto_join"`
	// MaxParticipantsPerConference caps the devices in one conference;
	// 0 = unlimited.
	MaxParticipantsPerConference int `yaml:"max_participants_per_conference"`
	// MaxConferences caps the concurrent Matrix conferences; 0 = unlimited.
	MaxConferences int `yaml:"max_conferences"`
}

// defaultMatrix is the matrix section of Default: off, with the values a
// Matrix deployment usually keeps.
func defaultMatrix() Matrix {
	return Matrix{
		BotLocalpart:                 "focus",
		DeviceID:                     "FOCUS",
		AppServiceListen:             "127.0.0.1:8009",
		DataDir:                      "./focus-data",
		AllowedHomeservers:           []string{},
		AllowedUsers:                 []string{},
		AllowedRooms:                 []string{},
		AutoJoin:                     true,
		MaxParticipantsPerConference: 100,
		MaxConferences:               100,
	}
}

// AppServiceURLOrDefault is AppServiceURL, or http:// + AppServiceListen when
// it is empty.
func (m Matrix) AppServiceURLOrDefault() string {
	if m.AppServiceURL != "" {
		return m.AppServiceURL
	}
	return "http://" + m.AppServiceListen
}

// BotUserID is the bot's full user ID, @<bot_localpart>:<server_name>.
func (m Matrix) BotUserID() string {
	return "@" + m.BotLocalpart + ":" + m.ServerName
}

// validate checks the section. Values that are set are always checked;
// what a running front-end needs is required only when Enabled.
func (m Matrix) validate() error {
	if m.HomeserverURL != "" {
		if err := checkHomeserverURL("matrix.homeserver_url", m.HomeserverURL); err != nil {
			return err
		}
	}
	if m.ServerName != "" {
		if err := CheckServerName("matrix.server_name", m.ServerName); err != nil {
			return err
		}
	}
	if m.Registration != "" && (m.ASToken != "" || m.HSToken != "") {
		key := "matrix.as_token"
		if m.ASToken == "" {
			key = "matrix.hs_token"
		}
		return errorf(key, "set either matrix.registration or as_token and hs_token, not both")
	}
	for _, tok := range []struct{ key, v string }{{"matrix.as_token", m.ASToken}, {"matrix.hs_token", m.HSToken}} {
		if strings.ContainsFunc(tok.v, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
			return errorf(tok.key, "must not contain spaces or control characters")
		}
	}
	if m.ASToken != "" && m.HSToken == "" {
		return errorf("matrix.hs_token", "must be set with matrix.as_token")
	}
	if m.HSToken != "" && m.ASToken == "" {
		return errorf("matrix.as_token", "must be set with matrix.hs_token")
	}
	if m.ASToken != "" && m.ASToken == m.HSToken {
		return errorf("matrix.hs_token", "must differ from matrix.as_token")
	}
	if err := checkLocalpart("matrix.bot_localpart", m.BotLocalpart); err != nil {
		return err
	}
	if m.DeviceID == "" {
		return errorf("matrix.device_id", "must not be empty")
	}
	if strings.ContainsFunc(m.DeviceID, func(r rune) bool { return r <= ' ' || r == 0x7f || r == '/' }) {
		return errorf("matrix.device_id", fmt.Sprintf("%q must not contain spaces, slashes or control characters", m.DeviceID))
	}
	if m.AppServiceListen == "" {
		return errorf("matrix.appservice_listen", "must be set (host:port)")
	}
	if err := checkHostPort("matrix.appservice_listen", m.AppServiceListen); err != nil {
		return err
	}
	if m.AppServiceURL != "" {
		if err := checkHTTPURL("matrix.appservice_url", m.AppServiceURL); err != nil {
			return err
		}
	} else if host, _, _ := net.SplitHostPort(m.AppServiceListen); !reachableHost(host) {
		return errorf("matrix.appservice_url", fmt.Sprintf(
			"must be set when matrix.appservice_listen (%q) names no single host; give the URL the homeserver reaches the focus at",
			m.AppServiceListen))
	}
	for i, hs := range m.AllowedHomeservers {
		if err := CheckServerName(indexKey("matrix.allowed_homeservers", i), hs); err != nil {
			return err
		}
	}
	for i, g := range m.AllowedUsers {
		if err := checkGlob(g); err != nil {
			return errorf(indexKey("matrix.allowed_users", i), err.Error())
		}
	}
	for i, g := range m.AllowedRooms {
		if err := checkGlob(g); err != nil {
			return errorf(indexKey("matrix.allowed_rooms", i), err.Error())
		}
	}
	for _, f := range []struct {
		key string
		v   int
	}{
		{"matrix.max_participants_per_conference", m.MaxParticipantsPerConference},
		{"matrix.max_conferences", m.MaxConferences},
	} {
		if f.v < 0 {
			return errorf(f.key, fmt.Sprintf("%d is negative; use 0 for unlimited", f.v))
		}
	}
	if !m.Enabled {
		return nil
	}
	switch {
	case m.HomeserverURL == "":
		return errorf("matrix.homeserver_url", "must be set when matrix.enabled is true (e.g. http://127.0.0.1:8008)")
	case m.ServerName == "":
		return errorf("matrix.server_name", "must be set when matrix.enabled is true (the part after the colon in user IDs)")
	case m.Registration == "" && m.ASToken == "":
		return errorf("matrix.registration", "must be set when matrix.enabled is true, unless as_token and hs_token are; run focus generate-registration")
	case m.DataDir == "":
		return errorf("matrix.data_dir", "must be set when matrix.enabled is true")
	}
	return nil
}

// reachableHost reports whether host can stand in a URL another process
// uses to reach this one: not empty, not 0.0.0.0 or ::.
func reachableHost(host string) bool {
	if host == "" {
		return false
	}
	if a, err := netip.ParseAddr(host); err == nil && a.IsUnspecified() {
		return false
	}
	return true
}

func checkHomeserverURL(key, s string) error {
	if err := checkHTTPURL(key, s); err != nil {
		return err
	}
	u, _ := url.Parse(s)
	if u.RawQuery != "" || u.Fragment != "" {
		return errorf(key, fmt.Sprintf("%q: a homeserver URL has no query or fragment", s))
	}
	return nil
}

func checkHTTPURL(key, s string) error {
	return checkURL(key, s, "an http:// or https:// URL", "http", "https")
}

// checkURL accepts an absolute URL with one of schemes, a valid host and
// port, and no credentials; what names the schemes for the error.
func checkURL(key, s, what string, schemes ...string) error {
	u, err := url.Parse(s)
	if err != nil || !slices.Contains(schemes, u.Scheme) || u.Host == "" || u.User != nil {
		return errorf(key, fmt.Sprintf("%q is not %s", s, what))
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return errorf(key, fmt.Sprintf("%q: port %q is not a number in 1-65535", s, p))
		}
	}
	if !validHost(u.Hostname()) {
		return errorf(key, fmt.Sprintf("%q: %q is not a host name or IP address", s, u.Hostname()))
	}
	return nil
}

// CheckServerName checks a Matrix server name: a host name or IP literal
// with an optional port (example.org, example.org:8448, [::1]:8448). The
// error is a *Error for key.
func CheckServerName(key, s string) error {
	host, port := s, ""
	if i := strings.LastIndexByte(s, ':'); i >= 0 && !strings.HasSuffix(s, "]") {
		host, port = s[:i], s[i+1:]
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || strings.HasPrefix(port, "+") {
			return errorf(key, fmt.Sprintf("%q is not a server name (host or host:port)", s))
		}
	}
	if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		if a, err := netip.ParseAddr(host[1 : len(host)-1]); err == nil && a.Is6() && a.Zone() == "" {
			return nil
		}
		return errorf(key, fmt.Sprintf("%q is not a server name (host or host:port)", s))
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if a.Is4() {
			return nil
		}
		return errorf(key, fmt.Sprintf("%q: write an IPv6 address in brackets, as [%s]", s, host))
	}
	if !validHost(host) || strings.HasSuffix(host, ".") {
		return errorf(key, fmt.Sprintf("%q is not a server name (host or host:port)", s))
	}
	return nil
}

// checkLocalpart accepts the user ID localparts the Matrix spec allows for
// new users: lower-case letters, digits and ._=-/+.
func checkLocalpart(key, s string) error {
	if s == "" {
		return errorf(key, "must not be empty")
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || strings.ContainsRune("._=-/+", r)) {
			return errorf(key, fmt.Sprintf("%q may only contain a-z, 0-9 and ._=-/+", s))
		}
	}
	return nil
}
