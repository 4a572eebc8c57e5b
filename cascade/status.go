package cascade

import (
	"sort"
	"time"

	"github.com/pion/webrtc/v4"
)

// Status is what the cascade is doing, for an operator (GET /api/mesh).
type Status struct {
	// Node is this focus's name in the mesh.
	Node string `json:"node"`
	// Trunks are the live trunks, pulling ones first, by peer.
	Trunks []TrunkStatus `json:"trunks"`
	// ProxyParticipants and ProxyTracks count the proxies of remote
	// participants joined here, and their tracks.
	ProxyParticipants int `json:"proxy_participants"`
	ProxyTracks       int `json:"proxy_tracks"`
	// HeldBack lists the foci whose trunk died and whose proxies wait
	// for a new one, by name.
	HeldBack []string `json:"held_back,omitempty"`
}

// TrunkStatus describes one trunk.
type TrunkStatus struct {
	ID   string `json:"id"`
	Peer string `json:"peer"`
	// Direction is "pull" (this focus offered and receives) or "export"
	// (it answered and sends).
	Direction string    `json:"direction"`
	State     string    `json:"state"` // "connecting" or "open"
	Created   time.Time `json:"created"`
	// LastHeard is when the peer's last message arrived.
	LastHeard time.Time `json:"last_heard"`
	// Tracks are the subscriptions the trunk carries.
	Tracks []TrunkTrack `json:"tracks"`
	// Packets and bytes on the trunk's network path since it was made:
	// media, RTCP and the data channel, after encryption.
	PacketsIn  uint64 `json:"packets_in"`
	PacketsOut uint64 `json:"packets_out"`
	BytesIn    uint64 `json:"bytes_in"`
	BytesOut   uint64 `json:"bytes_out"`
	// BitrateIn and BitrateOut are bits per second over the last second
	// or so.
	BitrateIn  uint64 `json:"bitrate_in"`
	BitrateOut uint64 `json:"bitrate_out"`
}

// TrunkTrack is one layer of a track that a trunk carries.
type TrunkTrack struct {
	Conference string `json:"conference"`
	Track      string `json:"track"`
	// Layer is the simulcast layer at the origin, lowest first; 0 for
	// audio and video without simulcast.
	Layer int    `json:"layer"`
	Kind  string `json:"kind"`
}

// Stats are the cascade's figures for metrics: gauges of what it holds
// now and counters that only grow (the traffic of ended trunks is kept).
type Stats struct {
	// TrunksOpen counts the trunks whose data channel is open, both ways.
	TrunksOpen int
	// Subscriptions counts the track layers this focus pulls over
	// trunks; Exports, those it sends to other foci.
	Subscriptions int
	Exports       int
	// ProxyParticipants and ProxyTracks are as in Status.
	ProxyParticipants int
	ProxyTracks       int
	// TrunksOpened counts trunks whose data channel opened, both ways.
	TrunksOpened uint64
	// Traffic on every trunk, ended ones included (see TrunkStatus).
	PacketsIn, PacketsOut, BytesIn, BytesOut uint64
	// HeartbeatFailures counts trunks ended for silence.
	HeartbeatFailures uint64
	// RefusedRequests counts refused trunk requests (bad signature,
	// stale, replayed, malformed, ...).
	RefusedRequests uint64
}

// traffic is one direction's packets and bytes.
type traffic struct{ packets, bytes uint64 }

// trafficTotals are both directions of ended trunks.
type trafficTotals struct{ in, out traffic }

func (tt *trafficTotals) add(in, out traffic) {
	tt.in.packets += in.packets
	tt.in.bytes += in.bytes
	tt.out.packets += out.packets
	tt.out.bytes += out.bytes
}

// traffic reads the counters of the trunk's selected ICE candidate
// pair: live, else (the agent closed) their last values read.
func (t *trunk) traffic() (in, out traffic) {
	t.mu.Lock()
	final, last := t.final, t.lastTraffic
	t.mu.Unlock()
	if final != nil {
		return final.in, final.out
	}
	pc := t.peerConn()
	if pc == nil || !t.everOpen.Load() || pc.ConnectionState() == webrtc.PeerConnectionStateClosed {
		// Until the data channel has opened there is no traffic to
		// speak of, and pion's ICE transport reads its gatherer without
		// a lock while the transport may still be starting.
		return last.in, last.out
	}
	s, ok := pc.Traffic()
	if !ok {
		return last.in, last.out
	}
	in = traffic{s.PacketsIn, s.BytesIn}
	out = traffic{s.PacketsOut, s.BytesOut}
	t.mu.Lock()
	if in.bytes >= t.lastTraffic.in.bytes && out.bytes >= t.lastTraffic.out.bytes {
		t.lastTraffic = trafficTotals{in: in, out: out}
	}
	in, out = t.lastTraffic.in, t.lastTraffic.out
	t.mu.Unlock()
	return in, out
}

