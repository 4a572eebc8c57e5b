package livekit

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// fakeHomeserver answers the OpenID userinfo endpoint: tokens maps access
// tokens to the user IDs it vouches for. Other paths go to extra, when set.
type fakeHomeserver struct {
	*httptest.Server
	tokens map[string]string
	hits   atomic.Int32
	// override, when set, answers userinfo instead.
	override http.HandlerFunc
	extra    http.Handler
}

func newFakeHomeserver(t *testing.T, tokens map[string]string) *fakeHomeserver {
	t.Helper()
	hs := &fakeHomeserver{tokens: tokens}
	hs.Server = httptest.NewServer(hs)
	t.Cleanup(hs.Close)
	return hs
}

func (hs *fakeHomeserver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != userInfoPath {
		if hs.extra != nil {
			hs.extra.ServeHTTP(w, r)
			return
		}
		http.NotFound(w, r)
		return
	}
	hs.hits.Add(1)
	if hs.override != nil {
		hs.override(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	sub, ok := hs.tokens[r.URL.Query().Get("access_token")]
	if r.Method != http.MethodGet || !ok {
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(w, `{"errcode":"M_UNKNOWN_TOKEN","error":"Access Token unknown or expired"}`)
		return
	}
	_ = json.NewEncoder(w).Encode(map[string]string{"sub": sub})
}

func TestPublicAddr(t *testing.T) {
	tests := []struct {
		addr string
		want bool
	}{
		{"8.8.8.8", true},
		{"1.1.1.1", true},
		{"2606:4700:4700::1111", true},
		{"::ffff:8.8.8.8", true},
		{"64:ff9b::808:808", true}, // NAT64 of 8.8.8.8

		{"127.0.0.1", false},
		{"127.1.2.3", false},
		{"::1", false},
		{"10.1.2.3", false},
		{"172.16.0.1", false},
		{"192.168.1.1", false},
		{"fd00::1", false},
		{"169.254.169.254", false}, // cloud metadata
		{"fe80::1", false},
		{"fe80::1%eth0", false},
		{"0.0.0.0", false},
		{"::", false},
		{"224.0.0.1", false},
		{"ff02::1", false},
		{"255.255.255.255", false},
		{"100.64.0.1", false},
		{"0.1.2.3", false},
		{"198.18.0.1", false},
		{"240.0.0.1", false},
		{"192.0.2.1", false},
		{"2001:db8::1", false},
		{"::ffff:127.0.0.1", false},
		{"::ffff:10.0.0.1", false},
		{"64:ff9b::7f00:1", false},    // NAT64 of 127.0.0.1
		{"64:ff9b::a9fe:a9fe", false}, // NAT64 of 169.254.169.254
		{"2002:7f00:1::", false},      // 6to4 of 127.0.0.1
		{"2002:a00:1::", false},       // 6to4 of 10.0.0.1
		{"2002:808:808::", true},      // 6to4 of 8.8.8.8
		{"2001::1", false},            // Teredo
	}
	for _, tt := range tests {
		if got := publicAddr(netip.MustParseAddr(tt.addr)); got != tt.want {
			t.Errorf("publicAddr(%s) = %v, want %v", tt.addr, got, tt.want)
		}
	}
}

// TestGuardRefusesUnmapped: a server name that is not in the map and
// leads to a loopback or private address is refused at dial time, and the
// homeserver there never sees the token.
func TestGuardRefusesUnmapped(t *testing.T) {
	hs := newFakeHomeserver(t, map[string]string{"tok": "@alice:x"})
	_, port, _ := net.SplitHostPort(hs.Listener.Addr().String())
	v, err := newOpenIDVerifier(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer v.close()
	for _, server := range []string{
		"127.0.0.1:" + port,
		"localhost:" + port,
		"[::1]:" + port,
		"10.0.0.1",
		"169.254.169.254:80",
		"0.0.0.0:" + port,
		"[::ffff:127.0.0.1]:" + port,
	} {
		start := time.Now()
		_, err := v.userInfo(t.Context(), server, "tok")
		if !errors.Is(err, errHomeserverUnreachable) || !errors.Is(err, errRefusedAddress) {
			t.Errorf("%s: %v, want an unreachable homeserver at a refused address", server, err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("%s: refused after %v; the guard must not wait for a connection", server, d)
		}
	}
	if n := hs.hits.Load(); n != 0 {
		t.Errorf("the loopback homeserver was asked %d times", n)
	}
}

// TestGuardChecksSRVTargets: an SRV record (like any DNS answer) cannot
// point discovery at loopback either; the check is on the dialled address.
func TestGuardChecksSRVTargets(t *testing.T) {
	hs := newFakeHomeserver(t, map[string]string{"tok": "@alice:evil.example"})
	_, port, _ := net.SplitHostPort(hs.Listener.Addr().String())
	v, err := newOpenIDVerifier(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer v.close()
	p, _ := strconv.Atoi(port)
	v.resolver = fakeSRV{"_matrix-fed._tcp.evil.example": {{Target: "localhost.", Port: uint16(p)}}}
	// No .well-known, without asking real DNS: its address is refused too.
	v.rewrite = func(addr string) string {
		if addr == "evil.example:443" {
			return "127.0.0.1:1"
		}
		return addr
	}
	_, err = v.userInfo(t.Context(), "evil.example", "tok")
	if !errors.Is(err, errRefusedAddress) {
		t.Errorf("userInfo = %v, want a refused address", err)
	}
	if n := hs.hits.Load(); n != 0 {
		t.Errorf("the loopback homeserver was asked %d times", n)
	}
}

func TestMappedHomeserver(t *testing.T) {
	hs := newFakeHomeserver(t, map[string]string{
		"good":  "@alice:example.org",
		"other": "@mallory:evil.example",
		"bare":  "alice:example.org",
		"empty": "@:example.org",
	})
	v, err := newOpenIDVerifier(map[string]string{"example.org": hs.URL + "/"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer v.close()
	user, err := v.userInfo(t.Context(), "example.org", "good")
	if err != nil || user != "@alice:example.org" {
		t.Fatalf("userInfo = %q, %v", user, err)
	}
	for tok, want := range map[string]error{
		"forged": errTokenRejected,
		"other":  errWrongServer,
		"bare":   errWrongServer,
		"empty":  errWrongServer,
	} {
		if _, err := v.userInfo(t.Context(), "example.org", tok); !errors.Is(err, want) {
			t.Errorf("token %q: %v, want %v", tok, err, want)
		}
	}
}

// TestMappedHomeserverMisbehaves: redirects are not followed (not even on
// a mapped homeserver, whose client has no guard), and a failing, slow,
// garbled or oversized answer means the homeserver cannot be used.
func TestMappedHomeserverMisbehaves(t *testing.T) {
	var elsewhere atomic.Int32
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		elsewhere.Add(1)
		fmt.Fprint(w, `{"sub":"@alice:example.org"}`)
	}))
	defer target.Close()
	tests := []struct {
		name    string
		handler http.HandlerFunc
		want    error
	}{
		{"redirect", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, target.URL+userInfoPath+"?"+r.URL.RawQuery, http.StatusFound)
		}, errHomeserverUnreachable},
		{"server error", func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "boom", http.StatusBadGateway)
		}, errHomeserverUnreachable},
		{"not JSON", func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprint(w, "<html>")
		}, errHomeserverUnreachable},
		{"too large", func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, `{"sub":"@alice:example.org","pad":"%s"}`, strings.Repeat("x", maxAnswer))
		}, errHomeserverUnreachable},
		{"forbidden", func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, `{"errcode":"M_FORBIDDEN"}`, http.StatusForbidden)
		}, errTokenRejected},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hs := newFakeHomeserver(t, nil)
			hs.override = tt.handler
			v, err := newOpenIDVerifier(map[string]string{"example.org": hs.URL}, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer v.close()
			_, err = v.userInfo(t.Context(), "example.org", "SECRET-OPENID-TOKEN")
			if !errors.Is(err, tt.want) {
				t.Errorf("userInfo = %v, want %v", err, tt.want)
			}
			if err != nil && strings.Contains(err.Error(), "SECRET-OPENID-TOKEN") {
				t.Errorf("the error quotes the token: %v", err)
			}
		})
	}
	if n := elsewhere.Load(); n != 0 {
		t.Errorf("the redirect was followed %d times", n)
	}
}

