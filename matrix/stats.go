package matrix

import "sync/atomic"

// ToDeviceStats count to-device messages, for monitoring. The Transport
// counts what it sends and what it cannot decrypt; the Focus counts what
// it takes. Add sums the two.
type ToDeviceStats struct {
	// Handled are the m.call.* messages taken and acted on (an invite
	// refused with a hangup is handled too).
	Handled uint64
	// Failed are the messages dropped as malformed, undecryptable or
	// not acceptable (an m.call.answer: the focus never calls out).
	Failed uint64
	// Ignored are messages of types the focus does not take.
	Ignored uint64
	// Sent and SendFailed count the messages the focus sent, and those
	// the homeserver did not take.
	Sent       uint64
	SendFailed uint64
}

// Add returns the sum of s and o.
func (s ToDeviceStats) Add(o ToDeviceStats) ToDeviceStats {
	return ToDeviceStats{
		Handled:    s.Handled + o.Handled,
		Failed:     s.Failed + o.Failed,
		Ignored:    s.Ignored + o.Ignored,
		Sent:       s.Sent + o.Sent,
		SendFailed: s.SendFailed + o.SendFailed,
	}
}

// toDeviceCounters are the live counters behind ToDeviceStats.
type toDeviceCounters struct {
	handled, failed, ignored, sent, sendFailed atomic.Uint64
}

func (c *toDeviceCounters) stats() ToDeviceStats {
	return ToDeviceStats{
		Handled:    c.handled.Load(),
		Failed:     c.failed.Load(),
		Ignored:    c.ignored.Load(),
		Sent:       c.sent.Load(),
		SendFailed: c.sendFailed.Load(),
	}
}

// ToDeviceStats returns what the front-end did with the to-device
// messages it was given.
func (f *Focus) ToDeviceStats() ToDeviceStats { return f.counters.stats() }

// ToDeviceStats returns how many to-device messages the Transport sent,
// and how many it received but could not pass on.
func (t *Transport) ToDeviceStats() ToDeviceStats { return t.counters.stats() }
