// Package allocator spends one subscriber's bandwidth estimate across the
// tracks it receives. It is a pure function of its input: the core gathers
// each track's layers, the subscriber's caps and what it forwards now,
// calls Allocate on every estimate change or tick, and applies the
// decisions. Nothing here keeps state between calls; the hysteresis that
// keeps decisions from flapping comes from Track.Current.
//
// The order of service:
//
//  1. Audio, always, even beyond the estimate: it is tiny, and a call
//     where video freezes is still a call, one where audio drops is not.
//  2. Every wanted video track, in priority order (screen share, then
//     active speakers, then other video; ties keep the input order), gets
//     its lowest live layer, or a lower temporal level of it, or nothing
//     (Paused) when even that does not fit. Serving every track a little
//     before any track a lot keeps everyone visible.
//  3. In the same order, each track in turn is raised to the best live
//     layer up to its MaxLayer that still fits.
//
// A layer that is not Live (its publisher stopped sending it) is never
// chosen for video: switching to it would freeze the picture. Audio is
// the exception (see target).
package allocator

// Priority orders the tracks of one subscriber; lower is served first.
type Priority uint8

// The priorities the core assigns. Any value above PriorityVideo is
// served after it, as video.
const (
	PriorityAudio Priority = iota
	PriorityScreen
	PrioritySpeaker
	PriorityVideo
)

// HeadroomPercent is the margin an upgrade needs: moving a track to a
// layer above its Current one (or resuming a track that forwards nothing)
// requires the estimate to exceed everything allocated so far, that layer
// included, by this many percent. Keeping the Current layer needs no
// margin, only that it still fits. The gap between the two thresholds is
// what keeps an estimate that wobbles around a layer's bitrate from
// switching layers (and asking for a keyframe) on every tick.
const HeadroomPercent = 10

// KeepPercent is how much of its lowest layer's bitrate must be left
// for a video that is already forwarded to keep it rather than be
// paused. Pausing a subscriber's video stops most of the traffic its
// congestion feedback is made of, and a delay- and loss-based estimator
// (it cuts at every lossy batch of feedback) that dipped below the lowest layer in
// a burst of loss would then stay there: the video would stay paused on
// a link that can carry it. Kept, the layer's own packets show whether
// the link carries it. Only one track can profit in practice: it takes
// its whole cost from the budget.
const KeepPercent = 50

// Default bitrates, in bit/s, for a layer whose Bitrate is still unknown
// (0): the core learns a layer's rate only after it has received some of
// it. The video guesses are by position from the top layer down, as a
// typical three-layer simulcast (180p, 360p, 720p) sends them.
const (
	DefaultAudioBitrate uint64 = 64_000
	DefaultLowBitrate   uint64 = 150_000
	DefaultMidBitrate   uint64 = 500_000
	DefaultHighBitrate  uint64 = 1_500_000
)

// DefaultBitrate returns the guess for layer (0 = lowest) of a track of
// priority p that has layers layers. For video the top layer is guessed
// high, the one below it mid and all others low, so a single-layer
// (non-simulcast) video counts as high.
func DefaultBitrate(p Priority, layer, layers int) uint64 {
	if p == PriorityAudio {
		return DefaultAudioBitrate
	}
	switch layers - 1 - layer {
	case 0:
		return DefaultHighBitrate
	case 1:
		return DefaultMidBitrate
	default:
		return DefaultLowBitrate
	}
}

// Layer is one layer (simulcast encoding) of a published track.
type Layer struct {
	Bitrate uint64 // bit/s; 0: unknown, DefaultBitrate is used
	Live    bool   // the publisher sends it now
	// Temporal holds the cumulative bitrate up to each temporal layer
	// (TID 0, 0+1, ...). It may be empty; a 0 entry is unknown and never
	// chosen.
	Temporal []uint64
}

