// Package vnettest runs the focus's WebRTC engine and test clients on a
// pion virtual network whose path a test shapes while media flows: a
// rate cap with a bounded queue towards the client (what a subscriber's
// access link does), and random loss either way.
//
//	focus 10.0.0.1 ──┐                 ┌── loss ── cap+queue ──> client 10.0.0.2
//	                 └─ router (wan) ──┤
//	focus <── loss ──────────────────────────────────────────── client
package vnettest

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/logging"
	"github.com/pion/transport/v4/vnet"
	"github.com/pion/webrtc/v4"
	"github.com/rs/zerolog"

	"github.com/focus-sfu/focus/rtc"
)

// Addresses of the two hosts.
const (
	FocusIP  = "10.0.0.1"
	ClientIP = "10.0.0.2"
)

// Options shape the path. Zero values mean no cap, no loss and the
// router's own delay.
type Options struct {
	// Rate caps what reaches the client, in bits per second.
	Rate int
	// Burst is the token bucket's depth in bytes (default 10 kB, a few
	// packets: a link, not a shaper with a large allowance).
	Burst int
	// Queue bounds the bytes waiting for the cap; beyond it packets are
	// dropped (default 100 ms at the current rate, at least 15 kB, and
	// following SetRate).
	Queue int64
	// Delay is the one-way delay of the router (both directions).
	Delay time.Duration
	// Seed makes the loss pattern repeatable.
	Seed uint64
}

// unlimited stands in for "no cap": the token bucket needs a rate.
const unlimited = 1 << 40

// Network is the virtual network: the focus host, the client host and
// the path between them.
type Network struct {
	Router *vnet.Router
	Focus  *vnet.Net
	Client *vnet.Net

	tbf   *vnet.TBFQueue
	queue *vnet.Queue
	// autoQueue is set when the queue's bound follows the rate.
	autoQueue bool

	mu       sync.Mutex
	rng      *rand.Rand
	downLoss float64 // towards the client
	upLoss   float64 // towards the focus
	focusIP  net.IP
	clientIP net.IP
}

// New builds and starts the network.
func New(o Options) (*Network, error) {
	logs := logging.NewDefaultLoggerFactory()
	logs.DefaultLogLevel = logging.LogLevelError
	router, err := vnet.NewRouter(&vnet.RouterConfig{CIDR: "10.0.0.0/24", MinDelay: o.Delay, LoggerFactory: logs})
	if err != nil {
		return nil, fmt.Errorf("vnettest: router: %w", err)
	}
	n := &Network{
		Router:   router,
		rng:      rand.New(rand.NewPCG(o.Seed, 0x5eed)),
		focusIP:  net.ParseIP(FocusIP),
		clientIP: net.ParseIP(ClientIP),
	}
	if n.Focus, err = vnet.NewNet(&vnet.NetConfig{StaticIPs: []string{FocusIP}}); err != nil {
		return nil, fmt.Errorf("vnettest: focus net: %w", err)
	}
	if n.Client, err = vnet.NewNet(&vnet.NetConfig{StaticIPs: []string{ClientIP}}); err != nil {
		return nil, fmt.Errorf("vnettest: client net: %w", err)
	}
	rate := o.Rate
	if rate <= 0 {
		rate = unlimited
	}
	burst := o.Burst
	if burst <= 0 {
		burst = 10_000
	}
	queue := o.Queue
	if queue <= 0 {
		n.autoQueue = true
		queue = defaultQueue(rate)
	}
	n.tbf = vnet.NewTBFQueue(rate, burst, queue)
	if n.queue, err = vnet.NewQueue(n.Client, n.tbf); err != nil {
		return nil, fmt.Errorf("vnettest: client queue: %w", err)
	}
	if err := router.AddNet(n.Focus); err != nil {
		n.queue.Close()
		return nil, fmt.Errorf("vnettest: add focus: %w", err)
	}
	if err := router.AddNet(n.queue); err != nil {
		n.queue.Close()
		return nil, fmt.Errorf("vnettest: add client: %w", err)
	}
	router.AddChunkFilter(n.lose)
	if err := router.Start(); err != nil {
		n.queue.Close()
		return nil, fmt.Errorf("vnettest: start: %w", err)
	}
	return n, nil
}

// lose is the router's chunk filter: it drops each packet with the loss
// ratio of its direction.
func (n *Network) lose(c vnet.Chunk) bool {
	a, ok := c.DestinationAddr().(*net.UDPAddr)
	if !ok {
		return true
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	p := n.upLoss
	if a.IP.Equal(n.clientIP) {
		p = n.downLoss
	}
	return p <= 0 || n.rng.Float64() >= p
}

// defaultQueue is the queue's bound at rate: 100 ms of it, at least
// 15 kB. Without a cap it is unbounded in practice.
func defaultQueue(rate int) int64 { return max(int64(rate/8/10), 15_000) }

// SetRate changes the cap towards the client, in bits per second; 0
// lifts it. Unless Options.Queue fixed it, the queue's bound follows:
// a cap set on an uncapped network gets a link's queue, not an
// unbounded one.
func (n *Network) SetRate(bps int) {
	if bps <= 0 {
		bps = unlimited
	}
	if n.autoQueue {
		n.tbf.SetSize(defaultQueue(bps))
	}
	n.tbf.SetRate(bps)
}

// SetLoss sets the fraction (0..1) of packets towards the client that
// are lost.
func (n *Network) SetLoss(ratio float64) {
	n.mu.Lock()
	n.downLoss = ratio
	n.mu.Unlock()
}

// SetUplinkLoss sets the fraction (0..1) of packets towards the focus
// that are lost.
func (n *Network) SetUplinkLoss(ratio float64) {
	n.mu.Lock()
	n.upLoss = ratio
	n.mu.Unlock()
}

// Engine starts the focus's engine on the focus host.
func (n *Network) Engine(log zerolog.Logger) (*rtc.Engine, error) {
	return rtc.New(rtc.Config{BindAddress: FocusIP, Net: n.Focus}, log)
}

// ClientAPI builds a pion API on the client host with what a browser
// brings: the default codecs (VP8 and the others, each with RTX), NACK
// generation and answering (with RTX where negotiated), sender and
// receiver reports, transport-wide sequence numbers on what it sends
// and transport-wide feedback on what it receives, and the MID and RID
// header extensions that simulcast needs (a sender must still put them
// on its packets itself: pion does not).
func (n *Network) ClientAPI() (*webrtc.API, error) {
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		return nil, fmt.Errorf("vnettest: codecs: %w", err)
	}
	if err := webrtc.ConfigureSimulcastExtensionHeaders(m); err != nil {
		return nil, fmt.Errorf("vnettest: simulcast extensions: %w", err)
	}
	reg := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(m, reg); err != nil {
		return nil, fmt.Errorf("vnettest: interceptors: %w", err)
	}
	if err := webrtc.ConfigureTWCCHeaderExtensionSender(m, reg); err != nil {
		return nil, fmt.Errorf("vnettest: twcc: %w", err)
	}
	var s webrtc.SettingEngine
	s.SetNet(n.Client)
	s.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	s.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	return webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(reg), webrtc.WithSettingEngine(s)), nil
}

// Close stops the network. Close the engine and clients first.
func (n *Network) Close() error {
	return errors.Join(n.Router.Stop(), n.queue.Close())
}