func TestMappedHomeserverTimeout(t *testing.T) {
	release := make(chan struct{})
	hs := newFakeHomeserver(t, nil)
	hs.override = func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}
	defer close(release)
	client := &http.Client{Timeout: 200 * time.Millisecond}
	v, err := newOpenIDVerifier(map[string]string{"example.org": hs.URL}, client)
	if err != nil {
		t.Fatal(err)
	}
	defer v.close()
	start := time.Now()
	if _, err := v.userInfo(t.Context(), "example.org", "tok"); !errors.Is(err, errHomeserverUnreachable) {
		t.Errorf("userInfo = %v, want unreachable", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("took %v", d)
	}
}

// TestResolve walks the discovery steps of the server-server API with a
// fake DNS and a TLS server standing in for every host.
func TestResolve(t *testing.T) {
	answer := func(body string) func(http.ResponseWriter, *http.Request) {
		return func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, body) }
	}
	wellKnown := map[string]func(w http.ResponseWriter, r *http.Request){}
	wellKnown["delegating.test"] = answer(`{"m.server":"matrix.delegating.test"}`)
	wellKnown["ported.test"] = answer(`{"m.server":"fed.ported.test:8000"}`)
	wellKnown["badwk.test"] = answer(`{"m.server":"https://nope"}`)
	wellKnown["redirecting.test"] = func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "https://delegating.test"+wellKnownPath, http.StatusMovedPermanently)
	}
	wellKnown["big.test"] = answer(`{"m.server":"x.test","pad":"` + strings.Repeat("x", maxAnswer) + `"}`)
	wellKnown["literal.test"] = answer(`{"m.server":"[2001:db8::5]"}`)
	srv := newTLSHost(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := wellKnown[r.Host]
		if r.URL.Path != wellKnownPath || h == nil {
			http.NotFound(w, r)
			return
		}
		h(w, r)
	}), "delegating.test", "matrix.delegating.test", "ported.test", "badwk.test", "redirecting.test",
		"big.test", "literal.test", "srv.test", "oldsrv.test", "plain.test", "dot.test")

	v, err := newOpenIDVerifier(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer v.close()
	srv.attach(v)
	v.resolver = fakeSRV{
		"_matrix-fed._tcp.matrix.delegating.test": {{Target: "fed1.test.", Port: 8443}, {Target: "fed2.test.", Port: 8444}},
		"_matrix-fed._tcp.srv.test":               {{Target: "fed.srv.test.", Port: 443}},
		"_matrix._tcp.oldsrv.test":                {{Target: "old.oldsrv.test.", Port: 8449}},
		"_matrix-fed._tcp.dot.test":               {{Target: ".", Port: 0}},
	}
	tests := []struct {
		server string
		want   fedTarget
	}{
		{"192.0.2.7", fedTarget{"192.0.2.7", []string{"192.0.2.7:8448"}}},
		{"192.0.2.7:8000", fedTarget{"192.0.2.7:8000", []string{"192.0.2.7:8000"}}},
		{"[2001:db8::1]", fedTarget{"[2001:db8::1]", []string{"[2001:db8::1]:8448"}}},
		{"[2001:db8::1]:8000", fedTarget{"[2001:db8::1]:8000", []string{"[2001:db8::1]:8000"}}},
		{"example.test:8449", fedTarget{"example.test:8449", []string{"example.test:8449"}}},
		{"delegating.test", fedTarget{"matrix.delegating.test", []string{"fed1.test:8443", "fed2.test:8444"}}},
		{"redirecting.test", fedTarget{"matrix.delegating.test", []string{"fed1.test:8443", "fed2.test:8444"}}},
		{"ported.test", fedTarget{"fed.ported.test:8000", []string{"fed.ported.test:8000"}}},
		{"literal.test", fedTarget{"[2001:db8::5]", []string{"[2001:db8::5]:8448"}}},
		{"badwk.test", fedTarget{"badwk.test", []string{"badwk.test:8448"}}},
		{"big.test", fedTarget{"big.test", []string{"big.test:8448"}}},
		{"srv.test", fedTarget{"srv.test", []string{"fed.srv.test:443"}}},
		{"oldsrv.test", fedTarget{"oldsrv.test", []string{"old.oldsrv.test:8449"}}},
		{"dot.test", fedTarget{"dot.test", []string{"dot.test:8448"}}},
		{"plain.test", fedTarget{"plain.test", []string{"plain.test:8448"}}},
	}
	for _, tt := range tests {
		got, err := v.resolve(t.Context(), tt.server)
		if err != nil || got.host != tt.want.host || !slices.Equal(got.addrs, tt.want.addrs) {
			t.Errorf("resolve(%q) = %+v, %v; want %+v", tt.server, got, err, tt.want)
		}
	}
}

