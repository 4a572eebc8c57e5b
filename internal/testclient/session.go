// Package testclient holds real pion WebRTC clients that speak plain HTTP
// WHIP (RFC 9725) and WHEP: a publisher that sends synthetic VP8 and Opus
// RTP, and a viewer that checks what arrives. Tests use them to drive a
// running focus end to end.
package testclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/logging"
	"github.com/pion/transport/v4"
	"github.com/pion/transport/v4/stdnet"
	"github.com/pion/webrtc/v4"
)

// Payload types the clients offer; the SFU may answer with others.
const (
	ptVP8  = 96
	ptOpus = 111
)

// StatusError is returned when the server answers a WHIP or WHEP request
// with an unexpected status.
type StatusError struct {
	Method, URL string
	Code        int
	Header      http.Header
	Body        string // first KiB
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("testclient: %s %s: status %d: %s", e.Method, e.URL, e.Code, strings.TrimSpace(e.Body))
}

// session is what a publisher and a viewer share: one PeerConnection, the
// HTTP resource the server made for it, and a switch that silences its
// sockets so it can vanish without a goodbye.
type session struct {
	pc       *webrtc.PeerConnection
	http     *http.Client
	token    string
	net      *cutNet
	resource string // absolute URL of the WHIP/WHEP resource
	etag     string
	// connectedAt is when the PeerConnection was first seen connected.
	connectedAt time.Time

	closeOnce sync.Once
	closeErr  error
}

// newSession makes a PeerConnection from its own API (see NewAPI) whose
// sockets can be cut.
func newSession(hc *http.Client, token string) (*session, error) {
	sn, err := newCutNet()
	if err != nil {
		return nil, err
	}
	api, err := newAPI(sn)
	if err != nil {
		return nil, err
	}
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, fmt.Errorf("testclient: new peer connection: %w", err)
	}
	if hc == nil {
		// No keep-alive: an idle pooled connection would outlive the
		// client and show up as a leaked goroutine.
		hc = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	}
	return &session{pc: pc, http: hc, token: token, net: sn}, nil
}

// NewAPI returns a pion API set up as the WHIP and WHEP clients' own: VP8
// and Opus with the usual RTCP feedback, pion's default interceptors (NACK,
// reports, TWCC), UDP over IPv4 only, loopback candidates included, no
// mDNS, and pion's own logs off. Other test clients build their
// PeerConnections from it so that all of them offer the same media.
func NewAPI() (*webrtc.API, error) {
	sn, err := newCutNet()
	if err != nil {
		return nil, err
	}
	return newAPI(sn)
}

func newAPI(sn *cutNet) (*webrtc.API, error) {
	me := &webrtc.MediaEngine{}
	videoFB := []webrtc.RTCPFeedback{
		{Type: webrtc.TypeRTCPFBGoogREMB},
		{Type: webrtc.TypeRTCPFBCCM, Parameter: "fir"},
		{Type: webrtc.TypeRTCPFBNACK},
		{Type: webrtc.TypeRTCPFBNACK, Parameter: "pli"},
		{Type: webrtc.TypeRTCPFBTransportCC},
	}
	codecs := []struct {
		c webrtc.RTPCodecParameters
		t webrtc.RTPCodecType
	}{
		{webrtc.RTPCodecParameters{
			RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000, RTCPFeedback: videoFB},
			PayloadType:        ptVP8,
		}, webrtc.RTPCodecTypeVideo},
		{webrtc.RTPCodecParameters{
			RTPCodecCapability: webrtc.RTPCodecCapability{
				MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2,
				SDPFmtpLine:  "minptime=10;useinbandfec=1",
				RTCPFeedback: []webrtc.RTCPFeedback{{Type: webrtc.TypeRTCPFBTransportCC}},
			},
			PayloadType: ptOpus,
		}, webrtc.RTPCodecTypeAudio},
	}
	for _, c := range codecs {
		if err := me.RegisterCodec(c.c, c.t); err != nil {
			return nil, fmt.Errorf("testclient: register %s: %w", c.c.MimeType, err)
		}
	}
	// pion's own logs would only repeat, on stderr, teardown noise such as
	// writes on closed pipes; the clients report what matters in Stats.
	quiet := logging.NewDefaultLoggerFactory()
	quiet.DefaultLogLevel = logging.LogLevelDisabled
	reg := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptorsWithOptions(me, reg, webrtc.WithInterceptorLoggerFactory(quiet)); err != nil {
		return nil, fmt.Errorf("testclient: interceptors: %w", err)
	}

	se := webrtc.SettingEngine{LoggerFactory: quiet}
	se.SetNet(sn)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetIncludeLoopbackCandidate(true)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)

	return webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(reg), webrtc.WithSettingEngine(se)), nil
}

