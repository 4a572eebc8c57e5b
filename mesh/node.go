package mesh

import (
	"context"
	"fmt"
	"log"
	"math"
	"net"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/rs/zerolog"
)

// memberlist tuning; the package comment explains the numbers.
const (
	probeInterval           = 400 * time.Millisecond
	probeTimeout            = 200 * time.Millisecond
	suspicionMult           = 3
	suspicionMaxTimeoutMult = 2
	gossipInterval          = 100 * time.Millisecond
	pushPullInterval        = 10 * time.Second
	tcpTimeout              = 3 * time.Second
	deadNodeReclaimTime     = time.Second
	retransmitMult          = 4
	// label keeps other memberlist clusters (Consul, Serf) on the same
	// port from mixing with the mesh.
	label = "focus-mesh"
)

// Timing of this package's own work.
const (
	defaultRejoinInterval = 15 * time.Second
	loadInterval          = time.Second            // SetLoad gossips at most this often
	wantDelay             = 250 * time.Millisecond // lets a join's push/pull arrive before asking
	coalesceDelay         = 20 * time.Millisecond  // OnChange waits this long for the rest of a burst
	byeWait               = 500 * time.Millisecond // Close's farewell to each member
	leaveTimeout          = time.Second            // memberlist's Leave
	closeWait             = tcpTimeout + time.Second
	forgetAfter           = 2 * time.Minute // a dead or left node stays listed this long
	joinBackoffMin        = 500 * time.Millisecond
)

// Node is this focus's membership in the mesh. It implements Directory.
type Node struct {
	cfg     Config
	log     zerolog.Logger
	ml      *memberlist.Memberlist // nil in unit tests of the state logic
	queue   *memberlist.TransmitLimitedQueue
	addr    string
	wantMsg []byte

	mu      sync.Mutex
	self    localState
	states  map[string]*heldState // other nodes' states, by name
	members map[string]*member    // other nodes as memberlist reports them
	subs    map[*subscriber]struct{}
	work    work
	closed  bool
	// movedPast is when this node last moved its version past a newer
	// state of itself from the mesh.
	movedPast      time.Time
	namesakeLogged time.Time

	numNodes  atomic.Int64 // alive nodes, this one included
	kick      chan struct{}
	done      chan struct{}
	wg        sync.WaitGroup
	startOnce sync.Once
	closeOnce sync.Once
	closeErr  error
	metaOnce  sync.Once
}

var _ Directory = (*Node)(nil)

type localState struct {
	version uint64
	load    Load
	confs   []Conference
	left    bool
}

// heldState is another node's state as last accepted. It is never
// modified after it is stored, so readers may use it outside the lock.
type heldState struct {
	version  uint64
	identity Identity
	load     Load
	confs    []Conference
	left     bool // the node said it is leaving
	received time.Time
}

type member struct {
	ip           net.IP
	port         uint16
	state        NodeState // StateAlive, StateDead or StateLeft
	since        time.Time // of the last change of state
	identity     Identity  // from the metadata
	metaVersion  uint64    // from the metadata
	lastVersion  uint64    // of the state dropped when the node went
	suspectUntil time.Time
}

func (m *member) addr() string {
	if m.ip == nil {
		return ""
	}
	return net.JoinHostPort(m.ip.String(), strconv.Itoa(int(m.port)))
}

// work is what the send loop has to do.
type work struct {
	publishNow  bool
	loadPending bool
	lastPublish time.Time
	wants       map[string]time.Time // members to ask for their state, and when
	replies     map[string]struct{}  // members that asked for this node's state
}

