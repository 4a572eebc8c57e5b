package focus

import (
	"math"
	"time"

	"github.com/focus-sfu/focus/focus/allocator"
	"github.com/focus-sfu/focus/focus/speaker"
)

// unlimited is the estimate of a subscriber whose connection has no
// bandwidth estimator: every wanted layer fits.
const unlimited = math.MaxUint64 / 4

// allocation is a participant's state in the control loop.
type allocation struct {
	tracks    []allocator.Track
	decisions []allocator.Decision
	downs     []*DownTrack
	srcs      []*UpTrack
	probe     prober
	// used and wanted are the last allocation's totals, for probing.
	used, wanted uint64
}

// allocate spends the participant's bandwidth estimate across its
// subscriptions and applies the decisions: the layer (and VP8 temporal
// layer) each down track forwards, and which are held back.
func (p *Participant) allocate(now time.Time) {
	a := &p.alloc
	a.tracks, a.downs, a.srcs = a.tracks[:0], a.downs[:0], a.srcs[:0]
	c := p.conf
	for _, d := range p.DownTracks() {
		src, cur, ok := d.allocInput()
		if !ok {
			continue
		}
		t := allocator.Track{Current: cur, MaxLayer: d.wantedLayer(src)}
		switch {
		case src.info.Kind == KindAudio:
			t.Priority = allocator.PriorityAudio
			// A relay to another focus (a subscriber with an Origin)
			// takes every audio track: the foci it serves rank the
			// speakers among all of them.
			if p.info.Origin == "" && !c.forwardsAudio(src) {
				t.MaxLayer = -1
			}
		case src.info.Source == SourceScreenShare:
			t.Priority = allocator.PriorityScreen
		case c.speaking(src.owner):
			t.Priority = allocator.PrioritySpeaker
		default:
			t.Priority = allocator.PriorityVideo
		}
		t.Layers = src.allocatorLayers(now)
		a.tracks = append(a.tracks, t)
		a.downs = append(a.downs, d)
		a.srcs = append(a.srcs, src)
	}
	estimate := uint64(unlimited)
	if e := p.bandwidthEstimator(); e != nil {
		estimate = a.probe.estimate(e.TargetBitrate())
	}
	if cap(a.decisions) < len(a.tracks) {
		a.decisions = make([]allocator.Decision, len(a.tracks))
	}
	a.decisions = a.decisions[:len(a.tracks)]
	r := allocator.Allocate(estimate, a.tracks, a.decisions)
	a.used, a.wanted = r.Used, r.Wanted

	var events []Event
	for i, d := range a.downs {
		if d.apply(a.decisions[i], a.srcs[i]) {
			events = append(events, SubscriptionPaused{Conference: c, Down: d, Track: a.srcs[i], Paused: a.decisions[i].Paused})
		}
	}
	c.sfu.emit(events...)
}

// probe sends this round's padding of a running probe.
func (p *Participant) probe(now time.Time) {
	e := p.bandwidthEstimator()
	if e == nil {
		return
	}
	a := &p.alloc
	loss, overusing := 0.0, false
	if r, ok := e.(CongestionReporter); ok {
		loss, overusing = r.Congestion()
	}
	n := a.probe.tick(now, probeInput{Estimate: e.TargetBitrate(), Wanted: a.wanted, Sending: a.used, Loss: loss, Overusing: overusing})
	if n <= 0 {
		return
	}
	// Padding goes on the video down tracks that have an RTX stream.
	for _, d := range a.downs {
		if n <= 0 {
			break
		}
		if d.kind == KindVideo {
			n -= d.writePadding(n)
		}
	}
}

// startLayer is the layer a new subscription of src starts at: the
// allocator's choice for src alone, within the subscriber's caps and
// current estimate.
func (d *DownTrack) startLayer(src *UpTrack) int {
	top := len(src.layers) - 1
	w := d.wantedLayer(src)
	if w < 0 || top == 0 {
		return max(w, 0)
	}
	e := d.sub.bandwidthEstimator()
	if e == nil {
		return w
	}
	now := d.sub.conf.sfu.now()
	t := []allocator.Track{{Priority: allocator.PriorityVideo, MaxLayer: w, Current: -1, Layers: src.allocatorLayers(now)}}
	var dec [1]allocator.Decision
	allocator.Allocate(e.TargetBitrate(), t, dec[:])
	if dec[0].Layer < 0 {
		return 0
	}
	return dec[0].Layer
}

// allocInput returns what the allocator needs of d: its source and the
// layer it forwards (or switches to), and false when it has no source.
func (d *DownTrack) allocInput() (src *UpTrack, current int, ok bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed || d.target == nil {
		return nil, -1, false
	}
	current = d.target.index
	if d.held {
		current = -1
	}
	return d.target.up, current, true
}

