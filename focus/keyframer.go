package focus

import (
	"sync"
	"sync/atomic"
	"time"
)

// keyframer decides when a publisher layer is asked for a keyframe.
// Requests are spaced by a minimum interval; requests made while one is
// in flight share its answer, so a burst of new subscribers costs one
// keyframe.
type keyframer struct {
	interval time.Duration
	pending  atomic.Bool // a request waits for the interval to pass

	inFlight atomic.Bool // a request was sent and no keyframe came yet

	mu       sync.Mutex
	lastSent time.Time
}

// request records that a keyframe is wanted, and reports whether to send
// a keyframe request upstream now.
func (k *keyframer) request(now time.Time) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.inFlight.Load() && now.Sub(k.lastSent) < 2*k.interval {
		return false // the keyframe already asked for will serve this one too
	}
	if k.lastSent.IsZero() || now.Sub(k.lastSent) >= k.interval {
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
	if !k.pending.Load() || now.Sub(k.lastSent) < k.interval {
		return false
	}
	return k.sendLocked(now)
}

func (k *keyframer) sendLocked(now time.Time) bool {
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
