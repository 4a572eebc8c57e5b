// Package bwe is the focus's send-side bandwidth estimation: how many
// bits per second one connection may carry to its subscriber, judged
// from the transport-wide congestion-control feedback (TWCC) the
// subscriber sends about every packet it received.
//
// It follows the ideas of Google Congestion Control
// (draft-ietf-rmcat-gcc-02): a delay-based detector that fits a trend
// line to the growth of one-way delay between groups of packets and
// compares it with an adaptive threshold, an additive-increase,
// multiplicative-decrease rate controller driven by that detector and
// by the bit rate the subscriber acknowledged, and a loss-based bound.
//
// It is written for an SFU's hot path. Recording a sent packet is a
// store into a fixed ring under a mutex and allocates nothing; reading
// feedback allocates nothing either (see ParseTWCC). An Estimator is
// about 9 KB, 8 of them the send history.
package bwe

import (
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// Config bounds an estimate, in bits per second.
type Config struct {
	Initial, Min, Max uint64
}

// Parameters of the estimator. The delay detector's come from the GCC
// draft (§5.4, §5.5); the others are this package's choices.
const (
	// historySize is how many sent packets are remembered for their
	// feedback: 1.6 s of a 6 Mbit/s stream of 1200-byte packets, 0.8 s
	// at 12 Mbit/s. Feedback normally follows within 100–200 ms; a
	// packet reported later than that is counted as Unknown.
	historySize = 1024
	historyMask = historySize - 1

	// burstTime groups packets sent this close together: one group is
	// one sample of the delay gradient.
	burstTime = 5 * time.Millisecond

	trendWindow    = 20    // delay samples in the trend line's regression
	trendSmoothing = 0.9   // of the accumulated delay
	trendGain      = 4.0   // the modified trend: samples × slope × gain
	trendMaxCount  = 60    // the sample count stops multiplying here
	overuseTime    = 10.0  // ms above the threshold before overuse
	thresholdInit  = 12.5  // ms
	thresholdMin   = 6.0   // ms
	thresholdMax   = 600.0 // ms
	kUp            = 0.0087
	kDown          = 0.039

	// decreaseFactor of the acknowledged rate on overuse.
	decreaseFactor = 0.85
	// growthPerSecond is the multiplicative increase far from the last
	// known capacity; near it, the estimate grows by about one packet per
	// responseTime instead.
	growthPerSecond = 1.08
	responseTime    = 200 * time.Millisecond
	nearMaxPacket   = 1200 * 8 // bits added per responseTime near capacity
	// The estimate never grows past what the subscriber acknowledged
	// times ackedHeadroom plus ackedSlack: it cannot know more.
	ackedHeadroom = 1.5
	ackedSlack    = 10_000

	// ackedWindow is the span over which the acknowledged rate is
	// measured, in bins of ackedBin.
	ackedBin     = 50 * time.Millisecond
	ackedBins    = 10
	ackedMinSpan = 150 * time.Millisecond

	// Loss is judged per lossBatch reported packets (or feedback
	// older than lossPeriod): above lossHigh the estimate drops by half
	// the loss, below lossLow it may grow, in between it holds.
	lossBatch  = 200
	lossPeriod = time.Second
	lossHigh   = 0.10
	lossLow    = 0.02
	lossSmooth = 0.5 // weight of the newest batch in the smoothed loss

	// decreaseHold is how long after a decrease the detector's signal
	// counts as congestion (Congested) and no other decrease follows.
	decreaseHold = 300 * time.Millisecond
)

// usage is the delay detector's verdict on the path's queue.
type usage uint8

const (
	normal   usage = iota // the queue is steady
	overuse               // the queue grows: the path is full
	underuse              // the queue drains
)

// sent is one packet of the history, in 8 bytes: 1024 of them are a
// large part of what a subscriber's connection costs in memory.
type sent struct {
	// at is the send time in µs on the Estimator's clock, modulo 2^32
	// (71 minutes): feedback comes seconds after the send at most, so
	// the time of the feedback tells the rest (sentAt). 0 marks an empty
	// slot.
	at   uint32
	seq  uint16
	size uint16 // bytes on the wire, roughly, and the flags below
}

// Flags in sent.size, whose low 14 bits are plenty for a packet.
const (
	reportedBit = 1 << 15 // feedback has covered it, received or lost
	receivedBit = 1 << 14 // feedback has reported it received
	sizeMask    = receivedBit - 1
)

func (s *sent) bytes() int { return int(s.size & sizeMask) }

// sentAt is the full send time, in ns, of a packet sent at µs mod 2^32,
// judged from now, which is after it.
func sentAt(at uint32, now int64) int64 {
	nowUS := now / 1e3
	return (nowUS - int64(uint32(nowUS)-at)) * 1e3
}

// group is a burst of packets sent within burstTime: a sample of delay.
type group struct {
	firstSend, lastSend int64 // ns
	lastArrival         int64 // µs on the feedback clock
}

// Estimator is one connection's send-side estimate. Sent and HandleTWCC
// may be called from any goroutine; Target and Congestion are cheap.
type Estimator struct {
	cfg   Config
	epoch time.Time

	target atomic.Uint64 // bits per second

	mu      sync.Mutex
	history [historySize]sent

	// The feedback clock: reference times are 24 bits of 64 ms units.
	refSet   bool
	lastRef  uint32
	refWraps int64

	// Grouping of received packets into delay samples.
	cur, prev    group
	haveCur      bool
	havePrev     bool
	firstArrival int64 // µs, of the first sample

	// The trend line.
	acc, smoothed float64
	samples       int
	window        [trendWindow]struct{ x, y float64 }
	windowNext    int
	prevTrend     float64

	// The overuse detector.
	threshold     float64
	lastUpdate    int64 // µs of the last threshold update
	overusingTime float64
	overuseCount  int
	usage         usage
	lastSample    int64 // µs of the last sample's arrival

	// The rate controller.
	increasing   bool  // hold until normal after a decrease
	lastChange   int64 // ns of the last update of target
	lastDecrease int64 // ns
	avgMax       float64
	varMax       float64
	haveMax      bool

	// The acknowledged rate.
	binStart [ackedBins]int64 // µs; -1 = empty
	binBytes [ackedBins]int
	firstAck int64
	haveAck  bool
	lastAck  int64

	// Loss.
	lost, reported int
	lossStart      int64 // ns
	loss           float64
	lossHolds      bool // the latest batch was above lossLow: no increase

	unknown uint64 // feedback about packets not in the history
}

// New returns an Estimator starting at cfg.Initial.
func New(cfg Config) *Estimator {
	if cfg.Min == 0 {
		cfg.Min = 10_000
	}
	if cfg.Max < cfg.Min {
		cfg.Max = math.MaxInt64
	}
	cfg.Initial = min(max(cfg.Initial, cfg.Min), cfg.Max)
	e := &Estimator{cfg: cfg, epoch: time.Now(), threshold: thresholdInit, overusingTime: -1, increasing: true}
	for i := range e.binStart {
		e.binStart[i] = -1
	}
	e.target.Store(cfg.Initial)
	return e
}

// Now is the Estimator's clock: time since it was made.
func (e *Estimator) Now() time.Duration { return time.Since(e.epoch) }

// Target returns the estimate in bits per second.
func (e *Estimator) Target() uint64 { return e.target.Load() }

// Sent records that the packet with transport-wide sequence number seq
// and size bytes left at now (the Estimator's clock).
func (e *Estimator) Sent(seq uint16, size int, now time.Duration) {
	at := uint32(now / time.Microsecond)
	if at == 0 {
		at = 1
	}
	e.mu.Lock()
	e.history[seq&historyMask] = sent{at: at, seq: seq, size: uint16(min(size, sizeMask))}
	e.mu.Unlock()
}

// Congested reports the smoothed loss ratio (0..1) and whether the delay
// detector sees the queue growing, or the estimate was cut within
// decreaseHold.
func (e *Estimator) Congested(now time.Duration) (loss float64, overusing bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	recent := e.lastDecrease != 0 && int64(now)-e.lastDecrease < int64(decreaseHold)
	return e.loss, e.usage == overuse || recent
}

// Unknown counts reported packets that were not in the history (too
// old, or never sent on this connection).
func (e *Estimator) Unknown() uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.unknown
}

