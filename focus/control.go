package focus

import (
	"slices"
	"time"

	"github.com/focus-sfu/focus/focus/allocator"
)

// The control loop: every controlInterval the SFU measures each layer,
// ranks each conference's speakers, spends each subscriber's bandwidth
// estimate across its tracks (allocation.go), and tells publishers which
// layers anyone needs. Probes run on the finer probeSlot (prober.go).
const (
	controlInterval = 100 * time.Millisecond
	// stallTimeout is how long a layer may be silent, while another layer
	// of its track is not, before its subscribers move off it.
	stallTimeout = 1500 * time.Millisecond
	// rateWindow smooths the measured bit rate of each layer.
	rateWindow = time.Second
)

// run drives the control loop on the real clock until stop is closed.
func (s *SFU) run(stop <-chan struct{}) {
	t := time.NewTicker(probeSlot)
	defer t.Stop()
	var lastControl time.Time
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		now := s.now()
		if now.Sub(lastControl) >= controlInterval {
			lastControl = now
			s.control(now)
		}
		s.probe(now)
	}
}

// control runs one round of the control loop. Tests with an injected
// clock call it themselves.
func (s *SFU) control(now time.Time) {
	for _, c := range s.Conferences() {
		tracks := c.Tracks()
		for _, t := range tracks {
			for _, l := range t.layers {
				l.rate.update(l, now)
			}
		}
		c.rankSpeakers(now, tracks)
		for _, p := range c.Participants() {
			p.allocate(now)
		}
		for _, t := range tracks {
			t.updateDemand()
		}
	}
}

// probe sends the padding of every subscriber's running probe. It runs
// every probeSlot, so it walks the conferences through buffers the loop
// keeps rather than allocating two lists a tick.
func (s *SFU) probe(now time.Time) {
	b := &s.probeBufs
	b.confs = s.appendConferences(b.confs[:0])
	for _, c := range b.confs {
		b.parts = c.appendParticipants(b.parts[:0])
		for _, p := range b.parts {
			p.probe(now)
		}
	}
	// Keep the capacity, not the conferences and participants.
	clear(b.confs)
	clear(b.parts)
}

// layerRate measures a layer's bit rate, smoothed, in total and up to
// each VP8 temporal layer. Owned by the control loop, which publishes the
// results in the layer's atomics for readers on other goroutines (a new
// subscription's first layer choice).
type layerRate struct {
	at       time.Time
	bytes    uint64
	tidBytes [maxTemporal]uint64
	bitrate  float64
	temporal [maxTemporal]float64 // cumulative: up to and including TID i
	measured bool
}

func (r *layerRate) update(l *layer, now time.Time) {
	b := l.bytes.Load()
	var tb [maxTemporal]uint64
	for i := range tb {
		tb[i] = l.tidBytes[i].Load()
	}
	if r.at.IsZero() {
		r.at, r.bytes, r.tidBytes = now, b, tb
		return
	}
	el := now.Sub(r.at)
	if el <= 0 {
		return
	}
	// Exponential smoothing with the real elapsed time, so a late round
	// weighs as much as it should. The first round with packets sets the
	// rate outright: ramping up from zero would make a new track look
	// cheap, then dear, and pause and resume its subscribers.
	a := min(1, float64(el)/float64(rateWindow))
	if !r.measured && b > r.bytes {
		a, r.measured = 1, true
	}
	sec := el.Seconds()
	r.bitrate += a * (float64(b-r.bytes)*8/sec - r.bitrate)
	l.bitrate.Store(uint64(r.bitrate))
	var cum float64
	for i := range tb {
		cum += float64(tb[i]-r.tidBytes[i]) * 8 / sec
		r.temporal[i] += a * (cum - r.temporal[i])
		l.temporal[i].Store(uint64(r.temporal[i]))
	}
	r.at, r.bytes, r.tidBytes = now, b, tb
}

// live reports whether the layer sent anything within the stall timeout.
func (l *layer) live(now time.Time) bool {
	last := l.lastSeen.Load()
	return last != 0 && now.Sub(time.Unix(0, last)) < stallTimeout
}

// updateDemand announces which layers anyone needs, when that changed:
// every layer up to the highest that an unpaused subscriber wants, so
// that subscribers short of bandwidth have lower layers to fall back to.
// An audio track has one layer, wanted while anyone subscribes to it.
func (t *UpTrack) updateDemand() {
	if t.Closed() {
		return
	}
	highest := -1
	for _, d := range t.downTracks() {
		if i := d.wantedLayer(t); i > highest {
			highest = i
		}
	}
	if highest < 0 {
		if keep := t.owner.conf.sfu.opts.KeepUnwatched; keep != nil && t.info.Kind == KindVideo && t.owner.info.Origin == "" && keep(t) {
			highest = 0
		}
	}
	w := make([]bool, len(t.layers))
	for i := 0; i <= highest && i < len(w); i++ {
		w[i] = true
	}
	if slices.Equal(w, t.ctl.wanted) {
		return
	}
	t.ctl.wanted = w
	t.emitDemand(slices.Clone(w))
}

func (t *UpTrack) emitDemand(wanted []bool) {
	c := t.owner.conf
	c.sfu.emit(DemandChanged{Conference: c, Track: t, Wanted: wanted})
}

// downTracks returns every down track on any layer of t, once each.
func (t *UpTrack) downTracks() []*DownTrack {
	var out []*DownTrack
	for _, l := range t.layers {
		for _, d := range *l.downs.Load() {
			if !slices.Contains(out, d) {
				out = append(out, d)
			}
		}
	}
	return out
}

// allocatorLayers describes t's layers for the allocator.
func (t *UpTrack) allocatorLayers(now time.Time) []allocator.Layer {
	out := make([]allocator.Layer, 0, len(t.layers))
	anyLive := false
	for _, l := range t.layers {
		if l.live(now) {
			anyLive = true
		}
	}
	// A muted track, or one that sends nothing at all, is not stalled:
	// its subscribers keep their layers for when it comes back.
	keep := !anyLive || t.muted.Load()
	for _, l := range t.layers {
		al := allocator.Layer{Bitrate: l.bitrate.Load(), Live: keep || l.live(now)}
		if al.Bitrate == 0 && len(t.layers) == 1 {
			// A single-layer track not measured yet: there is nothing
			// lower to fall back to, so do not pause it on a guess; the
			// next round knows its rate.
			al.Bitrate = 1
		}
		if t.isVP8 && l.temporal[0].Load() > 0 {
			prev := uint64(0)
			for i := range l.temporal {
				r := l.temporal[i].Load()
				if i > 0 && r <= prev {
					break // no packets of this temporal layer
				}
				al.Temporal = append(al.Temporal, r)
				prev = r
			}
			if len(al.Temporal) < 2 {
				al.Temporal = nil
			}
		}
		out = append(out, al)
	}
	return out
}
