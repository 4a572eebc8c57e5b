package server

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/focus-sfu/focus/cascade"
	"github.com/focus-sfu/focus/config"
	"github.com/focus-sfu/focus/focus"
	"github.com/focus-sfu/focus/livekit"
	"github.com/focus-sfu/focus/mesh"
	"github.com/focus-sfu/focus/metrics"
	"github.com/focus-sfu/focus/rtc"
	"github.com/focus-sfu/focus/whip"
)

// loadInterval is how often the focus measures its load for the mesh.
const loadInterval = time.Second

// meshFrontend is the mesh node and the cascade trunks built on it, with
// the loop that gossips this focus's load.
type meshFrontend struct {
	node    *mesh.Node
	cascade *cascade.Cascade
	pull    *rtc.Engine // the trunks this focus dials
	tls     *trunkTLS   // nil without mesh.trunk_tls
	sfu     *focus.SFU
	cancel  context.CancelFunc
	done    sync.WaitGroup
}

// newMesh binds the gossip port and builds the cascade. Nothing is joined
// until start.
func newMesh(cfg config.Config, mainAddr net.Addr, log zerolog.Logger, engine *rtc.Engine, sfu *focus.SFU) (_ *meshFrontend, err error) {
	mc := cfg.Mesh
	listenAddr := mainAddr.String()
	bindHost, bindPort, err := splitHostPort(mc.Bind)
	if err != nil {
		return nil, &config.Error{Key: "mesh.bind", Problem: err.Error()}
	}
	var tt *trunkTLS
	tlsAddr := ""
	if mc.TrunkTLS.Listen != "" {
		if tt, err = newTrunkTLS(mc.TrunkTLS); err != nil {
			return nil, err
		}
		tlsAddr = tt.ln.Addr().String()
		defer func() {
			if err != nil {
				_ = tt.ln.Close()
			}
		}()
	}
	var advHost string
	var advPort int
	if mc.Advertise != "" {
		if advHost, advPort, err = splitHostPort(mc.Advertise); err != nil {
			return nil, &config.Error{Key: "mesh.advertise", Problem: err.Error()}
		}
	}
	node, err := mesh.New(mesh.Config{
		NodeName:       mc.NodeNameOrDefault(),
		BindAddr:       bindHost,
		BindPort:       bindPort,
		AdvertiseAddr:  advHost,
		AdvertisePort:  advPort,
		Seeds:          mc.Seeds,
		GossipKey:      mc.GossipKeyBytes(),
		RejoinInterval: mc.RejoinInterval,
		Identity:       meshIdentity(cfg, listenAddr, tlsAddr),
		Log:            log.With().Str("component", "mesh").Logger(),
	})
	if err != nil {
		return nil, fmt.Errorf("server: mesh: %w", err)
	}
	// Trunks this focus dials go out of a port of their own: two foci
	// pulling from each other between the same two ports would be two
	// connections one port's ICE demultiplexer cannot tell apart.
	pullCfg := engineConfig(cfg, mainAddr)
	pullCfg.UDPPort = 0
	pullCfg.ICELite = false // the dialling side controls ICE
	pull, err := rtc.New(pullCfg, log.With().Str("component", "rtc").Str("engine", "trunks").Logger())
	if err != nil {
		_ = node.Close()
		return nil, fmt.Errorf("server: cascade: %w", err)
	}
	c, err := cascade.New(cascade.Options{
		SFU:         sfu,
		Engine:      engine,
		PullEngine:  pull,
		Directory:   node,
		Holdings:    node.SetHoldings,
		Secret:      []byte(mc.TrunkSecret),
		Mirror:      mirrored,
		IdleTimeout: mc.TrunkIdleTimeout,
		ClientTLS:   clientTLS(tt),
		Log:         log.With().Str("component", "cascade").Logger(),
	})
	if err != nil {
		_ = pull.Close()
		_ = node.Close()
		return nil, fmt.Errorf("server: cascade: %w", err)
	}
	return &meshFrontend{node: node, cascade: c, pull: pull, tls: tt, sfu: sfu}, nil
}