// freezeTraffic keeps the trunk's counters before its connection closes.
func (t *trunk) freezeTraffic() {
	in, out := t.traffic()
	t.mu.Lock()
	t.final = &trafficTotals{in: in, out: out}
	t.mu.Unlock()
}

// rates is a trunk's bit rates, sampled by its loop.
type rates struct {
	at                time.Time
	bytesIn, bytesOut uint64
	bitsIn, bitsOut   uint64
}

// sampleRate updates the trunk's bit rates about once a second.
func (t *trunk) sampleRate(now time.Time) {
	t.mu.Lock()
	at := t.rate.at
	t.mu.Unlock()
	if el := now.Sub(at); !at.IsZero() && el < time.Second {
		return
	}
	in, out := t.traffic()
	t.mu.Lock()
	defer t.mu.Unlock()
	r := &t.rate
	if !r.at.IsZero() {
		el := now.Sub(r.at)
		r.bitsIn = (in.bytes - min(in.bytes, r.bytesIn)) * 8 * uint64(time.Second) / uint64(el)
		r.bitsOut = (out.bytes - min(out.bytes, r.bytesOut)) * 8 * uint64(time.Second) / uint64(el)
	}
	r.at, r.bytesIn, r.bytesOut = now, in.bytes, out.bytes
}

// status describes the trunk.
func (t *trunk) status() TrunkStatus {
	in, out := t.traffic()
	s := TrunkStatus{
		ID:         t.id,
		Peer:       t.peer,
		Direction:  t.dir.String(),
		State:      t.getState().String(),
		Created:    t.created,
		LastHeard:  time.Unix(0, t.lastHeard.Load()),
		PacketsIn:  in.packets,
		PacketsOut: out.packets,
		BytesIn:    in.bytes,
		BytesOut:   out.bytes,
	}
	t.mu.Lock()
	s.BitrateIn, s.BitrateOut = t.rate.bitsIn, t.rate.bitsOut
	s.Tracks = make([]TrunkTrack, 0, len(t.carried))
	for _, c := range t.carried {
		s.Tracks = append(s.Tracks, TrunkTrack(c))
	}
	t.mu.Unlock()
	sort.Slice(s.Tracks, func(i, j int) bool {
		a, b := s.Tracks[i], s.Tracks[j]
		return a.Track < b.Track || a.Track == b.Track && a.Layer < b.Layer
	})
	return s
}

// trunkList returns every registered trunk.
func (c *Cascade) trunkList() []*trunk {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]*trunk, 0, len(c.out)+len(c.in))
	for _, t := range c.out {
		out = append(out, t)
	}
	for _, t := range c.in {
		out = append(out, t)
	}
	return out
}

// Status describes the trunks and proxies.
func (c *Cascade) Status() Status {
	s := Status{
		Node:              c.self,
		Trunks:            []TrunkStatus{},
		ProxyParticipants: int(c.ctl.proxyParticipants.Load()),
		ProxyTracks:       int(c.ctl.proxyTracks.Load()),
	}
	for _, t := range c.trunkList() {
		if t.getState() != stateClosed {
			s.Trunks = append(s.Trunks, t.status())
		}
	}
	sort.Slice(s.Trunks, func(i, j int) bool {
		a, b := s.Trunks[i], s.Trunks[j]
		if a.Direction != b.Direction {
			return a.Direction == "pull"
		}
		return a.Peer < b.Peer
	})
	if held := c.heldBack.Load(); held != nil {
		s.HeldBack = append(s.HeldBack, (*held)...)
	}
	return s
}

// Stats returns the cascade's gauges and counters.
func (c *Cascade) Stats() Stats {
	s := Stats{
		ProxyParticipants: int(c.ctl.proxyParticipants.Load()),
		ProxyTracks:       int(c.ctl.proxyTracks.Load()),
		TrunksOpened:      c.counters.trunksOpened.Load(),
		HeartbeatFailures: c.counters.heartbeatFailures.Load(),
		RefusedRequests:   c.counters.refused.Load(),
	}
	// Read the retired totals and the live trunks under the registry
	// lock: a trunk moves its traffic to the totals as it leaves it.
	c.mu.Lock()
	live := make([]*trunk, 0, len(c.out)+len(c.in))
	for _, t := range c.out {
		live = append(live, t)
	}
	for _, t := range c.in {
		live = append(live, t)
	}
	tot := c.counters.retired
	c.mu.Unlock()
	for _, t := range live {
		in, out := t.traffic()
		tot.add(in, out)
		if t.getState() == stateOpen {
			s.TrunksOpen++
		}
		t.mu.Lock()
		n := len(t.carried)
		t.mu.Unlock()
		if t.dir == pulling {
			s.Subscriptions += n
		} else {
			s.Exports += n
		}
	}
	s.PacketsIn, s.BytesIn = tot.in.packets, tot.in.bytes
	s.PacketsOut, s.BytesOut = tot.out.packets, tot.out.bytes
	return s
}
