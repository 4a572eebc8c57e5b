package speaker

import (
	"math"
	"slices"
	"time"
)

// Defaults of Options. They are exported so that a configuration can show
// them and state its own values relative to them.
const (
	// DefaultWindow is the smoothing time constant. 400 ms spans a couple
	// of syllables: short enough for the list to follow a change of
	// speaker within half a second, long enough that the gaps between
	// words (100-300 ms) do not empty it.
	DefaultWindow = 400 * time.Millisecond

	// DefaultThreshold is -50 dBov (Linear(50) ≈ 0.0032). Speech into a
	// real microphone is at -20..-40 dBov, while a real microphone's
	// silence, after the browser's noise suppression, is at -70..-127
	// dBov: -50 sits 20 dB above that floor and 10 dB below quiet speech.
	// It also lists Chrome's fake microphone (what browser tests
	// publish), which plays a 20 ms beep at about -6 dBov every 500 ms and
	// silence in between: its smoothed level, the time-averaged
	// amplitude, stays between -40 and -30 dBov.
	DefaultThreshold = 0.0031622776601683794

	// DefaultHold is how long a track stays listed after its level was
	// last above the threshold. With DefaultWindow, a normal voice takes
	// about a second to decay below the threshold when it stops; a quiet
	// voice near the threshold crosses it in every pause, and one second
	// bridges the pauses between phrases (0.5-1 s), so a speaker's
	// indicator does not blink while they talk.
	DefaultHold = time.Second

	// DefaultOvertake is √2, 3 dB: a listed track moves above the one
	// ranked just before it only when it is at least that much louder, so
	// two people talking at once at similar volumes do not swap places at
	// every tick.
	DefaultOvertake = math.Sqrt2
)

// Options tune a Detector. Zero fields take the defaults above.
type Options struct {
	// Window is the time constant of the exponential smoothing of each
	// track's level; a non-positive value means DefaultWindow.
	Window time.Duration
	// Threshold is the smoothed linear level (0..1) above which a track
	// is speaking; a non-positive value means DefaultThreshold. Linear
	// converts from dBov.
	Threshold float64
	// Hold is the minimum time a track stays listed after its level was
	// last seen above Threshold. 0 means DefaultHold; a negative value
	// disables holding, so tracks leave the moment they fall below.
	Hold time.Duration
	// Overtake is the factor by which a listed track's level must exceed
	// the level of the track ranked just above it to take its place. 0
	// means DefaultOvertake; 1 (or anything below) ranks strictly by
	// level.
	Overtake float64
}

func (o Options) withDefaults() Options {
	if o.Window <= 0 {
		o.Window = DefaultWindow
	}
	if o.Threshold <= 0 {
		o.Threshold = DefaultThreshold
	}
	if o.Hold == 0 {
		o.Hold = DefaultHold
	}
	if o.Overtake == 0 {
		o.Overtake = DefaultOvertake
	} else if o.Overtake < 1 {
		o.Overtake = 1
	}
	return o
}

// Ranked is one active speaker.
type Ranked[K comparable] struct {
	Key K
	// Level is the track's smoothed linear amplitude, 0..1 (1 is full
	// scale). It can be below the threshold while the track is held.
	Level float64
}

// Detector ranks tracks by their smoothed audio level. It is meant to be
// driven by one periodic tick that takes every audio track's Meter, calls
// Update for each with the same now, then calls Speakers.
//
// A Detector is not safe for concurrent use: the tick owns it.
type Detector[K comparable] struct {
	o      Options
	tracks map[K]*track[K]
	seq    uint64 // creation order of tracks, to rank ties deterministically

	// tick and prev are the last two distinct times given to Update: a
	// track's first sample is taken to cover one tick period.
	tick, prev time.Time

	listed  []*track[K] // as Speakers last returned them, in order
	scratch []*track[K] // the next list, reused
	gen     uint64      // Speakers call count, marks tracks already placed
}

type track[K comparable] struct {
	key     K
	seq     uint64
	level   float64   // smoothed level at time at
	at      time.Time // time of the last Update
	above   time.Time // last time level was seen above the threshold; zero: never
	now     float64   // level decayed to the time of the Speakers call
	gen     uint64
	removed bool
}

// NewDetector returns a Detector with o's zero fields set to the defaults.
func NewDetector[K comparable](o Options) *Detector[K] {
	return &Detector[K]{o: o.withDefaults(), tracks: make(map[K]*track[K])}
}

// Options returns the options in use, defaults filled in.
func (d *Detector[K]) Options() Options { return d.o }

