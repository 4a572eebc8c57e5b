package speaker

import (
	"math"
	"sync/atomic"
)

// Sample is what a Meter saw between two calls of Take.
type Sample struct {
	// Packets is the number of levels observed; 0 means the track sent
	// nothing (muted, or gone quiet with DTX).
	Packets int
	// Level is the mean linear amplitude of those packets, 0..1; 0 when
	// Packets is 0.
	Level float64
}

// The accumulator packs a packet count (high countBits) and the sum of the
// packets' amplitudes in units of 1/ampScale (low sumBits) into one word.
// One atomic add then records a packet and one swap takes a consistent pair:
// two separate counters could hand a packet's amplitude to one tick and its
// count to the next, and a tick that saw the amplitude but not the packet
// would report a level above 1.
//
// With ampScale below 2^16, the sum of 2^24 packets fits in 40 bits, so both
// fields overflow at the same count: 2^24 packets between two Takes, 93 hours
// of 20 ms packets. The resolution, 1/65535, is 1 at -96 dBov, 50 dB below
// any useful threshold.
const (
	sumBits  = 40
	sumMask  = 1<<sumBits - 1
	countOne = 1 << sumBits
	ampScale = 1<<16 - 1
)

// Meter accumulates one audio track's levels between two ticks of the
// Detector. Observe is called per packet from the track's read loop and Take
// from the tick, concurrently: it is lock-free (one atomic add per packet)
// and allocates nothing. The zero value is ready to use; a Meter must not be
// copied after first use.
type Meter struct {
	acc atomic.Uint64
}

// Observe records one packet's level in -dBov (0 loudest, 127 silence), as
// ParseAudioLevel returns it. Levels above 127 count as 127.
func (m *Meter) Observe(level uint8) {
	if level > maxLevel {
		level = maxLevel
	}
	m.acc.Add(countOne | amplitude(level))
}

// amplitude is 10^(-level/20) in units of 1/ampScale, rounded. It is
// computed, not looked up, to keep the package free of package-level
// state; math.Exp costs a few nanoseconds.
func amplitude(level uint8) uint64 {
	return uint64(math.Exp(-float64(level)*(math.Ln10/20))*ampScale + 0.5)
}

// Take returns what was observed since the previous Take and starts over.
// It must be called at least once every 2^24 packets (93 hours of audio).
func (m *Meter) Take() Sample {
	v := m.acc.Swap(0)
	n := v >> sumBits
	if n == 0 {
		return Sample{}
	}
	return Sample{
		Packets: int(n),
		Level:   float64(v&sumMask) / ampScale / float64(n),
	}
}
