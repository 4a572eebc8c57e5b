package cascade

import (
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/focus-sfu/focus/focus"
	"github.com/focus-sfu/focus/mesh"
)

// The control loop owns the proxies, the demand for them, and the
// decisions about pulling trunks: which to dial, which are idle, which
// foci are held back after a trunk died. It runs on the cascade's
// goroutine (run); core events, directory changes and trunks hand it
// work through the cascade's queue, and a clock tick drives the rest.
type control struct {
	proxies  map[proxyKey]*proxy
	byPart   map[*focus.Participant]*proxy
	tracks   map[*focus.UpTrack]*proxyTrack
	nodes    map[string]*nodeState
	collided map[proxyKey]bool // proxies refused once, not to log again

	dirty    bool // reconcile the proxies at the next tick
	lastSync time.Time
	hold     holdingsState

	// Gauges for Stats, written by the loop.
	proxyParticipants atomic.Int64
	proxyTracks       atomic.Int64
}

// proxyKey names a remote participant: its node, the remote
// conference's first name, and its ID.
type proxyKey struct{ node, conf, participant string }

// proxy is the local stand-in of one remote participant.
type proxy struct {
	key    proxyKey
	part   *focus.Participant
	tracks map[string]*proxyTrack
}

// nodeState is what the control loop knows of one remote focus.
type nodeState struct {
	name string
	// down is set when a trunk from it died: its proxies are held back
	// until a new trunk is up.
	down bool
	// holds is set when it holds a conference this focus has: the proxies
	// it would have are the demand for a trunk that recovers it.
	holds     bool
	backoff   time.Duration
	nextDial  time.Time
	idleSince time.Time
	lastError string
}

func (ctl *control) init() {
	ctl.proxies = make(map[proxyKey]*proxy)
	ctl.byPart = make(map[*focus.Participant]*proxy)
	ctl.tracks = make(map[*focus.UpTrack]*proxyTrack)
	ctl.nodes = make(map[string]*nodeState)
	ctl.collided = make(map[proxyKey]bool)
	ctl.dirty = true
}

// run is the cascade's control loop.
func (c *Cascade) run() {
	defer close(c.loopDone)
	tick := time.NewTicker(c.timing.tick)
	defer tick.Stop()
	for {
		select {
		case <-c.stop:
			c.ctl.shutdown(c)
			return
		case <-c.q.signal:
			for _, fn := range c.q.take() {
				fn()
			}
		case now := <-tick.C:
			c.ctl.tick(c, now)
		}
	}
}

func (c *Cascade) directoryChanged() { c.ctl.dirty = true }

// onEvent takes the core's events on the goroutine that raised them and
// queues those the cascade needs.
func (c *Cascade) onEvent(ev focus.Event) {
	switch ev.(type) {
	case focus.DemandChanged, focus.TrackPublished, focus.TrackUnpublished,
		focus.ParticipantJoined, focus.ParticipantLeft:
		c.q.push(func() { c.ctl.event(c, ev) })
	}
}