// wantedLayer returns the highest layer of src the subscriber wants, or
// -1 when it paused the track: its layer cap, lowered to the smallest
// layer at least as large as its size cap when the layers' sizes are
// known.
func (d *DownTrack) wantedLayer(src *UpTrack) int {
	d.mu.Lock()
	paused, maxLayer, size := d.paused, d.maxLayer, d.maxSize
	d.mu.Unlock()
	if paused {
		return -1
	}
	top := min(maxLayer, len(src.layers)-1)
	if size.Width == 0 && size.Height == 0 {
		return top
	}
	for i := 0; i < top; i++ {
		s := src.LayerSize(i)
		if s.Width == 0 || s.Height == 0 {
			return top // sizes unknown: no basis to go lower
		}
		if s.Width >= size.Width && s.Height >= size.Height {
			return i
		}
	}
	return top
}

// apply makes d forward what the allocator decided, and reports whether
// its pause for lack of bandwidth began or ended.
func (d *DownTrack) apply(dec allocator.Decision, src *UpTrack) (pauseChanged bool) {
	if dec.Layer >= 0 && dec.Layer < len(src.layers) {
		if err := d.setTarget(src.layers[dec.Layer]); err != nil {
			return false
		}
	}
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return false
	}
	if (d.awaitKeyframe || d.target != d.current) && d.bound && !d.paused && !d.held && d.target != nil {
		// Still waiting for the keyframe a switch or start asked for: a
		// publisher may ignore a request that came too soon after the
		// last (libwebrtc does), so ask again. The keyframer spaces the
		// requests and holds them while one is answered.
		defer d.target.up.RequestKeyframe(d.target.index)
	}
	d.wantTID = dec.Temporal
	if tidBelow(dec.Temporal, d.maxTID) {
		d.maxTID = dec.Temporal // dropping layers needs no sync point
	}
	pauseChanged = d.heldForBandwidth != dec.Paused
	d.heldForBandwidth = dec.Paused
	held := dec.Layer < 0
	if held == d.held {
		d.mu.Unlock()
		return pauseChanged
	}
	d.held = held
	d.resumeLocked()
	return pauseChanged
}

// tidBelow reports whether temporal cap a forwards fewer layers than b;
// -1 forwards all.
func tidBelow(a, b int) bool {
	return a >= 0 && (b < 0 || a < b)
}

// conferenceControl is a conference's state in the control loop.
type conferenceControl struct {
	detector *speaker.Detector[*UpTrack]
	known    map[*UpTrack]bool
	// loudest are the audio tracks forwarded when Options.MaxAudioForwarded
	// limits them; nil forwards all.
	loudest map[*UpTrack]bool
}

// rankSpeakers feeds the audio levels measured since the last round to
// the conference's speaker detector, and announces a new order.
func (c *Conference) rankSpeakers(now time.Time, tracks []*UpTrack) {
	ctl := &c.ctl
	if ctl.detector == nil {
		ctl.detector = speaker.NewDetector[*UpTrack](c.sfu.opts.Speakers)
		ctl.known = make(map[*UpTrack]bool)
	}
	present := make(map[*UpTrack]bool, len(tracks))
	metered := 0
	for _, t := range tracks {
		if t.levelID == 0 {
			continue
		}
		metered++
		present[t] = true
		ctl.known[t] = true
		ctl.detector.Update(t, t.meter.Take(), now)
	}
	for t := range ctl.known {
		if !present[t] {
			ctl.detector.Remove(t)
			delete(ctl.known, t)
		}
	}
	list, changed := ctl.detector.Speakers(now)

	n := c.sfu.opts.MaxAudioForwarded
	ctl.loudest = nil
	if n > 0 && metered > n {
		ctl.loudest = make(map[*UpTrack]bool, n)
		for _, r := range list[:min(n, len(list))] {
			ctl.loudest[r.Key] = true
		}
	}
	if !changed {
		return
	}
	speakers := make([]Speaker, 0, len(list))
	for _, r := range list {
		speakers = append(speakers, Speaker{Participant: r.Key.owner, Track: r.Key, Level: r.Level})
	}
	c.mu.Lock()
	c.speakers = speakers
	c.mu.Unlock()
	c.sfu.emit(SpeakersChanged{Conference: c, Speakers: speakers})
}

// Speakers returns the active speakers, loudest first.
func (c *Conference) Speakers() []Speaker {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Speaker(nil), c.speakers...)
}

// speaking reports whether p is an active speaker.
func (c *Conference) speaking(p *Participant) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range c.speakers {
		if s.Participant == p {
			return true
		}
	}
	return false
}

// forwardsAudio reports whether audio track t goes to subscribers:
// always, unless Options.MaxAudioForwarded limits the conference to its
// loudest tracks. A track without audio levels is always forwarded.
func (c *Conference) forwardsAudio(t *UpTrack) bool {
	return c.ctl.loudest == nil || t.levelID == 0 || c.ctl.loudest[t]
}
