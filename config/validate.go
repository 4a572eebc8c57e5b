package config

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
)

// logLevels are the accepted values of log.level, least severe first.
var logLevels = []string{"trace", "debug", "info", "warn", "error"}

// logFormats are the accepted values of log.format.
var logFormats = []string{"console", "json"}

// Validate checks every value and returns the first problem as an *Error.
func (c Config) Validate() error {
	if c.Listen == "" {
		return errorf("listen", "must be set (host:port)")
	}
	if err := checkHostPort("listen", c.Listen); err != nil {
		return err
	}
	if c.Admin.Listen != "" {
		if err := checkHostPort("admin.listen", c.Admin.Listen); err != nil {
			return err
		}
	}
	if err := c.WebRTC.validate(); err != nil {
		return err
	}
	for i, o := range c.CORS.AllowedOrigins {
		if err := checkOrigin(indexKey("cors.allowed_origins", i), o); err != nil {
			return err
		}
	}
	if err := c.WHIP.validate(); err != nil {
		return err
	}
	if err := c.Limits.validate(); err != nil {
		return err
	}
	if err := c.Media.validate(); err != nil {
		return err
	}
	if !slices.Contains(logLevels, c.Log.Level) {
		return errorf("log.level", fmt.Sprintf("%q is not one of %s", c.Log.Level, strings.Join(logLevels, ", ")))
	}
	if !slices.Contains(logFormats, c.Log.Format) {
		return errorf("log.format", fmt.Sprintf("%q is not one of %s", c.Log.Format, strings.Join(logFormats, ", ")))
	}
	if err := c.Matrix.validate(); err != nil {
		return err
	}
	if err := c.LiveKit.validate(c.Listen); err != nil {
		return err
	}
	if err := c.Mesh.validate(); err != nil {
		return err
	}
	return validateSharedRooms(c.SharedRooms)
}

func (w WebRTC) validate() error {
	if err := checkPort("webrtc.udp_port", w.UDPPort); err != nil {
		return err
	}
	if w.BindAddress != "" {
		if _, err := netip.ParseAddr(w.BindAddress); err != nil {
			return errorf("webrtc.bind_address", fmt.Sprintf("%q is not an IP address", w.BindAddress))
		}
	}
	for i, ip := range w.PublicIPs {
		key := indexKey("webrtc.public_ips", i)
		a, err := netip.ParseAddr(ip)
		if err != nil || a.Zone() != "" {
			return errorf(key, fmt.Sprintf("%q is not an IP address", ip))
		}
		if a.IsUnspecified() {
			return errorf(key, fmt.Sprintf("%q cannot be advertised; give the address clients should reach", ip))
		}
	}
	for i, s := range w.ICEServers {
		if err := s.validate(indexKey("webrtc.ice_servers", i)); err != nil {
			return err
		}
	}
	return nil
}

func (s ICEServer) validate(key string) error {
	if len(s.URLs) == 0 {
		return errorf(key+".urls", "must list at least one URL")
	}
	turn := false
	for i, u := range s.URLs {
		isTURN, err := checkICEURL(u)
		if err != nil {
			return errorf(indexKey(key+".urls", i), err.Error())
		}
		turn = turn || isTURN
	}
	if turn && s.Username == "" {
		return errorf(key+".username", "required for turn: and turns: URLs")
	}
	if turn && s.Credential == "" {
		return errorf(key+".credential", "required for turn: and turns: URLs")
	}
	return nil
}

// checkICEURL checks a stun:, stuns:, turn: or turns: URL (RFC 7064, RFC
// 7065) and reports whether it is a TURN URL.
func checkICEURL(u string) (turn bool, err error) {
	scheme, rest, ok := strings.Cut(u, ":")
	scheme = strings.ToLower(scheme)
	switch {
	case !ok:
		return false, fmt.Errorf("%q has no scheme; use stun:, stuns:, turn: or turns:", u)
	case scheme == "turn" || scheme == "turns":
		turn = true
	case scheme != "stun" && scheme != "stuns":
		return false, fmt.Errorf("%q: scheme %q is not one of stun, stuns, turn, turns", u, scheme)
	}
	hostport, query, hasQuery := strings.Cut(rest, "?")
	if hasQuery {
		if !turn {
			return false, fmt.Errorf("%q: only turn: and turns: URLs take a ?transport= query", u)
		}
		if query != "transport=udp" && query != "transport=tcp" {
			return false, fmt.Errorf("%q: query must be transport=udp or transport=tcp", u)
		}
	}
	host := hostport
	if h, port, err := net.SplitHostPort(hostport); err == nil {
		if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
			return false, fmt.Errorf("%q: port %q is not a number in 1-65535", u, port)
		}
		host = h
	}
	if !validHost(host) {
		return false, fmt.Errorf("%q: %q is not a host name or IP address", u, host)
	}
	return turn, nil
}