// HandleTWCC reads one transport-wide feedback packet (RTPFB, FMT 15)
// that arrived at now and updates the estimate.
func (e *Estimator) HandleTWCC(pkt []byte, now time.Duration) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	// The reference time is checked and unwrapped first; ParseTWCC
	// reports arrivals on the raw 24-bit clock.
	var base int64
	first := true
	_, err := ParseTWCC(pkt, func(seq uint16, received bool, arrival int64) {
		if first {
			// ParseTWCC checked the whole packet before this call, so
			// its reference time (bytes 16–18) is there.
			first = false
			base = e.unwrapRef(uint32(pkt[16])<<16 | uint32(pkt[17])<<8 | uint32(pkt[18]))
		}
		e.report(seq, received, arrival+base, int64(now))
	})
	if err != nil {
		return err
	}
	e.update(int64(now))
	return nil
}

// unwrapRef returns the offset, in µs, that makes arrivals on the 24-bit
// reference clock (which wraps every 12.4 days) grow monotonically.
func (e *Estimator) unwrapRef(ref uint32) int64 {
	const span = 1 << 24
	if e.refSet {
		d := int64(ref) - int64(e.lastRef)
		switch {
		case d < -span/2:
			e.refWraps++
		case d > span/2 && e.refWraps > 0:
			// A late feedback from before the last wrap.
			return (e.refWraps - 1) * span * 64_000
		}
	}
	e.refSet, e.lastRef = true, ref
	return e.refWraps * span * 64_000
}