// New makes a node and binds its gossip port. It joins nothing until
// Start.
func New(cfg Config) (*Node, error) {
	if err := validName(cfg.NodeName); err != nil {
		return nil, fmt.Errorf("mesh: node name: %w", err)
	}
	if cfg.GossipKey != nil {
		if err := memberlist.ValidateKey(cfg.GossipKey); err != nil {
			return nil, fmt.Errorf("mesh: gossip key is %d bytes; it must be 16, 24 or 32 (AES-128, -192 or -256)", len(cfg.GossipKey))
		}
	}
	for _, s := range cfg.Seeds {
		if _, _, err := splitSeed(s); err != nil {
			return nil, fmt.Errorf("mesh: seed %q: %w", s, err)
		}
	}
	if cfg.RejoinInterval <= 0 {
		cfg.RejoinInterval = defaultRejoinInterval
	}
	if cfg.BindAddr == "" {
		cfg.BindAddr = "0.0.0.0"
	}
	n := newNode(cfg)
	if cfg.GossipKey == nil {
		n.log.Warn().Msg("gossip is plain text: set a gossip key to encrypt it")
	}

	mc := memberlist.DefaultLANConfig()
	mc.Name = cfg.NodeName
	mc.BindAddr = cfg.BindAddr
	mc.BindPort = cfg.BindPort
	mc.AdvertiseAddr = cfg.AdvertiseAddr
	mc.AdvertisePort = cfg.AdvertisePort
	if mc.AdvertisePort == 0 {
		mc.AdvertisePort = cfg.BindPort // memberlist fills in a port it picked itself
	}
	mc.ProbeInterval = probeInterval
	mc.ProbeTimeout = probeTimeout
	mc.SuspicionMult = suspicionMult
	mc.SuspicionMaxTimeoutMult = suspicionMaxTimeoutMult
	mc.GossipInterval = gossipInterval
	mc.PushPullInterval = pushPullInterval
	mc.TCPTimeout = tcpTimeout
	mc.DeadNodeReclaimTime = deadNodeReclaimTime
	mc.RetransmitMult = retransmitMult
	mc.Label = label
	if cfg.GossipKey != nil {
		mc.SecretKey = slices.Clone(cfg.GossipKey)
	}
	d := delegate{n}
	mc.Delegate = d
	mc.Events = d
	mc.Logger = log.New(logWriter{n}, "", 0)

	ml, err := memberlist.Create(mc)
	if err != nil {
		return nil, fmt.Errorf("mesh: gossip on %s:%d: %w", cfg.BindAddr, cfg.BindPort, err)
	}
	n.ml = ml
	self := ml.LocalNode()
	n.addr = net.JoinHostPort(self.Addr.String(), strconv.Itoa(int(self.Port)))
	n.log.Info().Str("addr", n.addr).Bool("encrypted", cfg.GossipKey != nil).Msg("gossip bound")

	n.wg.Add(1)
	go n.sendLoop()
	return n, nil
}

// newNode makes the state of a node without memberlist.
func newNode(cfg Config) *Node {
	n := &Node{
		cfg:     cfg,
		log:     cfg.Log,
		states:  make(map[string]*heldState),
		members: make(map[string]*member),
		subs:    make(map[*subscriber]struct{}),
		kick:    make(chan struct{}, 1),
		done:    make(chan struct{}),
		work: work{
			wants:   make(map[string]time.Time),
			replies: make(map[string]struct{}),
		},
	}
	n.self.version = uint64(time.Now().UnixNano())
	n.numNodes.Store(1)
	n.queue = &memberlist.TransmitLimitedQueue{
		NumNodes:       func() int { return int(n.numNodes.Load()) },
		RetransmitMult: retransmitMult,
	}
	n.wantMsg, _ = encode(kindWant, wireWant{From: cfg.NodeName})
	return n
}

// Self is this node's name.
func (n *Node) Self() string { return n.cfg.NodeName }

// Addr is the gossip address the other nodes reach this one at, host:port.
func (n *Node) Addr() string { return n.addr }

// SetHoldings replaces this node's holdings and gossips them with a new
// version. It keeps a copy of cs.
func (n *Node) SetHoldings(cs []Conference) {
	c := copyConferences(cs)
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.self.left || reflect.DeepEqual(c, n.self.confs) {
		return
	}
	n.self.confs = c
	n.self.version++
	n.work.publishNow = true
	n.wakeLocked()
	n.changedLocked()
}