// clientTLS is the TLS configuration of this focus's trunk requests:
// nil (the system's defaults) without mutual TLS.
func clientTLS(tt *trunkTLS) *tls.Config {
	if tt == nil {
		return nil
	}
	return tt.client
}

// mirrored reports whether a remote conference is shown here before any
// local participant is in it: WHIP rooms are, because a WHEP viewer looks
// for a room's tracks before it joins. Call members (LiveKit, MSC3898)
// join first, and the conference is proxied in when they do.
func mirrored(names []string) bool {
	return slices.ContainsFunc(names, func(n string) bool { return strings.HasPrefix(n, string(whip.ConferenceID(""))) })
}

// meshIdentity is what this focus tells the mesh about itself: where its
// trunk endpoint is, and the Matrix device that m.foci.active names.
func meshIdentity(cfg config.Config, listenAddr, tlsAddr string) mesh.Identity {
	id := mesh.Identity{TrunkURL: cfg.Mesh.TrunkURLOrDefault(listenAddr, tlsAddr)}
	if cfg.LiveKit.Enabled {
		id.LiveKitURL = cfg.LiveKit.URLOrDefault(listenAddr)
	}
	if cfg.Matrix.Enabled {
		id.MatrixUserID = "@" + cfg.Matrix.BotLocalpart + ":" + cfg.Matrix.ServerName
		id.MatrixDeviceID = cfg.Matrix.DeviceID
	}
	return id
}

func splitHostPort(s string) (string, int, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return "", 0, err
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return "", 0, err
	}
	return host, p, nil
}

// start joins the mesh and gossips the load until close.
func (m *meshFrontend) start() {
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	m.node.Start(ctx)
	m.done.Add(1)
	go func() {
		defer m.done.Done()
		m.gossipLoad(ctx)
	}()
}

// gossipLoad measures participants, forwarded bit rate and CPU every
// loadInterval and hands them to the mesh.
func (m *meshFrontend) gossipLoad(ctx context.Context) {
	t := time.NewTicker(loadInterval)
	defer t.Stop()
	lastBytes, lastCPU, last := m.outBytes(), processCPU(), time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			bytes, cpu := m.outBytes(), processCPU()
			dt := now.Sub(last).Seconds()
			if dt <= 0 {
				continue
			}
			m.node.SetLoad(mesh.Load{
				Participants: m.sfu.Participants(),
				BitrateBps:   uint64(float64(bytes-lastBytes) * 8 / dt),
				CPU:          (cpu - lastCPU).Seconds() / dt,
			})
			lastBytes, lastCPU, last = bytes, cpu, now
		}
	}
}

func (m *meshFrontend) outBytes() uint64 {
	st := m.sfu.Stats()
	return st.Audio.BytesOut + st.Video.BytesOut
}

// processCPU is the CPU time this process has used, user and system.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// place chooses the focus that takes a participant of LiveKit room
// name, for the token service (see placeRoom).
func (m *meshFrontend) place(name string) string {
	return placeRoom(m.node.Nodes(), m.node.Holdings, string(livekit.ConferenceID(name)))
}

// placeRoom chooses, among nodes, the focus that takes a participant of
// conference conf: one that already holds it (this one first), or else
// the least loaded alive focus that serves LiveKit (this one on a tie).
// It returns that focus's LiveKit URL, or "" for this focus.
func placeRoom(nodes []mesh.NodeInfo, holdings func(node string) []mesh.Conference, conf string) string {
	var holder, idlest *mesh.NodeInfo
	for _, n := range nodes {
		if n.State != mesh.StateAlive || (!n.Self && n.Identity.LiveKitURL == "") {
			continue
		}
		for _, c := range holdings(n.Name) {
			if slices.Contains(c.Names, conf) && (holder == nil || n.Self) {
				holder = &n
			}
		}
		if idlest == nil || n.Load.Participants < idlest.Load.Participants ||
			n.Load.Participants == idlest.Load.Participants && n.Self {
			idlest = &n
		}
	}
	chosen := holder
	if chosen == nil {
		chosen = idlest
	}
	if chosen == nil || chosen.Self {
		return ""
	}
	return chosen.Identity.LiveKitURL
}