// event handles one core event on the control loop.
func (ctl *control) event(c *Cascade, ev focus.Event) {
	now := time.Now()
	switch ev := ev.(type) {
	case focus.DemandChanged:
		pt := ctl.tracks[ev.Track]
		if pt == nil {
			return
		}
		pt.demandKnown = true
		pt.wanted = append(pt.wanted[:0], ev.Wanted...)
		for _, p := range pt.layers {
			if pt.isWanted(p.layer) {
				p.unwantedSince = time.Time{}
				ctl.pull(c, p, now)
			}
		}
	case focus.TrackPublished:
		if ev.Participant.Info().Origin == "" {
			ctl.hold.changed(now)
		}
	case focus.TrackUnpublished:
		if pt := ctl.tracks[ev.Track]; pt != nil {
			// A proxy track closed by someone else (the SFU closing).
			ctl.forgetTrack(c, pt)
			if px := ctl.byPart[ev.Participant]; px != nil {
				delete(px.tracks, pt.id)
			}
			return
		}
		if ev.Participant.Info().Origin == "" {
			ctl.hold.changed(now)
			up := ev.Track
			for _, t := range c.exportTrunks() {
				t.q.push(func() { t.exp.sourceGone(up) })
			}
		}
	case focus.ParticipantJoined:
		if ev.Participant.Info().Origin == "" {
			ctl.hold.changed(now)
			ctl.dirty = true
		}
	case focus.ParticipantLeft:
		p := ev.Participant
		if px := ctl.byPart[p]; px != nil {
			ctl.forgetProxy(c, px)
			return
		}
		if p.Info().Origin == "" {
			ctl.hold.changed(now)
			ctl.dirty = true
			return
		}
		if p.Info().Identity == viewerIdentity(p.Info().Origin) {
			for _, t := range c.exportTrunks() {
				if t.peer == p.Info().Origin {
					t.q.push(func() { t.exp.viewerLeft(p) })
				}
			}
		}
	}
}

// tick is the control loop's clock: reconcile the proxies when
// something changed (and every resync), act on demand, manage the
// pulling trunks, and publish the holdings.
func (ctl *control) tick(c *Cascade, now time.Time) {
	if ctl.dirty || now.Sub(ctl.lastSync) >= c.timing.resync {
		ctl.dirty = false
		ctl.lastSync = now
		ctl.reconcile(c)
	}
	wanted := make(map[string]bool)
	for _, pt := range ctl.tracks {
		for _, p := range pt.layers {
			if pt.isWanted(p.layer) {
				wanted[pt.node] = true
				p.unwantedSince = time.Time{}
				if p.trunk == nil {
					ctl.pull(c, p, now)
				}
				continue
			}
			if p.trunk == nil {
				continue
			}
			if p.unwantedSince.IsZero() {
				p.unwantedSince = now
			} else if now.Sub(p.unwantedSince) >= c.timing.grace {
				ctl.unpull(p, true)
			}
		}
	}
	ctl.trunks(c, now, wanted)
	ctl.hold.tick(c, now)
	ctl.publishHeldBack(c)
}

// publishHeldBack lists the foci held back for Status, when it changed.
func (ctl *control) publishHeldBack(c *Cascade) {
	var held []string
	for name, ns := range ctl.nodes {
		if ns.down {
			held = append(held, name)
		}
	}
	sort.Strings(held)
	if old := c.heldBack.Load(); old != nil && slices.Equal(*old, held) || old == nil && len(held) == 0 {
		return
	}
	c.heldBack.Store(&held)
}

// trunks dials the foci there is demand for, closes idle trunks, and
// forgets foci that left the mesh.
func (ctl *control) trunks(c *Cascade, now time.Time, wanted map[string]bool) {
	proxied := make(map[string]bool)
	for _, pt := range ctl.tracks {
		proxied[pt.node] = true
	}
	for name := range wanted {
		ctl.node(name)
	}
	for name, ns := range ctl.nodes {
		t := c.pullTrunk(name)
		if !nodeAlive(c.dir, name) {
			if t != nil {
				t.close("the focus left the mesh", closedByUs)
			}
			if ns.down {
				c.log.Info().Str("peer", name).Msg("a focus whose trunk died left the mesh")
			}
			delete(ctl.nodes, name)
			continue
		}
		recovering := ns.down && ns.holds
		if t == nil {
			if wanted[name] || recovering {
				ctl.dial(c, ns, now)
			}
			continue
		}
		if t.getState() == stateOpen && t.pullCount() == 0 && !wanted[name] && !recovering {
			// Idle: kept a while for the next pull, unless the focus has
			// no track here that could be pulled.
			limit := c.timing.idle
			if !proxied[name] {
				limit = c.timing.grace
			}
			if ns.idleSince.IsZero() {
				ns.idleSince = now
			} else if now.Sub(ns.idleSince) >= limit {
				t.close("idle: nothing pulled", closedByUs)
			}
			continue
		}
		ns.idleSince = time.Time{}
	}
}