// report takes one packet of a feedback, in sequence order, that
// arrived at now.
func (e *Estimator) report(seq uint16, received bool, arrival, now int64) {
	s := &e.history[seq&historyMask]
	if s.at == 0 || s.seq != seq {
		e.unknown++
		return
	}
	switch {
	case s.size&receivedBit != 0, !received && s.size&reportedBit != 0:
		return // reported before: counted once
	case received && s.size&reportedBit != 0:
		// Reported lost before, arrived after all: it was late, not
		// lost. Its delay sample is out of order; only its bytes count.
		s.size |= receivedBit
		if e.lost > 0 {
			e.lost--
		}
		e.acked(arrival, s.bytes())
		return
	}
	s.size |= reportedBit
	e.reported++
	if !received {
		e.lost++
		return
	}
	s.size |= receivedBit
	e.acked(arrival, s.bytes())
	e.sample(sentAt(s.at, now), arrival)
}

// acked adds a received packet's bytes to the acknowledged rate.
func (e *Estimator) acked(arrival int64, size int) {
	if !e.haveAck {
		e.haveAck, e.firstAck = true, arrival
	}
	e.lastAck = max(e.lastAck, arrival)
	start := arrival - arrival%int64(ackedBin/time.Microsecond)
	i := int(start/int64(ackedBin/time.Microsecond)) % ackedBins
	if i < 0 {
		i += ackedBins
	}
	if e.binStart[i] != start {
		if e.binStart[i] > start {
			return // older than the window
		}
		e.binStart[i], e.binBytes[i] = start, 0
	}
	e.binBytes[i] += size
}

