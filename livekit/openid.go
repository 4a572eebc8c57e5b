package livekit

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/focus-sfu/focus/config"
)

// Bounds on every outbound request of the OpenID check. The server name
// comes from the client, so each lookup must be cheap for the focus
// whatever the other side does.
const (
	// lookupTimeout bounds one HTTP request (connect, TLS, headers, body).
	lookupTimeout = 5 * time.Second
	// verifyTimeout bounds a whole check: .well-known, SRV and userinfo.
	verifyTimeout = 10 * time.Second
	// maxAnswer bounds the body read from a homeserver.
	maxAnswer = 64 << 10
	// maxRedirects bounds the redirects followed for .well-known. The
	// userinfo request follows none.
	maxRedirects = 3
	// federationPort is the default federation port (Matrix server-server
	// API, "Resolving server names").
	federationPort = "8448"
	userInfoPath   = "/_matrix/federation/v1/openid/userinfo"
	wellKnownPath  = "/.well-known/matrix/server"
)

// Why an OpenID check failed. The token service answers all three with
// 401 M_UNAUTHORIZED, as lk-jwt-service does, with different messages.
var (
	// errTokenRejected: the homeserver answered, and not with a user.
	errTokenRejected = errors.New("the homeserver did not accept the OpenID token")
	// errHomeserverUnreachable: no usable answer (DNS, refused address,
	// connection, TLS, timeout, 5xx, redirect, oversized or malformed body).
	errHomeserverUnreachable = errors.New("the homeserver could not be reached")
	// errWrongServer: the homeserver vouched for a user of another server.
	errWrongServer = errors.New("the homeserver named a user of another server")
)

// errRefusedAddress is returned by the guarded dialer.
var errRefusedAddress = errors.New("refused address")

// openIDVerifier checks Matrix OpenID tokens at the user's homeserver
// (GET /_matrix/federation/v1/openid/userinfo), found through the config
// map or else through federation discovery, whose every connection goes
// through the address guard.
type openIDVerifier struct {
	// mapped are the homeservers of the config map, by server name.
	mapped map[string]*url.URL
	// mappedClient asks mapped homeservers; it follows no redirects.
	mappedClient *http.Client
	// federation asks discovered homeservers; it follows no redirects.
	federation *http.Client
	// wellKnown fetches .well-known/matrix/server; it follows a few
	// redirects, through the same guarded transport.
	wellKnown *http.Client
	resolver  srvResolver
	// allow decides which addresses discovery may connect to.
	allow func(netip.Addr) bool
	// rewrite, when set, replaces a dial address (tests only).
	rewrite func(addr string) string
	dialer  net.Dialer
}

// srvResolver is the part of net.Resolver discovery needs.
type srvResolver interface {
	LookupSRV(ctx context.Context, service, proto, name string) (string, []*net.SRV, error)
}

// newOpenIDVerifier builds a verifier. mapped values are base URLs;
// client, when not nil, is used (without redirects) for mapped
// homeservers.
func newOpenIDVerifier(mapped map[string]string, client *http.Client) (*openIDVerifier, error) {
	v := &openIDVerifier{
		mapped:   make(map[string]*url.URL, len(mapped)),
		resolver: net.DefaultResolver,
		allow:    publicAddr,
	}
	for name, base := range mapped {
		if err := config.CheckServerName("homeservers", name); err != nil {
			return nil, fmt.Errorf("homeservers: %q is not a server name", name)
		}
		u, err := url.Parse(base)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("homeservers[%q]: %q is not an http:// or https:// URL", name, base)
		}
		v.mapped[name] = u
	}
	if client == nil {
		// A transport of its own, so that close leaves no idle
		// connection (and goroutine) behind.
		client = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone(), Timeout: lookupTimeout}
	}
	mc := *client
	mc.CheckRedirect = noRedirects
	v.mappedClient = &mc

	v.dialer = net.Dialer{Timeout: lookupTimeout, Control: v.control}
	tr := &http.Transport{
		// Never a proxy: the guard must see the homeserver's address.
		Proxy:                  nil,
		DialContext:            v.dial,
		TLSClientConfig:        &tls.Config{MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:    lookupTimeout,
		ResponseHeaderTimeout:  lookupTimeout,
		MaxResponseHeaderBytes: maxAnswer,
		// A dial target depends on the request (SRV), so no connection
		// is reused across requests; lookups are rare enough.
		DisableKeepAlives: true,
	}
	v.federation = &http.Client{Transport: tr, Timeout: lookupTimeout, CheckRedirect: noRedirects}
	v.wellKnown = &http.Client{Transport: tr, Timeout: lookupTimeout, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if len(via) > maxRedirects {
			return fmt.Errorf("more than %d redirects", maxRedirects)
		}
		if req.URL.Scheme != "https" {
			return fmt.Errorf("redirect to %s, not https", req.URL.Scheme)
		}
		return nil
	}}
	return v, nil
}