// Track is one track the subscriber receives.
type Track struct {
	Priority Priority
	Layers   []Layer // lowest first; audio has one
	MaxLayer int     // highest layer the subscriber wants; -1: none (user paused)
	Current  int     // layer now forwarded, -1 none (for hysteresis)
}

// Decision is what to forward of one track.
type Decision struct {
	Layer    int  // -1: forward nothing
	Temporal int  // highest TID to forward, -1: all
	Paused   bool // the track is wanted but gets nothing for lack of bandwidth
}

// Result sums up an allocation, in bit/s.
type Result struct {
	// Used is what the decisions spend. It exceeds the estimate only when
	// audio alone does.
	Used uint64
	// Wanted is what the subscriber would take with unlimited bandwidth:
	// each wanted track at its best live layer up to MaxLayer. Probing for
	// more than Used is worth it only while Wanted is higher.
	Wanted uint64
}

var off = Decision{Layer: -1, Temporal: -1}

// Allocate decides, for each of tracks, what to forward within estimate
// (bit/s), writing out[i] for tracks[i]. It allocates nothing when
// len(out) >= len(tracks); with a shorter out it works on a copy, so the
// Result still covers every track, and out receives the first decisions.
func Allocate(estimate uint64, tracks []Track, out []Decision) Result {
	if len(out) < len(tracks) {
		all := make([]Decision, len(tracks))
		r := Allocate(estimate, tracks, all)
		copy(out, all)
		return r
	}
	out = out[:len(tracks)]
	b := budget{estimate: estimate, upLimit: withoutHeadroom(estimate)}
	var wanted uint64

	// Phase 1: audio in full, every wanted video at its minimum.
	for p := nextPriority(tracks, -1); p >= 0; p = nextPriority(tracks, p) {
		for i := range tracks {
			t := &tracks[i]
			if int(t.Priority) != p {
				continue
			}
			if t.Priority == PriorityAudio {
				out[i] = b.audio(t)
			} else {
				out[i] = b.lowest(t)
			}
			if l := target(t); l >= 0 {
				wanted = addSat(wanted, cost(t, l))
			}
		}
	}

	// Phase 2: raise each video, best first, as far as the rest allows.
	for p := nextPriority(tracks, int(PriorityAudio)); p >= 0; p = nextPriority(tracks, p) {
		for i := range tracks {
			t := &tracks[i]
			// A track on a reduced temporal level stays there: its full
			// base layer did not fit in phase 1, and what is left of the
			// budget has only shrunk since.
			if int(t.Priority) != p || out[i].Layer < 0 || out[i].Temporal >= 0 {
				continue
			}
			out[i].Layer = b.raise(t, out[i].Layer)
		}
	}
	return Result{Used: b.used, Wanted: wanted}
}

// budget is the estimate being spent.
type budget struct {
	estimate uint64
	upLimit  uint64 // what an upgrade may bring the total to
	used     uint64
}

// replace swaps old (already in used) for cost when the new total fits:
// within the estimate to keep a layer, within upLimit to move up (up).
func (b *budget) replace(old, cost uint64, up bool) bool {
	total := addSat(b.used-old, cost)
	if total > b.estimate || up && total > b.upLimit {
		return false
	}
	b.used = total
	return true
}

// audio serves an audio track whatever the budget.
func (b *budget) audio(t *Track) Decision {
	l := target(t)
	if l < 0 {
		return off
	}
	b.used = addSat(b.used, cost(t, l))
	return Decision{Layer: l, Temporal: -1}
}