// Update feeds the level key's track had since its previous Update. A
// Sample with no packets counts as silence, so a muted track's level decays
// to 0: a muted track sends nothing (or DTX comfort noise), and must leave
// the list.
//
// The smoothing uses the real time elapsed since the track's previous
// Update, so an irregular tick neither speeds nor slows it. The first Update
// of a track counts its sample over one tick period (the time between the
// last two distinct times given to Update); on the Detector's very first
// tick there is no period yet and the sample only starts the track's clock.
func (d *Detector[K]) Update(key K, s Sample, now time.Time) {
	if now.After(d.tick) {
		d.prev, d.tick = d.tick, now
	}
	t := d.tracks[key]
	if t == nil {
		t = &track[K]{key: key, seq: d.seq, at: now}
		d.seq++
		if !d.prev.IsZero() && d.prev.Before(now) {
			t.at = d.prev
		}
		d.tracks[key] = t
	}
	x := 0.0
	if s.Packets > 0 && s.Level > 0 { // also false for NaN
		x = min(s.Level, 1)
	}
	if now.After(t.at) {
		// The sample is the mean input over (at, now]; the exact step of
		// a first-order low-pass for a constant input over that time.
		k := math.Exp(-float64(now.Sub(t.at)) / float64(d.o.Window))
		t.level = x + (t.level-x)*k
		t.at = now
	}
	if t.level > d.o.Threshold && now.After(t.above) {
		t.above = now
	}
}

// Remove forgets key's track (unpublished, or its participant left). If it
// was listed, the next Speakers reports the change.
func (d *Detector[K]) Remove(key K) {
	if t := d.tracks[key]; t != nil {
		t.removed = true
		delete(d.tracks, key)
	}
}

// Level returns key's smoothed level at now, 0..1, and whether the track
// is known.
func (d *Detector[K]) Level(key K, now time.Time) (float64, bool) {
	t := d.tracks[key]
	if t == nil {
		return 0, false
	}
	return d.levelAt(t, now), true
}

// levelAt is t's level decayed over the time since its last Update: a track
// the tick did not update had no packets.
func (d *Detector[K]) levelAt(t *track[K], now time.Time) float64 {
	if !now.After(t.at) {
		return t.level
	}
	return t.level * math.Exp(-float64(now.Sub(t.at))/float64(d.o.Window))
}

// keep reports whether t belongs in the list at now, and records t.now.
func (d *Detector[K]) keep(t *track[K], now time.Time) bool {
	t.now = d.levelAt(t, now)
	if t.now > d.o.Threshold {
		if now.After(t.above) {
			t.above = now
		}
		return true
	}
	return !t.above.IsZero() && now.Sub(t.above) < d.o.Hold
}

// Speakers returns the active speakers at now, loudest first, and whether
// the ordered list of keys changed since the previous call: changes of
// level alone do not count, so the caller can announce only real changes.
//
// "Loudest first" has hysteresis: tracks keep their previous order unless
// one is Overtake times louder than the one ranked above it; tracks that
// just became active are placed by level below the ones already listed,
// then move up the same way. The returned slice is the caller's.
func (d *Detector[K]) Speakers(now time.Time) (list []Ranked[K], changed bool) {
	d.gen++
	next := d.scratch[:0]
	for _, t := range d.listed {
		if !t.removed && d.keep(t, now) {
			t.gen = d.gen
			next = append(next, t)
		}
	}
	old := len(next)
	for _, t := range d.tracks {
		if t.gen != d.gen && d.keep(t, now) {
			t.gen = d.gen
			next = append(next, t)
		}
	}
	// Map order is random: sort the newcomers by level, then by age, so
	// that the outcome depends only on the inputs.
	slices.SortFunc(next[old:], func(a, b *track[K]) int {
		if a.now != b.now {
			if a.now > b.now {
				return -1
			}
			return 1
		}
		if a.seq < b.seq {
			return -1
		}
		return 1
	})
	// Insertion sort starting from the previous order, in which a track
	// passes the one above only when clearly louder. The list is nearly
	// sorted already, so this is about one pass.
	for i := 1; i < len(next); i++ {
		for j := i; j > 0 && next[j].now > next[j-1].now*d.o.Overtake; j-- {
			next[j], next[j-1] = next[j-1], next[j]
		}
	}

	changed = len(next) != len(d.listed)
	for i := 0; !changed && i < len(next); i++ {
		changed = next[i].key != d.listed[i].key
	}
	if len(next) > 0 {
		list = make([]Ranked[K], len(next))
		for i, t := range next {
			list[i] = Ranked[K]{Key: t.key, Level: t.now}
		}
	}
	clear(d.listed) // let removed tracks go
	d.listed, d.scratch = next, d.listed[:0]
	return list, changed
}
