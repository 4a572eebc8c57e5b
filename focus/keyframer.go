package focus

import (
	"sync"
	"sync/atomic"
	"time"
)

// keyframer decides when a publisher layer is asked for a keyframe.
// Requests made while one is in flight share its answer, so a burst of
// new subscribers costs one keyframe. Requests are budgeted: one per
// interval on average, with a burst of keyframeBurst for sporadic joins
// (each new subscriber waits for a keyframe, so the budget is setup
// time), and never closer than keyframeSpacing.
type keyframer struct {
	interval time.Duration
	pending  atomic.Bool // a request waits for the budget

	inFlight atomic.Bool // a request was sent and no keyframe came yet

	mu       sync.Mutex
	lastSent time.Time
	credit   time.Duration // budget left at lastSent, in units of interval
}

// Keyframe request budget: up to keyframeBurst requests at once, at
// least keyframeSpacing apart (a publisher answers within a frame or
// two, and a request in flight is shared).
const (
	keyframeBurst   = 3
	keyframeSpacing = 100 * time.Millisecond
)

// request records that a keyframe is wanted, and reports whether to send
// a keyframe request upstream now.
func (k *keyframer) request(now time.Time) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.inFlight.Load() && now.Sub(k.lastSent) < 2*k.interval {
		return false // the keyframe already asked for will serve this one too
	}
	if k.allowedLocked(now) {
		return k.sendLocked(now)
	}
	k.pending.Store(true)
	return false
}

// tick reports whether a pending request may be sent now. The per-packet
// caller checks pending first, so this is rarely reached.
func (k *keyframer) tick(now time.Time) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	if !k.pending.Load() || !k.allowedLocked(now) {
		return false
	}
	return k.sendLocked(now)
}

// budgetLocked is the budget at now.
func (k *keyframer) budgetLocked(now time.Time) time.Duration {
	limit := keyframeBurst * k.interval
	if k.lastSent.IsZero() {
		return limit
	}
	return min(k.credit+now.Sub(k.lastSent), limit)
}

func (k *keyframer) allowedLocked(now time.Time) bool {
	if !k.lastSent.IsZero() && now.Sub(k.lastSent) < keyframeSpacing {
		return false
	}
	return k.budgetLocked(now) >= k.interval
}

func (k *keyframer) sendLocked(now time.Time) bool {
	k.credit = k.budgetLocked(now) - k.interval
	k.lastSent = now
	k.inFlight.Store(true)
	k.pending.Store(false)
	return true
}

// received records that a keyframe arrived: it answers every request.
func (k *keyframer) received() {
	if !k.inFlight.Load() && !k.pending.Load() {
		return
	}
	k.mu.Lock()
	k.inFlight.Store(false)
	k.pending.Store(false)
	k.mu.Unlock()
}
