// Package rtc is the one WebRTC engine of the process: the pion API
// (settings, codecs, interceptors) that every front-end makes its
// PeerConnections with, the single UDP port all media uses, and the glue
// that connects pion's tracks to the SFU core.
package rtc

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/transport/v4"
	"github.com/pion/webrtc/v4"
	"github.com/rs/zerolog"
)

// ICEServer is a STUN or TURN server handed to clients.
type ICEServer struct {
	URLs       []string
	Username   string
	Credential string
}

// Config configures the engine.
type Config struct {
	// BindAddress is the host the media UDP socket binds to. Empty,
	// "0.0.0.0" and "::" bind every interface, IPv4 and IPv6.
	BindAddress string
	// UDPPort is the one UDP port all media uses; 0 picks a free one.
	UDPPort int
	// PublicIPs are advertised instead of the local addresses (NAT 1:1).
	PublicIPs []string
	// ICELite makes the focus an ICE-Lite agent.
	ICELite bool
	// IncludeLoopback advertises loopback candidates even when not bound
	// to a loopback address (where they are always advertised).
	IncludeLoopback bool
	// Net is the network the engine binds and gathers on; nil is the
	// host's. Tests pass a pion vnet to shape the path (see
	// internal/vnettest).
	Net transport.Net
}

// ICE timeouts: a peer that stops answering is disconnected after 5 s
// and failed after 10 s; pion's defaults take 30 s.
const (
	iceDisconnectedTimeout = 5 * time.Second
	iceFailedTimeout       = 10 * time.Second
	iceKeepaliveInterval   = 2 * time.Second
)

// Engine owns the pion API and the media socket.
type Engine struct {
	api  *webrtc.API
	conn net.PacketConn
	mux  ice.UDPMux
	log  zerolog.Logger

	// newPC serializes NewPeerConnection: the cc interceptor hands the
	// estimator it builds for a connection to a callback that cannot
	// tell connections apart (pion's connection IDs are timestamps), so
	// one connection is built at a time and its estimator taken from
	// built.
	newPC sync.Mutex
	built *estimator
}

// New binds the media port and builds the pion API.
func New(cfg Config, log zerolog.Logger) (*Engine, error) {
	if cfg.UDPPort < 0 || cfg.UDPPort > 65535 {
		return nil, fmt.Errorf("rtc: udp port %d out of range", cfg.UDPPort)
	}
	var ip net.IP
	if cfg.BindAddress != "" && cfg.BindAddress != "localhost" {
		if ip = net.ParseIP(cfg.BindAddress); ip == nil {
			return nil, fmt.Errorf("rtc: bind address %q is not an IP address", cfg.BindAddress)
		}
	}
	if cfg.BindAddress == "localhost" {
		ip = net.IPv4(127, 0, 0, 1)
	}
	network, types := "udp", []webrtc.NetworkType{webrtc.NetworkTypeUDP4, webrtc.NetworkTypeUDP6}
	switch {
	case ip == nil || ip.IsUnspecified():
		ip = nil
	case ip.To4() != nil:
		network, types = "udp4", []webrtc.NetworkType{webrtc.NetworkTypeUDP4}
	default:
		network, types = "udp6", []webrtc.NetworkType{webrtc.NetworkTypeUDP6}
	}
	var conn net.PacketConn
	var err error
	if cfg.Net != nil {
		conn, err = cfg.Net.ListenUDP(network, &net.UDPAddr{IP: ip, Port: cfg.UDPPort})
	} else {
		conn, err = net.ListenUDP(network, &net.UDPAddr{IP: ip, Port: cfg.UDPPort})
	}
	if err != nil {
		return nil, fmt.Errorf("rtc: listen udp %s: %w", net.JoinHostPort(cfg.BindAddress, strconv.Itoa(cfg.UDPPort)), err)
	}
	// Socket buffers sized for a few hundred subscribers' bursts; the
	// kernel caps them at net.core.[rw]mem_max.
	if b, ok := conn.(interface {
		SetReadBuffer(int) error
		SetWriteBuffer(int) error
	}); ok {
		_ = b.SetReadBuffer(4 << 20)
		_ = b.SetWriteBuffer(4 << 20)
	}

	// On the host's network, writes are batched (see batchConn).
	if uc, ok := conn.(*net.UDPConn); ok {
		bc, err := newBatchConn(uc, log)
		if err != nil {
			_ = conn.Close()
			return nil, err
		}
		conn = bc
	}

	logs := newLoggerFactory(log)
	e := &Engine{conn: conn, log: log}
	e.mux = ice.NewUDPMuxDefault(ice.UDPMuxParams{Logger: logs.NewLogger("udpmux"), UDPConn: conn, Net: cfg.Net})

	s := webrtc.SettingEngine{LoggerFactory: logs}
	if cfg.Net != nil {
		s.SetNet(cfg.Net)
	}
	s.SetICEUDPMux(e.mux)
	s.SetNetworkTypes(types)
	s.SetICETimeouts(iceDisconnectedTimeout, iceFailedTimeout, iceKeepaliveInterval)
	s.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	s.SetIncludeLoopbackCandidate(cfg.IncludeLoopback || ip != nil && ip.IsLoopback())
	s.SetLite(cfg.ICELite)
	if len(cfg.PublicIPs) > 0 {
		s.SetNAT1To1IPs(cfg.PublicIPs, webrtc.ICECandidateTypeHost)
	}
	// The focus answers as the DTLS server, so it picks the SRTP profile:
	// AES-GCM first, which costs a fraction of AES-CM with HMAC-SHA1.
	if err := s.SetAnsweringDTLSRole(webrtc.DTLSRoleServer); err != nil {
		_ = e.Close()
		return nil, fmt.Errorf("rtc: dtls role: %w", err)
	}
	s.SetSRTPProtectionProfiles(
		dtls.SRTP_AEAD_AES_128_GCM,
		dtls.SRTP_AEAD_AES_256_GCM,
		dtls.SRTP_AES128_CM_HMAC_SHA1_80,
	)

	m, err := newMediaEngine()
	if err != nil {
		_ = e.Close()
		return nil, err
	}
	reg := &interceptor.Registry{}
	if err := registerInterceptors(m, reg, func(est *estimator) { e.built = est }); err != nil {
		_ = e.Close()
		return nil, err
	}
	e.api = webrtc.NewAPI(webrtc.WithSettingEngine(s), webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(reg))
	log.Info().Str("udp", conn.LocalAddr().String()).Msg("media port bound")
	return e, nil
}