// TestFederationUserInfo: the whole discovered path — .well-known
// delegation, SRV, TLS checked against the delegated name, the Host
// header — ending at the userinfo endpoint.
func TestFederationUserInfo(t *testing.T) {
	var gotHost atomic.Value
	var mux http.ServeMux
	mux.HandleFunc(wellKnownPath, func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"m.server":"matrix.example.test"}`)
	})
	mux.HandleFunc(userInfoPath, func(w http.ResponseWriter, r *http.Request) {
		gotHost.Store(r.Host)
		if r.URL.Query().Get("access_token") != "tok" {
			http.Error(w, `{"errcode":"M_UNKNOWN_TOKEN"}`, http.StatusUnauthorized)
			return
		}
		fmt.Fprint(w, `{"sub":"@alice:example.test"}`)
	})
	srv := newTLSHost(t, &mux, "example.test", "matrix.example.test")
	v, err := newOpenIDVerifier(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer v.close()
	srv.attach(v)
	v.resolver = fakeSRV{"_matrix-fed._tcp.matrix.example.test": {{Target: "node1.example.test.", Port: 8448}}}

	user, err := v.userInfo(t.Context(), "example.test", "tok")
	if err != nil || user != "@alice:example.test" {
		t.Fatalf("userInfo = %q, %v", user, err)
	}
	if h, _ := gotHost.Load().(string); h != "matrix.example.test" {
		t.Errorf("Host header %q, want the delegated name", h)
	}
	if _, err := v.userInfo(t.Context(), "example.test", "forged"); !errors.Is(err, errTokenRejected) {
		t.Errorf("forged token: %v, want rejected", err)
	}

	// With the guard back on, the same (loopback) host is refused.
	v.allow = publicAddr
	if _, err := v.userInfo(t.Context(), "example.test", "tok"); !errors.Is(err, errRefusedAddress) {
		t.Errorf("guarded: %v, want a refused address", err)
	}
}

// TestFederationCertificateMismatch: the certificate must be valid for the
// name discovery connects for; one for another name is no homeserver.
func TestFederationCertificateMismatch(t *testing.T) {
	var mux http.ServeMux
	mux.HandleFunc(userInfoPath, func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"sub":"@alice:victim.test"}`)
	})
	srv := newTLSHost(t, &mux, "attacker.test")
	v, err := newOpenIDVerifier(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer v.close()
	srv.attach(v)
	v.resolver = fakeSRV{}
	if _, err := v.userInfo(t.Context(), "victim.test", "tok"); !errors.Is(err, errHomeserverUnreachable) {
		t.Errorf("userInfo = %v, want unreachable (bad certificate)", err)
	}
}

// tlsHost is an HTTPS server that stands in for every host name: the
// verifier under test dials it whatever the address, trusts its CA, and
// allows its loopback address.
type tlsHost struct {
	srv  *httptest.Server
	pool *x509.CertPool
}

func newTLSHost(t *testing.T, h http.Handler, names ...string) *tlsHost {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: names[0]},
		DNSNames:              names,
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:                  true,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // expected handshake failures
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tlsHost{srv: srv, pool: pool}
}

func (h *tlsHost) attach(v *openIDVerifier) {
	addr := h.srv.Listener.Addr().String()
	v.rewrite = func(string) string { return addr }
	v.allow = func(a netip.Addr) bool { return a.IsLoopback() }
	v.federation.Transport.(*http.Transport).TLSClientConfig.RootCAs = h.pool
}

// fakeSRV answers SRV lookups from a map keyed _service._proto.name.
type fakeSRV map[string][]*net.SRV

func (f fakeSRV) LookupSRV(_ context.Context, service, proto, name string) (string, []*net.SRV, error) {
	recs, ok := f["_"+service+"._"+proto+"."+name]
	if !ok {
		return "", nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
	}
	return "", recs, nil
}