func (ctl *control) node(name string) *nodeState {
	ns := ctl.nodes[name]
	if ns == nil {
		ns = &nodeState{name: name}
		ctl.nodes[name] = ns
	}
	return ns
}

// nodeAlive reports whether the directory lists node as a live member
// (suspect counts as alive).
func nodeAlive(d mesh.Directory, node string) bool {
	info, ok := d.Node(node)
	return ok && aliveState(info.State)
}

func aliveState(s mesh.NodeState) bool { return s == "alive" || s == "suspect" }

// dial starts a pulling trunk to ns, when its backoff allows.
func (ctl *control) dial(c *Cascade, ns *nodeState, now time.Time) {
	if now.Before(ns.nextDial) {
		return
	}
	info, ok := c.dir.Node(ns.name)
	url := info.Identity.TrunkURL
	if !ok || url == "" {
		ctl.failed(c, ns, now, "the directory has no trunk URL for it")
		return
	}
	t := newTrunk(c, ns.name, pulling)
	if err := c.startTrunk(t, func() error { return t.dial(url) }); err != nil {
		return
	}
	// The next attempt waits for this one to fail.
	ns.nextDial = now.Add(c.timing.connect)
	t.log.Debug().Str("url", url).Msg("dialling trunk")
}

// failed records a failed attempt to reach ns and backs off.
func (ctl *control) failed(c *Cascade, ns *nodeState, now time.Time, why string) {
	lo, hi := c.timing.backoff[0], c.timing.backoff[1]
	ns.backoff = min(max(lo, ns.backoff*2), hi)
	ns.nextDial = now.Add(ns.backoff)
	if why != ns.lastError {
		c.log.Warn().Str("peer", ns.name).Str("reason", why).Dur("retry_in", ns.backoff).Msg("cannot reach focus")
		ns.lastError = why
	}
}

// trunkOpened runs when a pulling trunk's data channel opens: a focus
// held back is proxied again, and everything wanted from it is pulled.
func (ctl *control) trunkOpened(c *Cascade, t *trunk) {
	if c.pullTrunk(t.peer) != t {
		return
	}
	ns := ctl.node(t.peer)
	if ns.down {
		c.log.Info().Str("peer", t.peer).Msg("trunk up again; the focus's participants are proxied again")
		ns.down = false
		ctl.dirty = true
		ctl.publishHeldBack(c)
	}
	ns.backoff, ns.nextDial, ns.lastError = 0, time.Time{}, ""
	now := time.Now()
	for _, pt := range ctl.tracks {
		if pt.node != t.peer {
			continue
		}
		for _, p := range pt.layers {
			if p.trunk == nil && pt.isWanted(p.layer) {
				ctl.pull(c, p, now)
			}
		}
	}
}

// trunkEnded runs when a pulling trunk has been released. A trunk that
// had opened and ended by the peer's or the network's doing takes the
// proxies of its focus with it until a new trunk is up; one that never
// opened is retried with backoff.
func (ctl *control) trunkEnded(c *Cascade, t *trunk) {
	for _, pt := range ctl.tracks {
		for _, p := range pt.layers {
			if p.trunk == t {
				p.trunk = nil
			}
		}
	}
	reason, how := t.closeReason()
	if how == closedByUs || c.isClosed() {
		return
	}
	ns := ctl.node(t.peer)
	now := time.Now()
	if !t.everOpen.Load() {
		ctl.failed(c, ns, now, reason)
		return
	}
	ns.down = true
	ns.backoff = 0
	ns.nextDial = now.Add(c.timing.backoff[0])
	n := ctl.removeProxiesOf(c, t.peer)
	ctl.publishHeldBack(c)
	c.log.Warn().Str("peer", t.peer).Str("reason", reason).Int("proxies", n).
		Msg("trunk died; the focus's proxies are removed until a new trunk is up")
}

