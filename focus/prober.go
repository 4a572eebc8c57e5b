package focus

import (
	"time"

	"github.com/focus-sfu/focus/focus/allocator"
)

// CongestionReporter is implemented by a BandwidthEstimator that can
// tell congestion apart from a low estimate (rtc's). The core
// probes only connections whose estimator implements it: without it a
// failed probe would go unnoticed.
type CongestionReporter interface {
	// Congestion returns the smoothed fraction of packets lost (0..1)
	// and whether the delay-based detector sees the path's queue growing.
	Congestion() (loss float64, overusing bool)
}

// Probing parameters. The estimator raises its estimate by about 8 % a
// second and never above 1.5 times what it saw arrive, so a subscriber whose
// estimate started at 1 Mbit/s would wait many seconds for a layer it
// could take now. A probe sends padding on top of the media for a short
// cluster; if the path carries it without queueing or loss, the probed
// rate is used at once.
const (
	probeSlot    = 20 * time.Millisecond  // the core ticks the prober this often
	probeCluster = 500 * time.Millisecond // how long padding is sent
	// probeSettle waits for the verdict on the cluster's padding: its
	// feedback, and gcc's delay detector, which over vnet flagged a queue
	// the cluster had built 0.4-0.8 s after a 400 ms wait had already
	// confirmed it.
	probeSettle   = 1200 * time.Millisecond
	probeInterval = 2500 * time.Millisecond
	probeMaxWait  = 20 * time.Second // backoff ceiling after failures
	probeQuiet    = 3 * time.Second  // no probe this soon after congestion
	probeMaxLoss  = 0.02             // loss at or above this is congestion
	probeGrowth   = 2                // a cluster targets at most twice the estimate
	// probeRevoked: congestion this soon after a confirmation proves the
	// probe wrong.
	probeRevoked = 5 * time.Second
)

type probeState uint8

const (
	probeIdle     probeState = iota
	probeSending             // padding the cluster
	probeSettling            // cluster sent; waiting for its feedback
)

// probeInput is what the core knows about one subscriber's connection
// at a tick.
type probeInput struct {
	Estimate  uint64  // the estimator's target bitrate
	Wanted    uint64  // what the subscriber would take with unlimited bandwidth (allocator Result.Wanted)
	Sending   uint64  // the media bitrate now allocated (allocator Result.Used)
	Loss      float64 // from CongestionReporter
	Overusing bool    // from CongestionReporter
}

// prober decides when one subscriber's connection is probed, how much
// padding to send, and what the probes proved. It is a pure state
// machine on an injected clock, not safe for concurrent use: the core's
// tick owns it.
//
// A cluster starts when a higher estimate could raise what the
// subscriber gets (worthProbing), the connection has been free of
// congestion for probeQuiet, and probeInterval has passed since the last
// cluster (doubled after each failure, up to probeMaxWait). It targets
// min(wanted plus the allocator's headroom, 2×estimate) and lasts
// probeCluster, padding each tick the
// gap between the target and the media being sent. It succeeds when
// neither the cluster nor the probeSettle after it saw overuse or loss
// of probeMaxLoss or more. The target then becomes the confirmed
// bitrate, which estimate reports in place of a lower estimator figure
// until the estimator catches up (confirmed is then dropped) or reports
// congestion (confirmed is then dropped too, and the estimator's own
// decrease rules).
type prober struct {
	state     probeState
	start     time.Time // of the cluster
	last      time.Time // previous padded tick
	settleEnd time.Time
	target    uint64

	next        time.Time // earliest start of the next cluster
	failures    int       // consecutive
	congested   time.Time // last congestion seen
	confirmed   uint64
	confirmedAt time.Time
}

// tick advances the prober to now and returns the padding bytes the
// core sends before the next tick (0 outside a cluster). Send them as
// padding-only packets (at most 255 bytes of padding each), preferably
// on a video track's RTX stream, which receivers drop without touching
// their jitter buffers.
func (p *prober) tick(now time.Time, in probeInput) (padBytes int) {
	congested := in.Overusing || in.Loss >= probeMaxLoss
	if congested {
		p.congested = now
		if p.confirmed > 0 && now.Sub(p.confirmedAt) < probeRevoked {
			// Congestion soon after a probe was confirmed: the probe
			// was wrong (the path queued its padding without a verdict
			// in time). Back off as after a failed probe, or every
			// probe would move the subscriber up and down again.
			p.fail(now)
		}
		p.confirmed = 0
	}
	if p.confirmed > 0 && in.Estimate >= p.confirmed {
		p.confirmed = 0 // the estimator caught up; follow it again
	}
	switch p.state {
	case probeSending:
		switch {
		case congested:
			p.fail(now)
			return 0
		case !worthProbing(in, p.estimate(in.Estimate)):
			// The subscriber no longer wants more (it unsubscribed, or
			// lowered its layers): nothing to prove, nothing failed.
			p.state = probeIdle
			p.next = now.Add(probeInterval)
			return 0
		case now.Sub(p.start) >= probeCluster:
			p.state = probeSettling
			p.settleEnd = now.Add(probeSettle)
			return 0
		}
		return p.pad(now, in.Sending)
	case probeSettling:
		switch {
		case congested:
			p.fail(now)
		case !now.Before(p.settleEnd):
			p.state = probeIdle
			p.failures = 0
			p.next = now.Add(probeInterval)
			if p.target > p.confirmed && p.target > in.Estimate {
				p.confirmed, p.confirmedAt = p.target, now
			}
		}
		return 0
	}

	base := p.estimate(in.Estimate)
	if !worthProbing(in, base) || base == 0 ||
		now.Before(p.next) || !p.congested.IsZero() && now.Sub(p.congested) < probeQuiet {
		return 0
	}
	p.state = probeSending
	p.start = now
	p.last = now.Add(-probeSlot)
	p.target = min(allocator.WithHeadroom(in.Wanted), probeGrowth*base)
	return p.pad(now, in.Sending)
}

// worthProbing reports whether a higher estimate could raise what the
// subscriber gets: it gets less than it wants, and the estimate is short
// of what the allocator needs to move up to all of it, which is the
// wanted rate plus the allocator's headroom. Probing only up to the
// wanted rate itself would leave the estimate where the allocator keeps
// the current layers but raises none, and stop probing there: measured
// over vnet, the top layer then waited some 15 s for gcc's own climb.
func worthProbing(in probeInput, estimate uint64) bool {
	return in.Sending < in.Wanted && estimate < allocator.WithHeadroom(in.Wanted)
}

// pad returns the padding that fills the gap between the cluster's
// target and the media for the time since the last tick. A late tick
// pads at most two slots' worth, so a stalled caller does not burst.
func (p *prober) pad(now time.Time, sending uint64) int {
	dt := min(now.Sub(p.last), 2*probeSlot)
	p.last = now
	if dt <= 0 || sending >= p.target {
		return 0
	}
	return int((p.target - sending) * uint64(dt) / uint64(8*time.Second))
}

func (p *prober) fail(now time.Time) {
	p.state = probeIdle
	p.failures++
	wait := probeInterval << min(p.failures, 8)
	p.next = now.Add(min(wait, probeMaxWait))
}

// estimate is the bitrate the allocator may spend: the estimator's own
// figure, or the probe-confirmed one while that is higher.
func (p *prober) estimate(estimator uint64) uint64 {
	return max(estimator, p.confirmed)
}

// probing reports whether a cluster is being sent or evaluated.
func (p *prober) probing() bool { return p.state != probeIdle }