// NewPeerConnection makes a PeerConnection on the shared engine, with
// its own congestion controller.
func (e *Engine) NewPeerConnection() (*Peer, error) {
	e.newPC.Lock()
	defer e.newPC.Unlock()
	e.built = nil
	pc, err := e.api.NewPeerConnection(webrtc.Configuration{SDPSemantics: webrtc.SDPSemanticsUnifiedPlan})
	if err != nil {
		return nil, fmt.Errorf("rtc: new peer connection: %w", err)
	}
	est := e.built
	e.built = nil
	if est == nil {
		_ = pc.Close()
		return nil, errors.New("rtc: new peer connection: the congestion controller was not built")
	}
	p := &Peer{PeerConnection: pc, est: est}
	e.attachDirectPath(p)
	return p, nil
}

// UDPAddr returns the bound media address.
func (e *Engine) UDPAddr() *net.UDPAddr {
	a, _ := e.conn.LocalAddr().(*net.UDPAddr)
	return a
}

// Close releases the media port. Close every PeerConnection first.
func (e *Engine) Close() error {
	var errs []error
	if e.mux != nil {
		errs = append(errs, e.mux.Close())
	}
	if err := e.conn.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// SocketStats counts what the media socket sent, and the RTCP it read
// for the direct paths.
type SocketStats struct {
	// Batches and Datagrams count the system calls that sent datagrams
	// and the datagrams they sent; Dropped, datagrams the kernel refused.
	Batches, Datagrams, Dropped uint64
	// RTCPTaken counts the SRTCP packets the direct paths read (the
	// subscribers' feedback), which pion never sees; RTCPReplays, those
	// they dropped as replays.
	RTCPTaken, RTCPReplays uint64
}

// SocketStats returns the media socket's counters; zero on a simulated
// network, where writes are not batched.
func (e *Engine) SocketStats() SocketStats {
	c, ok := e.conn.(*batchConn)
	if !ok {
		return SocketStats{}
	}
	return SocketStats{
		Batches: c.batches.Load(), Datagrams: c.datagrams.Load(), Dropped: c.dropped.Load(),
		RTCPTaken: c.rtcpTaken.Load(), RTCPReplays: c.rtcpReplays.Load(),
	}
}