// pullRefused runs when the exporter refused or ended the pull carried
// as trunk track id: it is asked again after a while if still wanted
// (the directory may lag).
func (ctl *control) pullRefused(c *Cascade, t *trunk, id, code string) {
	p := t.pulled(id)
	if p == nil || p.trunk != t {
		return
	}
	ctl.unpull(p, false)
	p.retryAt = time.Now().Add(c.timing.retry)
}

// pull subscribes one layer of a proxy track over the trunk to its
// origin, dialling one first when needed.
func (ctl *control) pull(c *Cascade, p *pull, now time.Time) {
	if p.trunk != nil || now.Before(p.retryAt) {
		return
	}
	ns := ctl.node(p.pt.node)
	if ns.down {
		return
	}
	t := c.pullTrunk(p.pt.node)
	if t == nil {
		ctl.dial(c, ns, now)
		return
	}
	if t.getState() != stateOpen {
		return // trunkOpened pulls it
	}
	ns.idleSince = time.Time{}
	if !t.subscribe(p) {
		p.retryAt = now.Add(c.timing.retry)
		return
	}
	p.trunk = t
}

// unpull ends a pull; tell says whether the exporter must be told.
func (ctl *control) unpull(p *pull, tell bool) {
	if p.trunk == nil {
		return
	}
	p.trunk.unsubscribe(p, tell)
	p.trunk = nil
}

// want is a proxy the directory asks for.
type want struct {
	target focus.ConferenceID // the local conference to join
	p      mesh.Participant
}

// reconcile makes the proxies match the directory: one per participant
// of every remote conference that is also local here (or mirrored),
// from every live focus not held back.
func (ctl *control) reconcile(c *Cascade) {
	desired := make(map[proxyKey]want)
	for _, ns := range ctl.nodes {
		ns.holds = false
	}
	for _, n := range c.dir.Nodes() {
		if n.Self || n.Name == c.self || !aliveState(n.State) {
			continue
		}
		for _, rc := range c.dir.Holdings(n.Name) {
			if len(rc.Names) == 0 {
				continue
			}
			target, ok := c.localTarget(rc.Names)
			if !ok {
				continue
			}
			ns := ctl.node(n.Name)
			ns.holds = true
			if ns.down {
				continue
			}
			for _, rp := range rc.Participants {
				if rp.ID != "" {
					desired[proxyKey{n.Name, rc.Names[0], rp.ID}] = want{target: target, p: rp}
				}
			}
		}
	}
	for key, px := range ctl.proxies {
		w, ok := desired[key]
		if !ok || !px.joined(c.sfu.Conference(w.target)) {
			ctl.removeProxy(c, px)
		}
	}
	for key := range ctl.collided {
		if _, ok := desired[key]; !ok {
			delete(ctl.collided, key)
		}
	}
	keys := make([]proxyKey, 0, len(desired))
	for key := range desired {
		keys = append(keys, key)
	}
	sort.Slice(keys, func(i, j int) bool {
		a, b := keys[i], keys[j]
		return a.node < b.node || a.node == b.node && (a.conf < b.conf || a.conf == b.conf && a.participant < b.participant)
	})
	for _, key := range keys {
		w := desired[key]
		px := ctl.proxies[key]
		if px == nil {
			if px = ctl.addProxy(c, key, w); px == nil {
				continue
			}
		}
		ctl.syncTracks(c, px, w.p.Tracks)
	}
	ctl.proxyParticipants.Store(int64(len(ctl.proxies)))
	ctl.proxyTracks.Store(int64(len(ctl.tracks)))
}

// localTarget returns the local conference a remote conference named
// names is proxied into: one of those names with a local participant,
// else the first name when Options.Mirror says so.
func (c *Cascade) localTarget(names []string) (focus.ConferenceID, bool) {
	for _, n := range names {
		if conf := c.sfu.Conference(focus.ConferenceID(n)); conf != nil && hasLocal(conf) {
			return conf.ID(), true
		}
	}
	if c.opts.Mirror != nil && c.opts.Mirror(names) {
		return focus.ConferenceID(names[0]), true
	}
	return "", false
}