// ackedRate is the acknowledged bit rate over the last ackedBins bins
// before the latest arrival, or 0 while less than ackedMinSpan is known.
func (e *Estimator) ackedRate() float64 {
	if !e.haveAck {
		return 0
	}
	window := int64(ackedBins * ackedBin / time.Microsecond)
	span := min(e.lastAck-e.firstAck, window)
	if span < int64(ackedMinSpan/time.Microsecond) {
		return 0
	}
	from := e.lastAck - window
	bytes := 0
	for i, s := range e.binStart {
		if s >= 0 && s > from {
			bytes += e.binBytes[i]
		}
	}
	return float64(bytes*8) / (float64(span) / 1e6)
}

// sample groups a received packet (sent at ns, arrived at µs) into a
// burst and, when a burst is complete, feeds its delay to the trend.
func (e *Estimator) sample(sentAt, arrival int64) {
	if e.haveCur && sentAt < e.cur.firstSend {
		return // reordered before the group: no use for the gradient
	}
	if e.haveCur && sentAt-e.cur.firstSend <= int64(burstTime) {
		e.cur.lastSend = max(e.cur.lastSend, sentAt)
		e.cur.lastArrival = max(e.cur.lastArrival, arrival)
		return
	}
	if e.haveCur {
		if e.havePrev {
			sendDelta := float64(e.cur.lastSend-e.prev.lastSend) / 1e6 // ms
			arrivalDelta := float64(e.cur.lastArrival-e.prev.lastArrival) / 1e3
			e.trend(arrivalDelta-sendDelta, e.cur.lastArrival)
		}
		e.prev, e.havePrev = e.cur, true
	}
	e.cur, e.haveCur = group{firstSend: sentAt, lastSend: sentAt, lastArrival: arrival}, true
}

// trend adds one delay variation (ms) at arrival (µs) to the trend line
// and runs the overuse detector on the new slope.
func (e *Estimator) trend(delta float64, arrival int64) {
	if e.samples == 0 {
		e.firstArrival = arrival
	}
	e.samples = min(e.samples+1, 1000)
	e.acc += delta
	e.smoothed = trendSmoothing*e.smoothed + (1-trendSmoothing)*e.acc
	x := float64(arrival-e.firstArrival) / 1e3
	e.window[e.windowNext] = struct{ x, y float64 }{x, e.smoothed}
	e.windowNext = (e.windowNext + 1) % trendWindow
	slope := e.prevTrend
	if e.samples >= trendWindow { // the window is full
		slope = e.slope()
	}
	e.detect(slope, arrival)
	e.prevTrend = slope
}

// slope is the least-squares slope of the window.
func (e *Estimator) slope() float64 {
	var sx, sy float64
	for _, p := range e.window {
		sx += p.x
		sy += p.y
	}
	mx, my := sx/trendWindow, sy/trendWindow
	var num, den float64
	for _, p := range e.window {
		num += (p.x - mx) * (p.y - my)
		den += (p.x - mx) * (p.x - mx)
	}
	if den == 0 {
		return e.prevTrend
	}
	return num / den
}

// detect compares the modified trend with the adaptive threshold.
func (e *Estimator) detect(slope float64, arrival int64) {
	m := float64(min(e.samples, trendMaxCount)) * slope * trendGain
	since := 0.0
	if e.lastSample != 0 {
		since = float64(arrival-e.lastSample) / 1e3
	}
	e.lastSample = arrival
	switch {
	case m > e.threshold:
		if e.overusingTime < 0 {
			e.overusingTime = since / 2
		} else {
			e.overusingTime += since
		}
		e.overuseCount++
		if e.overusingTime > overuseTime && e.overuseCount > 1 && slope >= e.prevTrend {
			e.overusingTime, e.overuseCount = 0, 0
			e.usage = overuse
		}
	case m < -e.threshold:
		e.overusingTime, e.overuseCount = -1, 0
		e.usage = underuse
	default:
		e.overusingTime, e.overuseCount = -1, 0
		e.usage = normal
	}
	e.adaptThreshold(m, arrival)
}