// SetLoad replaces this node's load and gossips it with a new version, no
// more than once a second: a burst of calls sends the last value.
func (n *Node) SetLoad(l Load) {
	if l.Participants < 0 {
		l.Participants = 0
	}
	if math.IsNaN(l.CPU) || math.IsInf(l.CPU, 0) || l.CPU < 0 {
		l.CPU = 0
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.self.left || l == n.self.load {
		return
	}
	n.self.load = l
	n.self.version++
	n.work.loadPending = true
	n.wakeLocked()
	n.changedLocked()
}

// Nodes lists the known nodes sorted by name, this one included.
func (n *Node) Nodes() []NodeInfo {
	now := time.Now()
	n.mu.Lock()
	out := make([]NodeInfo, 0, len(n.members)+1)
	out = append(out, n.selfInfoLocked())
	for name, m := range n.members {
		out = append(out, n.memberInfoLocked(name, m, now))
	}
	n.mu.Unlock()
	slices.SortFunc(out, func(a, b NodeInfo) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Node describes one node.
func (n *Node) Node(name string) (NodeInfo, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if name == n.cfg.NodeName {
		return n.selfInfoLocked(), true
	}
	m := n.members[name]
	if m == nil {
		return NodeInfo{}, false
	}
	return n.memberInfoLocked(name, m, time.Now()), true
}

// Holdings are the conferences a node holds, as a deep copy. They are
// empty unless the node is alive or suspect.
func (n *Node) Holdings(node string) []Conference {
	n.mu.Lock()
	var confs []Conference
	if node == n.cfg.NodeName {
		confs = n.self.confs
	} else if m := n.members[node]; m != nil && m.state == StateAlive {
		if s := n.states[node]; s != nil && !s.left {
			confs = s.confs
		}
	}
	n.mu.Unlock()
	// Stored holdings are never modified, only replaced, so the copy
	// needs no lock.
	return copyConferences(confs)
}

func (n *Node) selfInfoLocked() NodeInfo {
	st := StateAlive
	if n.self.left {
		st = StateLeft
	}
	return NodeInfo{
		Name:        n.cfg.NodeName,
		Addr:        n.addr,
		State:       st,
		Self:        true,
		Identity:    n.cfg.Identity,
		Load:        n.self.load,
		Version:     n.self.version,
		Conferences: len(n.self.confs),
	}
}

func (n *Node) memberInfoLocked(name string, m *member, now time.Time) NodeInfo {
	info := NodeInfo{
		Name:     name,
		Addr:     m.addr(),
		State:    m.state,
		Identity: m.identity,
	}
	if m.state != StateAlive {
		return info // its state is dropped
	}
	if now.Before(m.suspectUntil) {
		info.State = StateSuspect
	}
	if s := n.states[name]; s != nil {
		info.Identity = s.identity
		info.Load = s.load
		info.Version = s.version
		if s.left {
			info.State = StateLeft // said farewell; memberlist will follow
		} else {
			info.Conferences = len(s.confs)
		}
	}
	return info
}

// selfWireLocked is this node's state as sent.
func (n *Node) selfWireLocked() wireState {
	return wireState{
		Name:     n.cfg.NodeName,
		Version:  n.self.version,
		Left:     n.self.left,
		Identity: toWireIdentity(n.cfg.Identity),
		Load:     wireLoad(n.self.load),
		Confs:    toWireConfs(n.self.confs),
	}
}

func (h *heldState) wire(name string) wireState {
	return wireState{
		Name:     name,
		Version:  h.version,
		Left:     h.left,
		Identity: toWireIdentity(h.identity),
		Load:     wireLoad(h.load),
		Confs:    toWireConfs(h.confs),
	}
}

// mergeLocked applies a remote node's state. changed reports that the
// directory changed; relay that the state is news worth passing on.
func (n *Node) mergeLocked(ws *wireState, now time.Time) (changed, relay bool) {
	if ws.Name == n.cfg.NodeName {
		if ws.Version <= n.self.version || n.self.left {
			return false, false // our own news coming back
		}
		// Someone holds a newer state of this node than this node
		// does: an earlier run of it, whose clock was ahead. Move past
		// it so that this run's state wins. Two running nodes with one
		// name would move past each other forever, so this happens at
		// most once per push/pull interval.
		if !n.movedPast.IsZero() && now.Sub(n.movedPast) < pushPullInterval {
			if now.Sub(n.namesakeLogged) >= pushPullInterval {
				n.namesakeLogged = now
				n.log.Error().Uint64("version", ws.Version).
					Msg("another node gossips under this node's name; node names must be unique")
			}
			return false, false
		}
		n.log.Info().Uint64("version", ws.Version).Msg("the mesh holds a newer state of this node (an earlier run?); moving past it")
		n.movedPast = now
		n.self.version = ws.Version + 1
		n.work.publishNow = true
		n.wakeLocked()
		return true, false
	}
	m := n.members[ws.Name]
	if m != nil && m.state != StateAlive {
		// A dead or left node's state stays dropped. Only its
		// farewell counts, to tell a leave from a death.
		if ws.Left && m.state == StateDead && ws.Version > m.lastVersion {
			m.state = StateLeft
			m.lastVersion = ws.Version
			return true, false
		}
		return false, false
	}
	if held := n.states[ws.Name]; held != nil && ws.Version <= held.version {
		return false, false
	}
	n.states[ws.Name] = &heldState{
		version:  ws.Version,
		identity: ws.Identity.identity(),
		load:     Load(ws.Load),
		confs:    fromWireConfs(ws.Confs),
		left:     ws.Left,
		received: now,
	}
	// A node whose news arrives before memberlist reports it is kept
	// anyway: the report usually follows within milliseconds. It is
	// not listed, and its holdings are not shown, until then.
	return m != nil, true
}

// applyStates merges states from a remote node. raw, when set, is the
// message that carried the single state, to pass on as it is.
func (n *Node) applyStates(states []wireState, raw []byte) {
	now := time.Now()
	relayed := false
	n.mu.Lock()
	changed := false
	for i := range states {
		c, r := n.mergeLocked(&states[i], now)
		changed = changed || c
		relayed = relayed || r
	}
	if changed {
		n.changedLocked()
	}
	n.mu.Unlock()
	if relayed && raw != nil && len(raw) <= broadcastMaxBytes {
		n.queue.QueueBroadcast(&broadcast{name: states[0].Name, msg: slices.Clone(raw)})
	}
}

// handleMessage handles a message from a remote node (broadcast or sent).
func (n *Node) handleMessage(b []byte) {
	ws, want, err := decodeMessage(b)
	if err != nil {
		n.log.Warn().Err(err).Int("bytes", len(b)).Msg("dropped a malformed gossip message")
		return
	}
	if want != nil {
		n.mu.Lock()
		if !n.closed && want.From != n.cfg.NodeName {
			n.work.replies[want.From] = struct{}{}
			n.wakeLocked()
		}
		n.mu.Unlock()
		return
	}
	n.applyStates([]wireState{*ws}, b)
}

// localState is the push/pull state: every state this node knows of a
// node it believes alive, its own included.
func (n *Node) localState() []byte {
	n.mu.Lock()
	p := wirePush{States: make([]wireState, 0, len(n.states)+1)}
	p.States = append(p.States, n.selfWireLocked())
	for name, s := range n.states {
		if m := n.members[name]; m != nil && m.state == StateAlive {
			p.States = append(p.States, s.wire(name))
		}
	}
	n.mu.Unlock()
	b, err := encode(kindPush, p)
	if err != nil {
		n.log.Error().Err(err).Msg("encode push/pull state")
		return nil
	}
	if len(b) > maxMessageBytes {
		n.log.Error().Int("bytes", len(b)).Int("limit", maxMessageBytes).Msg("push/pull state too large; the others drop it")
	}
	return b
}

// mergeRemoteState merges a remote node's push/pull state.
func (n *Node) mergeRemoteState(b []byte) {
	states, err := decodePush(b)
	if err != nil {
		n.log.Warn().Err(err).Int("bytes", len(b)).Msg("dropped a malformed push/pull state")
		return
	}
	n.applyStates(states, nil)
}

// memberUp records that memberlist reports a node alive (joined, back,
// or with new metadata).
func (n *Node) memberUp(name string, ip net.IP, port uint16, meta []byte) {
	if name == n.cfg.NodeName {
		return
	}
	wm, merr := decodeMeta(meta)
	now := time.Now()
	n.mu.Lock()
	defer n.mu.Unlock()
	m := n.members[name]
	if m == nil {
		m = &member{}
		n.members[name] = m
	}
	joined := m.state != StateAlive
	if joined {
		m.state = StateAlive
		m.since = now
		n.numNodes.Add(1)
	}
	m.ip, m.port = slices.Clone(ip), port
	m.suspectUntil = time.Time{}
	if merr == nil {
		m.identity = Identity{TrunkURL: wm.TrunkURL, MatrixUserID: wm.UserID, MatrixDeviceID: wm.DeviceID, LiveKitURL: wm.LiveKitURL}
		m.metaVersion = wm.Version
	} else {
		n.log.Debug().Err(merr).Str("node", name).Msg("undecodable node metadata")
	}
	if held := n.states[name]; held == nil || held.version < m.metaVersion {
		if _, ok := n.work.wants[name]; !ok {
			n.work.wants[name] = now.Add(wantDelay)
			n.wakeLocked()
		}
	}
	if joined {
		n.log.Info().Str("node", name).Str("addr", m.addr()).Msg("node joined")
	}
	n.changedLocked()
}

// memberDown records that memberlist reports a node dead or left, and
// drops its state.
func (n *Node) memberDown(name string, ip net.IP, port uint16) {
	if name == n.cfg.NodeName {
		return
	}
	now := time.Now()
	n.mu.Lock()
	defer n.mu.Unlock()
	m := n.members[name]
	if m == nil {
		m = &member{ip: slices.Clone(ip), port: port, state: StateDead, since: now}
		n.members[name] = m
		n.changedLocked()
		return
	}
	if m.state != StateAlive {
		return
	}
	m.state = StateDead
	held := n.states[name]
	if held != nil {
		if held.left {
			m.state = StateLeft
		}
		m.lastVersion = held.version
	}
	m.since = now
	m.suspectUntil = time.Time{}
	delete(n.states, name)
	delete(n.work.wants, name)
	delete(n.work.replies, name)
	n.numNodes.Add(-1)
	n.log.Info().Str("node", name).Str("state", string(m.state)).Msg("node gone")
	n.changedLocked()
}

// markSuspect records that a probe of a node failed. memberlist reports
// no event for it, only a log line; the mark lapses when the node is
// declared dead, reports itself alive, or the longest suspicion ends.
func (n *Node) markSuspect(name string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	m := n.members[name]
	if m == nil || m.state != StateAlive {
		return
	}
	m.suspectUntil = time.Now().Add(maxSuspicion(int(n.numNodes.Load())))
	n.changedLocked()
}

// maxSuspicion bounds how long memberlist keeps a node suspect, as
// memberlist computes it, plus a probe interval.
func maxSuspicion(nodes int) time.Duration {
	scale := math.Max(1, math.Log10(math.Max(1, float64(nodes))))
	d := time.Duration(float64(suspicionMaxTimeoutMult*suspicionMult) * scale * float64(probeInterval))
	return d + probeInterval
}

// prune forgets nodes that have been dead or left for a while, and states
// of nodes memberlist never reported.
func (n *Node) prune(now time.Time) {
	n.mu.Lock()
	defer n.mu.Unlock()
	changed := false
	for name, m := range n.members {
		if m.state != StateAlive && now.Sub(m.since) > forgetAfter {
			delete(n.members, name)
			changed = true
		}
	}
	for name, s := range n.states {
		if n.members[name] == nil && now.Sub(s.received) > forgetAfter {
			delete(n.states, name)
		}
	}
	if changed {
		n.changedLocked()
	}
}

// Close leaves the mesh: it tells every member, leaves memberlist
// (waiting at most a second), and shuts it down. It waits, briefly, for
// the node's goroutines, running OnChange callbacks included. Calls after
// the first return the first's result.
func (n *Node) Close() error {
	return n.shutdown(true)
}

// shutdown ends the node, gracefully or as if the process was killed
// (tests).
func (n *Node) shutdown(graceful bool) error {
	n.closeOnce.Do(func() {
		n.mu.Lock()
		n.closed = true
		var bye []byte
		var targets []target
		if graceful && n.ml != nil {
			n.self.left = true
			n.self.version++
			bye, _ = encode(kindState, n.selfWireLocked())
			targets = n.aliveTargetsLocked()
		}
		subs := n.subs
		n.subs = make(map[*subscriber]struct{})
		n.mu.Unlock()

		close(n.done)
		for s := range subs {
			s.cancel()
		}
		if n.ml != nil {
			if graceful {
				if len(bye) > 0 && len(bye) <= broadcastMaxBytes {
					n.queue.QueueBroadcast(&broadcast{name: n.cfg.NodeName, msg: bye})
				}
				n.sendAll(targets, bye, byeWait)
				if err := n.ml.Leave(leaveTimeout); err != nil {
					n.log.Debug().Err(err).Msg("leave")
				}
			}
			if err := n.ml.Shutdown(); err != nil {
				n.closeErr = fmt.Errorf("mesh: shut down gossip: %w", err)
			}
		}
		waited := make(chan struct{})
		go func() {
			n.wg.Wait()
			close(waited)
		}()
		select {
		case <-waited:
		case <-time.After(closeWait):
			n.log.Warn().Msg("goroutines still running after close")
		}
		n.log.Info().Bool("graceful", graceful).Msg("left the mesh")
	})
	return n.closeErr
}

// wakeLocked wakes the send loop.
func (n *Node) wakeLocked() {
	select {
	case n.kick <- struct{}{}:
	default:
	}
}

// changedLocked tells the OnChange subscribers.
func (n *Node) changedLocked() {
	for s := range n.subs {
		s.notify()
	}
}

// delegate is memberlist's view of a Node; it keeps memberlist's hooks
// out of Node's methods.
type delegate struct{ n *Node }

func (d delegate) NodeMeta(limit int) []byte {
	n := d.n
	n.mu.Lock()
	version := n.self.version
	n.mu.Unlock()
	b, complete := encodeMeta(n.cfg.NodeName, version, n.cfg.Identity, min(limit, metaMaxBytes))
	if !complete {
		n.metaOnce.Do(func() {
			n.log.Warn().Int("limit", min(limit, metaMaxBytes)).
				Msg("identity does not fit the node metadata; left out what does not fit (the state still carries it)")
		})
	}
	return b
}

func (d delegate) NotifyMsg(b []byte) { d.n.handleMessage(b) }

func (d delegate) GetBroadcasts(overhead, limit int) [][]byte {
	return d.n.queue.GetBroadcasts(overhead, limit)
}

func (d delegate) LocalState(join bool) []byte { return d.n.localState() }

func (d delegate) MergeRemoteState(b []byte, join bool) { d.n.mergeRemoteState(b) }

func (d delegate) NotifyJoin(m *memberlist.Node) { d.n.memberUp(m.Name, m.Addr, m.Port, m.Meta) }

func (d delegate) NotifyUpdate(m *memberlist.Node) { d.n.memberUp(m.Name, m.Addr, m.Port, m.Meta) }

func (d delegate) NotifyLeave(m *memberlist.Node) { d.n.memberDown(m.Name, m.Addr, m.Port) }

// broadcast is one node's state in the broadcast queue. A newer state of
// the same node replaces an older one still queued.
type broadcast struct {
	name string
	msg  []byte
}

func (b *broadcast) Invalidates(o memberlist.Broadcast) bool {
	ob, ok := o.(*broadcast)
	return ok && ob.name == b.name
}

func (b *broadcast) Name() string    { return "state/" + b.name }
func (b *broadcast) Message() []byte { return b.msg }
func (b *broadcast) Finished()       {}

// logWriter passes memberlist's log to zerolog at debug level, and
// watches it for failed probes (memberlist has no event for suspects).
type logWriter struct{ n *Node }

func (w logWriter) Write(p []byte) (int, error) {
	line := strings.TrimSpace(string(p))
	level := ""
	if strings.HasPrefix(line, "[") {
		if i := strings.IndexByte(line, ']'); i > 0 {
			level, line = strings.ToLower(line[1:i]), strings.TrimSpace(line[i+1:])
		}
	}
	line = strings.TrimPrefix(line, "memberlist: ")
	w.n.log.Debug().Str("memberlist", level).Msg(line)
	if name, ok := suspectIn(line); ok {
		w.n.markSuspect(name)
	}
	return len(p), nil
}

// suspectIn finds the node named in memberlist's "Suspect <name> has
// failed, no acks received".
func suspectIn(line string) (string, bool) {
	rest, ok := strings.CutPrefix(line, "Suspect ")
	if !ok {
		return "", false
	}
	name, ok := strings.CutSuffix(rest, " has failed, no acks received")
	return name, ok && name != ""
}

// subscriber is one OnChange registration.
type subscriber struct {
	fn       func()
	kick     chan struct{}
	stop     chan struct{}
	stopOnce sync.Once
}

func (s *subscriber) notify() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

func (s *subscriber) cancel() { s.stopOnce.Do(func() { close(s.stop) }) }

func (s *subscriber) run() {
	for {
		select {
		case <-s.stop:
			return
		case <-s.kick:
		}
		t := time.NewTimer(coalesceDelay)
		select {
		case <-s.stop:
			t.Stop()
			return
		case <-t.C:
		}
		select { // the call below covers what arrived meanwhile
		case <-s.kick:
		default:
		}
		s.fn()
	}
}

// OnChange registers fn to run after any change to what the directory
// reports, this node's own SetHoldings and SetLoad included. fn runs on
// a goroutine of its own, once for a burst of changes, about 20 ms after
// it began; changes during a call lead to one more call. cancel stops
// further calls (a call under way finishes). After Close, OnChange does
// nothing.
func (n *Node) OnChange(fn func()) (cancel func()) {
	s := &subscriber{fn: fn, kick: make(chan struct{}, 1), stop: make(chan struct{})}
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return func() {}
	}
	n.subs[s] = struct{}{}
	n.wg.Add(1)
	n.mu.Unlock()
	go func() {
		defer n.wg.Done()
		s.run()
	}()
	return func() {
		n.mu.Lock()
		delete(n.subs, s)
		n.mu.Unlock()
		s.cancel()
	}
}

// Start joins the seeds in the background, retrying with backoff until
// one answers, and then, every RejoinInterval, joins again each seed
// address that is not an alive member, until ctx ends or the node closes.
// Calls after the first do nothing.
func (n *Node) Start(ctx context.Context) {
	n.startOnce.Do(func() {
		n.mu.Lock()
		defer n.mu.Unlock()
		if n.closed || n.ml == nil {
			return
		}
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			n.joinLoop(ctx)
		}()
	})
}