// hasLocal reports whether a participant connected to this focus is in
// conf: not a proxy, not a hidden viewer of a trunk.
func hasLocal(conf *focus.Conference) bool {
	for _, p := range conf.Participants() {
		if p.Info().Origin == "" {
			return true
		}
	}
	return false
}

// joined reports whether px is still a participant of conf.
func (px *proxy) joined(conf *focus.Conference) bool {
	return conf != nil && px.part.Conference() == conf && conf.Participant(px.part.ID()) == px.part
}

// addProxy joins the proxy of a remote participant, with its ID.
func (ctl *control) addProxy(c *Cascade, key proxyKey, w want) *proxy {
	id := focus.ParticipantID(w.p.ID)
	if conf := c.sfu.Conference(w.target); conf != nil && conf.Participant(id) != nil {
		if !ctl.collided[key] {
			ctl.collided[key] = true
			c.log.Warn().Str("peer", key.node).Str("conf", string(w.target)).Str("participant", w.p.ID).
				Msg("a participant of that ID is here already; the remote one is not proxied")
		}
		return nil
	}
	part, err := c.sfu.Join(w.target, focus.ParticipantInfo{
		ID:       id,
		Identity: w.p.Identity,
		Role:     parseRole(w.p.Role),
		Origin:   key.node,
	})
	if err != nil {
		if !ctl.collided[key] {
			ctl.collided[key] = true
			c.log.Warn().Err(err).Str("peer", key.node).Str("conf", string(w.target)).Str("participant", w.p.ID).Msg("join proxy")
		}
		return nil
	}
	px := &proxy{key: key, part: part, tracks: make(map[string]*proxyTrack)}
	ctl.proxies[key] = px
	ctl.byPart[part] = px
	c.log.Info().Str("peer", key.node).Str("conf", string(part.Conference().ID())).Str("participant", w.p.ID).
		Str("identity", w.p.Identity).Msg("proxy joined")
	return px
}

// syncTracks makes a proxy's tracks match the directory's.
func (ctl *control) syncTracks(c *Cascade, px *proxy, tracks []mesh.Track) {
	seen := make(map[string]bool, len(tracks))
	for _, mt := range tracks {
		if mt.ID == "" || seen[mt.ID] {
			continue
		}
		seen[mt.ID] = true
		pt := px.tracks[mt.ID]
		if pt != nil && (!strings.EqualFold(pt.mime, mt.MimeType) || !slices.Equal(pt.rids, proxyLayers(mt))) {
			// Same ID, new codec or layers: a new track as far as
			// subscribers go.
			ctl.closeTrack(c, px, pt)
			pt = nil
		}
		if pt == nil {
			info, ok := c.proxyTrackInfo(mt)
			if !ok {
				continue
			}
			up, err := px.part.Publish(info, upstream{c: c, node: px.key.node})
			if err != nil {
				c.log.Warn().Err(err).Str("peer", px.key.node).Str("track", mt.ID).Msg("publish proxy track")
				continue
			}
			pt = &proxyTrack{node: px.key.node, conf: px.key.conf, id: mt.ID, mime: mt.MimeType, rids: info.Layers, up: up}
			for i := range up.Layers() {
				pt.layers = append(pt.layers, &pull{pt: pt, layer: i})
			}
			px.tracks[mt.ID] = pt
			ctl.tracks[up] = pt
		}
		if pt.up.Muted() != mt.Muted {
			pt.up.SetMuted(mt.Muted)
		}
		if !slices.Equal(pt.sizes, mt.Sizes) {
			pt.sizes = slices.Clone(mt.Sizes)
			sizes := make([]focus.Size, len(mt.Sizes))
			for i, s := range mt.Sizes {
				sizes[i] = focus.Size{Width: s.Width, Height: s.Height}
			}
			pt.up.SetLayerSizes(sizes)
		}
	}
	for id, pt := range px.tracks {
		if !seen[id] {
			ctl.closeTrack(c, px, pt)
		}
	}
}