// adaptThreshold moves the threshold towards |m|: quickly down, slowly
// up, so that a competing flow's delay does not starve this one and
// noise does not read as overuse.
func (e *Estimator) adaptThreshold(m float64, arrival int64) {
	if e.lastUpdate == 0 {
		e.lastUpdate = arrival
	}
	am := math.Abs(m)
	if am > e.threshold+15 {
		e.lastUpdate = arrival // a spike: not evidence about the threshold
		return
	}
	k := kUp
	if am < e.threshold {
		k = kDown
	}
	dt := min(float64(arrival-e.lastUpdate)/1e3, 100)
	e.threshold = min(max(e.threshold+k*(am-e.threshold)*dt, thresholdMin), thresholdMax)
	e.lastUpdate = arrival
}

// update runs the rate controller after a feedback.
func (e *Estimator) update(now int64) {
	target := float64(e.target.Load())
	acked := e.ackedRate()
	dt := 0.0
	if e.lastChange != 0 {
		dt = min(float64(now-e.lastChange)/1e9, 1)
	}
	e.lastChange = now

	switch e.usage {
	case overuse:
		if e.lastDecrease == 0 || now-e.lastDecrease >= int64(decreaseHold) {
			if acked > 0 {
				e.noteMax(acked)
				target = min(target, decreaseFactor*acked)
			} else {
				target *= decreaseFactor
			}
			e.lastDecrease, e.increasing = now, false
		}
	case underuse:
		e.increasing = false // the queue drains: hold
	case normal:
		if !e.increasing {
			e.increasing = true // hold one round after a decrease
			break
		}
		if e.lossHolds {
			break
		}
		if e.nearMax(acked) {
			target += nearMaxPacket * dt / responseTime.Seconds()
		} else {
			target *= math.Pow(growthPerSecond, dt)
		}
		if acked > 0 {
			// Only what the subscriber acknowledged is known to pass.
			target = min(target, max(ackedHeadroom*acked+ackedSlack, float64(e.target.Load())))
		}
	}
	target = e.lossBound(target, now)
	target = min(max(target, float64(e.cfg.Min)), float64(e.cfg.Max))
	e.target.Store(uint64(target))
}

// noteMax keeps a running average and variance of the rates at which
// the path overflowed: near it, the estimate grows additively.
func (e *Estimator) noteMax(acked float64) {
	const alpha = 0.05
	if !e.haveMax {
		e.avgMax, e.varMax, e.haveMax = acked, 0, true
		return
	}
	if e.avgMax > 0 && math.Abs(acked-e.avgMax) > 3*math.Sqrt(e.varMax)+0.2*e.avgMax {
		e.avgMax, e.varMax = acked, 0 // capacity moved: start over
		return
	}
	d := acked - e.avgMax
	e.avgMax += alpha * d
	e.varMax = (1 - alpha) * (e.varMax + alpha*d*d)
}

func (e *Estimator) nearMax(acked float64) bool {
	if !e.haveMax || acked <= 0 {
		return false
	}
	spread := 3*math.Sqrt(e.varMax) + 0.1*e.avgMax
	if acked > e.avgMax+spread {
		e.haveMax = false // past the old capacity: it has grown
		return false
	}
	return acked > e.avgMax-spread
}

// lossBound judges the loss of the reported packets once a batch is
// complete and lowers target under heavy loss.
func (e *Estimator) lossBound(target float64, now int64) float64 {
	if e.lossStart == 0 {
		e.lossStart = now
	}
	if e.reported < lossBatch && now-e.lossStart < int64(lossPeriod) {
		return target
	}
	if e.reported == 0 {
		e.lossStart = now
		return target
	}
	ratio := float64(e.lost) / float64(e.reported)
	e.loss = lossSmooth*ratio + (1-lossSmooth)*e.loss
	e.lost, e.reported, e.lossStart = 0, 0, now
	e.lossHolds = ratio >= lossLow
	if ratio > lossHigh {
		target *= 1 - 0.5*ratio
		e.lastDecrease = now
	}
	return target
}