// lowest serves a video track its minimum: the lowest live layer, or the
// highest temporal level of it that fits, or nothing.
func (b *budget) lowest(t *Track) Decision {
	if t.MaxLayer < 0 {
		return off
	}
	// The lowest live layer of all: if any live layer is <= MaxLayer it
	// is this one, and if none is, the lowest above is the fallback.
	l := -1
	for i := range t.Layers {
		if t.Layers[i].Live {
			l = i
			break
		}
	}
	if l < 0 {
		return off // nothing to forward, but not for lack of bandwidth
	}
	up := l > t.Current
	if b.replace(0, cost(t, l), up) {
		return Decision{Layer: l, Temporal: -1}
	}
	tl := t.Layers[l].Temporal
	for k := len(tl) - 1; k >= 0; k-- {
		if tl[k] != 0 && b.replace(0, tl[k], up) {
			return Decision{Layer: l, Temporal: k}
		}
	}
	// A video already forwarded keeps its lowest layer while at least
	// KeepPercent of that layer's bitrate is left (see KeepPercent).
	c := cost(t, l)
	if t.Current >= l && b.used < b.estimate && (b.estimate-b.used)*100 >= c*KeepPercent {
		b.used = addSat(b.used, c)
		return Decision{Layer: l, Temporal: -1}
	}
	return Decision{Layer: -1, Temporal: -1, Paused: true}
}

// raise moves a video track from layer from to the best live layer up to
// MaxLayer that fits, and returns it (from when none does).
func (b *budget) raise(t *Track, from int) int {
	have := cost(t, from)
	for l := min(t.MaxLayer, len(t.Layers)-1); l > from; l-- {
		if !t.Layers[l].Live {
			continue
		}
		if b.replace(have, cost(t, l), l > t.Current) {
			return l
		}
	}
	return from
}

// target is the layer a track gets with unlimited bandwidth: the highest
// live layer up to MaxLayer, else the lowest live one above; -1 when it
// is unwanted or nothing is live.
func target(t *Track) int {
	if t.MaxLayer < 0 {
		return -1
	}
	top := min(t.MaxLayer, len(t.Layers)-1)
	for l := top; l >= 0; l-- {
		if t.Layers[l].Live {
			return l
		}
	}
	for l := top + 1; l < len(t.Layers); l++ {
		if t.Layers[l].Live {
			return l
		}
	}
	if t.Priority == PriorityAudio && len(t.Layers) > 0 {
		// Audio that is not live (muted, or not received yet) is still
		// selected: it costs nothing while silent, and it does not clip
		// the first syllable after unmuting while waiting for the next
		// allocation.
		return top
	}
	return -1
}

// cost is layer l's bitrate, or the guess while it is unknown.
func cost(t *Track, l int) uint64 {
	if r := t.Layers[l].Bitrate; r != 0 {
		return r
	}
	return DefaultBitrate(t.Priority, l, len(t.Layers))
}

// nextPriority returns the lowest priority above after among tracks, or
// -1 when there is none. Walking the priorities this way, instead of
// sorting, keeps the input order within a priority and needs no memory.
func nextPriority(tracks []Track, after int) int {
	next := -1
	for i := range tracks {
		if p := int(tracks[i].Priority); p > after && (next < 0 || p < next) {
			next = p
		}
	}
	return next
}

// withoutHeadroom is estimate / (1 + HeadroomPercent/100), computed so
// that no estimate, however large, overflows.
func withoutHeadroom(estimate uint64) uint64 {
	const d = 100 + HeadroomPercent
	return estimate/d*100 + estimate%d*100/d
}

// WithHeadroom is the estimate that lets Allocate move tracks up to a
// total of bitrate: bitrate plus HeadroomPercent, rounded up, so that
// withoutHeadroom gives bitrate back. A prober aims at it: an estimate
// between bitrate and this keeps what is forwarded but raises nothing.
func WithHeadroom(bitrate uint64) uint64 {
	const d = 100 + HeadroomPercent
	q, r := bitrate/100, bitrate%100
	if q > ^uint64(0)/d {
		return ^uint64(0)
	}
	return addSat(q*d, (r*d+99)/100)
}

// addSat adds without wrapping, so absurd bitrates saturate rather than
// look small.
func addSat(a, b uint64) uint64 {
	if s := a + b; s >= a {
		return s
	}
	return ^uint64(0)
}