// proxyTrackInfo describes a remote track for the core: its IDs, kind,
// source, codec and simulcast layers as at the origin, and the header
// extensions the way a trunk numbers them.
func (c *Cascade) proxyTrackInfo(mt mesh.Track) (focus.TrackInfo, bool) {
	var kind focus.Kind
	switch mt.Kind {
	case "audio":
		kind = focus.KindAudio
	case "video":
		kind = focus.KindVideo
	default:
		c.log.Debug().Str("track", mt.ID).Str("kind", mt.Kind).Msg("remote track of unknown kind; not proxied")
		return focus.TrackInfo{}, false
	}
	return focus.TrackInfo{
		ID:         focus.TrackID(mt.ID),
		StreamID:   mt.StreamID,
		Kind:       kind,
		Source:     parseSource(mt.Source),
		Codec:      focus.Codec{MimeType: mt.MimeType, ClockRate: mt.ClockRate, Channels: mt.Channels, Fmtp: mt.Fmtp},
		Layers:     proxyLayers(mt),
		Extensions: c.trunkExtensions(kind),
	}, true
}

// proxyLayers are the layers a proxy of mt has: the origin's RIDs for a
// video track with more than one, else none (one layer).
func proxyLayers(mt mesh.Track) []string {
	if mt.Kind != "video" || len(mt.Layers) < 2 {
		return nil
	}
	return slices.Clone(mt.Layers)
}

// closeTrack unpublishes one proxy track.
func (ctl *control) closeTrack(c *Cascade, px *proxy, pt *proxyTrack) {
	ctl.forgetTrack(c, pt)
	delete(px.tracks, pt.id)
	pt.up.Close()
}

// forgetTrack ends pt's pulls and drops it from the loop's maps.
func (ctl *control) forgetTrack(c *Cascade, pt *proxyTrack) {
	for _, p := range pt.layers {
		ctl.unpull(p, true)
	}
	delete(ctl.tracks, pt.up)
	ctl.proxyTracks.Store(int64(len(ctl.tracks)))
}

// removeProxy makes a proxy leave.
func (ctl *control) removeProxy(c *Cascade, px *proxy) {
	ctl.forgetProxy(c, px)
	px.part.Leave()
	c.log.Info().Str("peer", px.key.node).Str("participant", px.key.participant).Msg("proxy left")
}

// forgetProxy drops a proxy from the loop's maps.
func (ctl *control) forgetProxy(c *Cascade, px *proxy) {
	for _, pt := range px.tracks {
		ctl.forgetTrack(c, pt)
	}
	delete(ctl.proxies, px.key)
	delete(ctl.byPart, px.part)
	ctl.proxyParticipants.Store(int64(len(ctl.proxies)))
}

// removeProxiesOf removes every proxy of node, and returns how many.
func (ctl *control) removeProxiesOf(c *Cascade, node string) int {
	n := 0
	for key, px := range ctl.proxies {
		if key.node == node {
			ctl.removeProxy(c, px)
			n++
		}
	}
	return n
}

// shutdown removes every proxy as the loop stops.
func (ctl *control) shutdown(c *Cascade) {
	for _, px := range ctl.proxies {
		ctl.removeProxy(c, px)
	}
}

func parseRole(s string) focus.Role {
	for _, r := range []focus.Role{focus.RoleMember, focus.RoleIngress, focus.RoleViewer} {
		if r.String() == s {
			return r
		}
	}
	return focus.RoleMember
}

func parseSource(s string) focus.Source {
	for _, src := range []focus.Source{focus.SourceCamera, focus.SourceMicrophone, focus.SourceScreenShare, focus.SourceScreenShareAudio} {
		if src.String() == s {
			return src
		}
	}
	return focus.SourceUnknown
}