// negotiate sends the offer to endpoint (non-trickle: after gathering
// completes), applies the answer and waits until the PeerConnection is
// connected.
func (s *session) negotiate(ctx context.Context, endpoint string) error {
	offer, err := s.pc.CreateOffer(nil)
	if err != nil {
		return fmt.Errorf("testclient: create offer: %w", err)
	}
	gathered := webrtc.GatheringCompletePromise(s.pc)
	if err := s.pc.SetLocalDescription(offer); err != nil {
		return fmt.Errorf("testclient: set local offer: %w", err)
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		return fmt.Errorf("testclient: gather candidates: %w", ctx.Err())
	}

	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint,
		strings.NewReader(s.pc.LocalDescription().SDP))
	if err != nil {
		return fmt.Errorf("testclient: offer request: %w", err)
	}
	req.Header.Set("Content-Type", "application/sdp")
	resp, body, err := s.do(req)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusCreated {
		return statusError(req, resp, body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/sdp") {
		return fmt.Errorf("testclient: POST %s: answer Content-Type %q", endpoint, ct)
	}
	loc, err := resp.Location()
	if err != nil {
		return fmt.Errorf("testclient: POST %s: 201 without usable Location: %w", endpoint, err)
	}
	s.resource = loc.String()
	s.etag = resp.Header.Get("ETag")

	answer := webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: string(body)}
	if err := s.pc.SetRemoteDescription(answer); err != nil {
		return fmt.Errorf("testclient: apply answer from %s: %w", endpoint, err)
	}
	return s.waitConnected(ctx)
}

func (s *session) waitConnected(ctx context.Context) error {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		switch st := s.pc.ConnectionState(); st {
		case webrtc.PeerConnectionStateConnected:
			s.connectedAt = time.Now()
			return nil
		case webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateClosed:
			return fmt.Errorf("testclient: peer connection %s before connecting", st)
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return fmt.Errorf("testclient: wait for connection (state %s): %w", s.pc.ConnectionState(), ctx.Err())
		}
	}
}

// do sends req with the bearer token and reads up to 1 MiB of the body.
func (s *session) do(req *http.Request) (*http.Response, []byte, error) {
	if s.token != "" {
		req.Header.Set("Authorization", "Bearer "+s.token)
	}
	resp, err := s.http.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("testclient: %s %s: %w", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, nil, fmt.Errorf("testclient: %s %s: read body: %w", req.Method, req.URL, err)
	}
	return resp, body, nil
}

func statusError(req *http.Request, resp *http.Response, body []byte) error {
	if len(body) > 1024 {
		body = body[:1024]
	}
	return &StatusError{Method: req.Method, URL: req.URL.String(), Code: resp.StatusCode, Header: resp.Header, Body: string(body)}
}

// Resource is the URL of the WHIP/WHEP resource the server created.
func (s *session) Resource() string { return s.resource }

// ConnectedAt is when the PeerConnection was seen connected (polled every
// 10 ms).
func (s *session) ConnectedAt() time.Time { return s.connectedAt }

// ETag is the entity tag the server sent with the answer, if any.
func (s *session) ETag() string { return s.etag }