func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// close drops idle connections of the mapped client (the federation
// transport keeps none).
func (v *openIDVerifier) close() {
	v.mappedClient.CloseIdleConnections()
}

// dialTargetsKey carries the addresses to dial for a federation request,
// in order, when discovery found them (SRV, port 8448) rather than the
// URL's host.
type dialTargetsKey struct{}

func (v *openIDVerifier) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	targets, _ := ctx.Value(dialTargetsKey{}).([]string)
	if len(targets) == 0 {
		targets = []string{addr}
	}
	var errs []error
	for _, t := range targets {
		if v.rewrite != nil {
			t = v.rewrite(t)
		}
		c, err := v.dialer.DialContext(ctx, network, t)
		if err == nil {
			return c, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, errors.Join(errs...)
}

// control runs for every connection attempt, after name resolution and
// before connecting: the address is the one really dialled, so neither a
// DNS answer nor a rebinding can slip a refused address past it.
func (v *openIDVerifier) control(_, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return fmt.Errorf("%w: %q", errRefusedAddress, address)
	}
	a, err := netip.ParseAddr(host)
	if err != nil || !v.allow(a) {
		return fmt.Errorf("%w: %s is not a public address", errRefusedAddress, host)
	}
	return nil
}

// refusedPrefixes are ranges that are not private in Go's sense but are
// still no place for a homeserver: shared, reserved, documentation and
// benchmarking ranges, and Teredo.
var refusedPrefixes = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("192.0.2.0/24"),
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("198.51.100.0/24"),
	netip.MustParsePrefix("203.0.113.0/24"),
	netip.MustParsePrefix("240.0.0.0/4"),
	netip.MustParsePrefix("100::/64"),
	netip.MustParsePrefix("2001::/32"),
	netip.MustParsePrefix("2001:db8::/32"),
	netip.MustParsePrefix("fec0::/10"),
}

// embedded4 are IPv6 ranges that carry an IPv4 address which a gateway
// may reach: NAT64 (RFC 6052, RFC 8215) and 6to4.
var embedded4 = []struct {
	prefix netip.Prefix
	at     int // byte offset of the IPv4 address
}{
	{netip.MustParsePrefix("64:ff9b::/96"), 12},
	{netip.MustParsePrefix("64:ff9b:1::/48"), 12},
	{netip.MustParsePrefix("2002::/16"), 2},
}

// publicAddr reports whether discovery may connect to a: a global unicast
// address that is not private (RFC 1918, fc00::/7), loopback, link-local,
// multicast, unspecified or one of the reserved ranges above.
func publicAddr(a netip.Addr) bool {
	a = a.Unmap()
	if a.Zone() != "" || !a.IsGlobalUnicast() || a.IsPrivate() {
		return false
	}
	for _, p := range refusedPrefixes {
		if p.Contains(a) {
			return false
		}
	}
	for _, e := range embedded4 {
		if e.prefix.Contains(a) {
			b := a.As16()
			return publicAddr(netip.AddrFrom4([4]byte(b[e.at : e.at+4])))
		}
	}
	return true
}

// userInfo asks server's homeserver whom token belongs to, and checks that
// the answer is a user of server.
func (v *openIDVerifier) userInfo(ctx context.Context, server, token string) (id.UserID, error) {
	ctx, cancel := context.WithTimeout(ctx, verifyTimeout)
	defer cancel()
	q := url.Values{"access_token": {token}}.Encode()
	var (
		req    *http.Request
		client *http.Client
		err    error
	)
	if base, ok := v.mapped[server]; ok {
		u := base.JoinPath(userInfoPath)
		u.RawQuery = q
		req, err = http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
		client = v.mappedClient
	} else {
		var t fedTarget
		t, err = v.resolve(ctx, server)
		if err != nil {
			return "", fmt.Errorf("%w: %s: %w", errHomeserverUnreachable, server, err)
		}
		u := url.URL{Scheme: "https", Host: t.host, Path: userInfoPath, RawQuery: q}
		req, err = http.NewRequestWithContext(context.WithValue(ctx, dialTargetsKey{}, t.addrs), http.MethodGet, u.String(), nil)
		client = v.federation
	}
	if err != nil {
		// Not err itself: it would quote the URL, token and all.
		return "", fmt.Errorf("%w: %s: cannot build the userinfo request", errHomeserverUnreachable, server)
	}
	req.Header.Set("Accept", "application/json")
	var info struct {
		Sub string `json:"sub"`
	}
	status, err := getJSON(client, req, &info)
	switch {
	case err != nil && status >= 400 && status < 500:
		return "", fmt.Errorf("%w: %s: %w", errTokenRejected, server, err)
	case err != nil:
		return "", fmt.Errorf("%w: %s: %w", errHomeserverUnreachable, server, err)
	}
	user := id.UserID(info.Sub)
	if !userOf(user, server) {
		return "", fmt.Errorf("%w: %s answered %q", errWrongServer, server, info.Sub)
	}
	return user, nil
}