// close ends the trunks, then leaves the mesh.
func (m *meshFrontend) close() error {
	if m.cancel != nil {
		m.cancel()
	}
	m.done.Wait()
	m.cascade.Close()
	return errors.Join(m.pull.Close(), m.node.Close())
}

// meshStatus is the body of GET /api/mesh.
type meshStatus struct {
	Self    string         `json:"self"`
	Nodes   []meshNode     `json:"nodes"`
	Cascade cascade.Status `json:"cascade"`
}

// meshNode is one node in GET /api/mesh.
type meshNode struct {
	Name           string  `json:"name"`
	Addr           string  `json:"addr"`
	State          string  `json:"state"`
	Self           bool    `json:"self,omitempty"`
	TrunkURL       string  `json:"trunk_url,omitempty"`
	LiveKitURL     string  `json:"livekit_url,omitempty"`
	MatrixUserID   string  `json:"matrix_user_id,omitempty"`
	MatrixDeviceID string  `json:"matrix_device_id,omitempty"`
	Participants   int     `json:"participants"`
	BitrateBps     uint64  `json:"bitrate_bps"`
	CPU            float64 `json:"cpu"`
	Conferences    int     `json:"conferences"`
	Version        uint64  `json:"version"`
}

// statusHandler serves GET /api/mesh: the nodes, their state and load,
// and the trunks with what they carry.
func (m *meshFrontend) statusHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !readOnly(w, r, "application/json") {
			return
		}
		st := meshStatus{Self: m.node.Self(), Nodes: []meshNode{}, Cascade: m.cascade.Status()}
		for _, n := range m.node.Nodes() {
			st.Nodes = append(st.Nodes, meshNode{
				Name: n.Name, Addr: n.Addr, State: string(n.State), Self: n.Self,
				TrunkURL: n.Identity.TrunkURL, LiveKitURL: n.Identity.LiveKitURL,
				MatrixUserID: n.Identity.MatrixUserID, MatrixDeviceID: n.Identity.MatrixDeviceID,
				Participants: n.Load.Participants, BitrateBps: n.Load.BitrateBps, CPU: n.Load.CPU,
				Conferences: n.Conferences, Version: n.Version,
			})
		}
		_ = json.NewEncoder(w).Encode(st)
	})
}

// place is the livekit token service's placement (TokenConfig.Place):
// none without a mesh.
func (s *Server) place(room string) string {
	if s.mesh == nil {
		return ""
	}
	return s.mesh.place(room)
}

// cascadeCounts are the mesh's and trunks' figures for /metrics.
func (m *meshFrontend) cascadeCounts() metrics.Cascade {
	st := m.cascade.Stats()
	out := metrics.Cascade{
		Nodes:             map[string]int{},
		Trunks:            map[string]int{},
		Subscriptions:     map[string]int{"pull": st.Subscriptions, "export": st.Exports},
		PacketsIn:         st.PacketsIn,
		PacketsOut:        st.PacketsOut,
		BytesIn:           st.BytesIn,
		BytesOut:          st.BytesOut,
		HeartbeatFailures: st.HeartbeatFailures,
		Refused:           st.RefusedRequests,
	}
	for _, n := range m.node.Nodes() {
		out.Nodes[string(n.State)]++
	}
	for _, t := range m.cascade.Status().Trunks {
		if t.State == "open" {
			out.Trunks[t.Direction]++
		}
	}
	return out
}