// PeerConnection exposes the client's PeerConnection for inspection.
func (s *session) PeerConnection() *webrtc.PeerConnection { return s.pc }

// close ends the session once: with DELETE on the resource when goodbye is
// set, otherwise by cutting the sockets first so that the server hears
// nothing more, not even a DTLS close_notify.
func (s *session) close(goodbye bool) error {
	s.closeOnce.Do(func() {
		var errs []error
		if goodbye && s.resource != "" {
			errs = append(errs, s.delete())
		}
		if !goodbye {
			s.net.cut.Store(true)
		}
		if err := s.pc.GracefulClose(); err != nil {
			errs = append(errs, fmt.Errorf("testclient: close peer connection: %w", err))
		}
		s.closeErr = errors.Join(errs...)
	})
	return s.closeErr
}

func (s *session) delete() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, s.resource, nil)
	if err != nil {
		return fmt.Errorf("testclient: delete request: %w", err)
	}
	resp, body, err := s.do(req)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusNoContent {
		return statusError(req, resp, body)
	}
	return nil
}

// endpoint joins base, the front-end path and the room name.
func endpoint(base, front, room string, query url.Values) (string, error) {
	u, err := url.Parse(base)
	if err != nil {
		return "", fmt.Errorf("testclient: base URL %q: %w", base, err)
	}
	u = u.JoinPath(front, room)
	u.RawQuery = query.Encode()
	return u.String(), nil
}

// cutNet is the operating system's network with a switch: once cut, every
// socket it made drops what the client writes. pion's ICE agent makes its
// UDP sockets through it.
type cutNet struct {
	*stdnet.Net
	cut atomic.Bool
}

func newCutNet() (*cutNet, error) {
	n, err := stdnet.NewNet()
	if err != nil {
		return nil, fmt.Errorf("testclient: network: %w", err)
	}
	return &cutNet{Net: n}, nil
}

func (n *cutNet) ListenUDP(network string, laddr *net.UDPAddr) (transport.UDPConn, error) {
	c, err := n.Net.ListenUDP(network, laddr)
	if err != nil {
		return nil, err
	}
	return &cutUDPConn{UDPConn: c, cut: &n.cut}, nil
}

func (n *cutNet) DialUDP(network string, laddr, raddr *net.UDPAddr) (transport.UDPConn, error) {
	c, err := n.Net.DialUDP(network, laddr, raddr)
	if err != nil {
		return nil, err
	}
	return &cutUDPConn{UDPConn: c, cut: &n.cut}, nil
}

func (n *cutNet) ListenPacket(network, address string) (net.PacketConn, error) {
	c, err := n.Net.ListenPacket(network, address)
	if err != nil {
		return nil, err
	}
	return &cutPacketConn{PacketConn: c, cut: &n.cut}, nil
}

// cutUDPConn pretends to send once cut: a vanished peer does not know it
// has vanished.
type cutUDPConn struct {
	transport.UDPConn
	cut *atomic.Bool
}

func (c *cutUDPConn) Write(b []byte) (int, error) {
	if c.cut.Load() {
		return len(b), nil
	}
	return c.UDPConn.Write(b)
}

func (c *cutUDPConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	if c.cut.Load() {
		return len(b), nil
	}
	return c.UDPConn.WriteTo(b, addr)
}

func (c *cutUDPConn) WriteToUDP(b []byte, addr *net.UDPAddr) (int, error) {
	if c.cut.Load() {
		return len(b), nil
	}
	return c.UDPConn.WriteToUDP(b, addr)
}

func (c *cutUDPConn) WriteMsgUDP(b, oob []byte, addr *net.UDPAddr) (int, int, error) {
	if c.cut.Load() {
		return len(b), len(oob), nil
	}
	return c.UDPConn.WriteMsgUDP(b, oob, addr)
}

type cutPacketConn struct {
	net.PacketConn
	cut *atomic.Bool
}

func (c *cutPacketConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	if c.cut.Load() {
		return len(b), nil
	}
	return c.PacketConn.WriteTo(b, addr)
}
