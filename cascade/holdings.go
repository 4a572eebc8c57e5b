package cascade

import (
	"reflect"
	"sort"
	"time"

	"github.com/focus-sfu/focus/focus"
	"github.com/focus-sfu/focus/mesh"
)

// holdingsState decides when the control loop tells the mesh what this
// focus holds: a short while after the core's events (so that a burst of
// them makes one update), and every resync, for what changes without an
// event (mute, aliases). Only a change is sent.
type holdingsState struct {
	changedAt time.Time // first unsent change; zero when none
	checked   time.Time
	sent      bool
	last      []mesh.Conference
}

// changed notes an event that may change the holdings.
func (h *holdingsState) changed(now time.Time) {
	if h.changedAt.IsZero() {
		h.changedAt = now
	}
}

// tick publishes the holdings when due and changed.
func (h *holdingsState) tick(c *Cascade, now time.Time) {
	due := !h.changedAt.IsZero() && now.Sub(h.changedAt) >= c.timing.settle
	if !due && now.Sub(h.checked) < c.timing.resync {
		return
	}
	h.changedAt = time.Time{}
	h.checked = now
	cur := holdings(c.sfu)
	if h.sent && reflect.DeepEqual(cur, h.last) {
		return
	}
	h.last, h.sent = cur, true
	if c.opts.Holdings != nil {
		c.opts.Holdings(cur)
	}
}

// holdings lists the conferences with a participant connected to this
// focus, with those participants and their tracks only: never proxies
// (a track is offered by its origin alone) nor the hidden viewers of
// trunks. Conferences are sorted by ID, participants by ID, tracks in
// publish order.
func holdings(sfu *focus.SFU) []mesh.Conference {
	confs := sfu.Conferences()
	sort.Slice(confs, func(i, j int) bool { return confs[i].ID() < confs[j].ID() })
	var out []mesh.Conference
	for _, conf := range confs {
		var ps []mesh.Participant
		for _, p := range conf.Participants() {
			info := p.Info()
			if info.Origin != "" {
				continue
			}
			mp := mesh.Participant{ID: string(info.ID), Identity: info.Identity, Role: info.Role.String()}
			for _, up := range p.Tracks() {
				mp.Tracks = append(mp.Tracks, meshTrack(up))
			}
			ps = append(ps, mp)
		}
		if len(ps) == 0 {
			continue
		}
		names := conf.Names()
		mc := mesh.Conference{Names: make([]string, len(names)), Participants: ps}
		for i, n := range names {
			mc.Names[i] = string(n)
		}
		out = append(out, mc)
	}
	return out
}

// maxDimension bounds a layer's width and height in the mesh.
const maxDimension = 65535

// meshTrack describes a published track for the mesh, with its layers'
// sizes when any is known (from its keyframes or the publisher's
// declaration).
func meshTrack(up *focus.UpTrack) mesh.Track {
	info := up.Info()
	var sizes []mesh.LayerSize
	if info.Kind == focus.KindVideo {
		sizes = make([]mesh.LayerSize, up.Layers())
		known := false
		for i := range sizes {
			s := up.LayerSize(i)
			// The mesh refuses a state with a larger dimension; VP8
			// has at most 16383, a declaration may say anything.
			sizes[i] = mesh.LayerSize{Width: min(s.Width, maxDimension), Height: min(s.Height, maxDimension)}
			known = known || s != (focus.Size{})
		}
		if !known {
			sizes = nil
		}
	}
	return mesh.Track{
		ID:        string(info.ID),
		StreamID:  info.StreamID,
		Kind:      info.Kind.String(),
		Source:    info.Source.String(),
		MimeType:  info.Codec.MimeType,
		ClockRate: info.Codec.ClockRate,
		Channels:  info.Codec.Channels,
		Fmtp:      info.Codec.Fmtp,
		Muted:     up.Muted(),
		Layers:    append([]string(nil), info.Layers...),
		Sizes:     sizes,
	}
}