// userOf reports whether user is a well-formed user ID of server:
// @localpart:server, the localpart not empty, at most 255 bytes in all.
func userOf(user id.UserID, server string) bool {
	s := string(user)
	local, srv, ok := strings.Cut(strings.TrimPrefix(s, "@"), ":")
	return ok && strings.HasPrefix(s, "@") && local != "" && srv == server && len(s) <= 255
}

// getJSON sends req and decodes a 200 answer of at most maxAnswer bytes
// into out. It returns the status when there was an answer.
func getJSON(client *http.Client, req *http.Request, out any) (int, error) {
	// The request URL carries the token; errors name the host and path.
	where := req.URL.Host + req.URL.Path
	resp, err := client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return 0, fmt.Errorf("GET %s: %w", where, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer+1))
	if err != nil {
		return resp.StatusCode, fmt.Errorf("GET %s: read: %w", where, err)
	}
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, fmt.Errorf("GET %s: %s", where, resp.Status)
	}
	if len(body) > maxAnswer {
		return resp.StatusCode, fmt.Errorf("GET %s: the answer is larger than %d bytes", where, maxAnswer)
	}
	if err := json.Unmarshal(body, out); err != nil {
		return resp.StatusCode, fmt.Errorf("GET %s: decode: %w", where, err)
	}
	return resp.StatusCode, nil
}

// fedTarget is where a server name's federation API is: host is the URL
// host (Host header and TLS name), addrs the host:port pairs to dial.
type fedTarget struct {
	host  string
	addrs []string
}

// resolve finds a server name's federation API as the Matrix
// server-server API specifies ("Resolving server names"): an IP literal
// or an explicit port is used as it is; else .well-known/matrix/server
// may delegate, and the (delegated) host is looked up through SRV
// _matrix-fed._tcp, then _matrix._tcp, else port 8448.
func (v *openIDVerifier) resolve(ctx context.Context, server string) (fedTarget, error) {
	host, port := splitServerName(server)
	if t, ok := literalTarget(server, host, port); ok {
		return t, nil
	}
	if delegated, ok := v.delegation(ctx, host); ok {
		dhost, dport := splitServerName(delegated)
		if t, ok := literalTarget(delegated, dhost, dport); ok {
			return t, nil
		}
		host = dhost
	}
	if addrs := v.srv(ctx, host); len(addrs) > 0 {
		return fedTarget{host: host, addrs: addrs}, nil
	}
	return fedTarget{host: host, addrs: []string{net.JoinHostPort(host, federationPort)}}, nil
}

// literalTarget handles the names that need no lookup: an IP literal
// (port 8448 unless given) or a host with an explicit port.
func literalTarget(name, host, port string) (fedTarget, bool) {
	bare := strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if _, err := netip.ParseAddr(bare); err == nil {
		if port == "" {
			port = federationPort
		}
		return fedTarget{host: name, addrs: []string{net.JoinHostPort(bare, port)}}, true
	}
	if port != "" {
		return fedTarget{host: name, addrs: []string{net.JoinHostPort(host, port)}}, true
	}
	return fedTarget{}, false
}

// splitServerName splits host[:port]; an IPv6 host keeps its brackets.
func splitServerName(s string) (host, port string) {
	if i := strings.LastIndexByte(s, ':'); i >= 0 && !strings.HasSuffix(s, "]") {
		return s[:i], s[i+1:]
	}
	return s, ""
}

// delegation fetches https://host/.well-known/matrix/server and returns
// its m.server. Any failure means no delegation, as the spec says.
func (v *openIDVerifier) delegation(ctx context.Context, host string) (string, bool) {
	ctx, cancel := context.WithTimeout(ctx, lookupTimeout)
	defer cancel()
	u := url.URL{Scheme: "https", Host: host, Path: wellKnownPath}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return "", false
	}
	var wk struct {
		Server string `json:"m.server"`
	}
	if _, err := getJSON(v.wellKnown, req, &wk); err != nil {
		return "", false
	}
	if config.CheckServerName("m.server", wk.Server) != nil {
		return "", false
	}
	return wk.Server, true
}

// srv looks up _matrix-fed._tcp.host, then the deprecated _matrix._tcp,
// and returns the targets in the resolver's order.
func (v *openIDVerifier) srv(ctx context.Context, host string) []string {
	for _, service := range []string{"matrix-fed", "matrix"} {
		_, recs, err := v.resolver.LookupSRV(ctx, service, "tcp", host)
		if err != nil {
			continue
		}
		var addrs []string
		for _, r := range recs {
			target := strings.TrimSuffix(r.Target, ".")
			if target == "" { // "." means no service here
				continue
			}
			addrs = append(addrs, net.JoinHostPort(target, fmt.Sprint(r.Port)))
		}
		if len(addrs) > 0 {
			return addrs
		}
	}
	return nil
}