func checkOrigin(key, o string) error {
	if o == "*" {
		return nil
	}
	u, err := url.Parse(o)
	if err != nil || u.Scheme == "" || u.Host == "" || u.User != nil ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return errorf(key, fmt.Sprintf("%q is not \"*\" or an origin like https://example.org", o))
	}
	if u.Path == "/" {
		return errorf(key, fmt.Sprintf("%q: origins have no trailing slash", o))
	}
	return nil
}

func (w WHIP) validate() error {
	seen := make(map[string]int, len(w.Tokens))
	for i, t := range w.Tokens {
		key := indexKey("whip.tokens", i)
		if t.Token == "" {
			return errorf(key+".token", "must not be empty")
		}
		if strings.ContainsFunc(t.Token, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
			return errorf(key+".token", "must not contain spaces or control characters")
		}
		if j, dup := seen[t.Token]; dup {
			return errorf(key+".token", fmt.Sprintf("same token as whip.tokens[%d]", j))
		}
		seen[t.Token] = i
		if !t.Publish && !t.View {
			return errorf(key, "grants nothing; set publish, view or both to true")
		}
		if len(t.Rooms) == 0 {
			return errorf(key+".rooms", `must list at least one room glob ("*" for every room)`)
		}
		for j, r := range t.Rooms {
			if err := checkGlob(r); err != nil {
				return errorf(indexKey(key+".rooms", j), err.Error())
			}
		}
	}
	return nil
}

func checkGlob(g string) error {
	if g == "" {
		return fmt.Errorf("must not be empty")
	}
	// path.Match checks the whole pattern, whatever the name.
	if _, err := path.Match(g, ""); err != nil {
		return fmt.Errorf("%q is not a valid glob: %v", g, err)
	}
	return nil
}

func (l Limits) validate() error {
	for _, f := range []struct {
		key string
		v   int
	}{
		{"limits.sessions_per_room", l.SessionsPerRoom},
		{"limits.sessions_per_ip", l.SessionsPerIP},
		{"limits.sessions_total", l.SessionsTotal},
	} {
		if f.v < 0 {
			return errorf(f.key, fmt.Sprintf("%d is negative; use 0 for unlimited", f.v))
		}
	}
	return nil
}

func checkPort(key string, p int) error {
	if p < 0 || p > 65535 {
		return errorf(key, fmt.Sprintf("%d is out of range 0-65535", p))
	}
	return nil
}

func checkHostPort(key, s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return errorf(key, fmt.Sprintf("%q is not host:port", s))
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return errorf(key, fmt.Sprintf("%q: port %q is not a number", s, port))
	}
	if p < 0 || p > 65535 {
		return errorf(key, fmt.Sprintf("%q: port %d is out of range 0-65535", s, p))
	}
	if host != "" && !validHost(host) {
		return errorf(key, fmt.Sprintf("%q: %q is not a host name or IP address", s, host))
	}
	return nil
}

// validHost accepts an IP address (IPv6 with an optional zone) or a DNS host
// name.
func validHost(h string) bool {
	if _, err := netip.ParseAddr(h); err == nil {
		return true
	}
	if h == "" || len(h) > 253 {
		return false
	}
	labels := strings.Split(strings.TrimSuffix(h, "."), ".")
	for _, l := range labels {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for _, r := range l {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	// A name whose last label is all digits would be a malformed IP, like
	// 256.1.1.1.
	last := labels[len(labels)-1]
	return strings.Trim(last, "0123456789") != ""
}
