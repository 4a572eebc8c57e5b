package focus

import "time"

// rtpMunger maps one or more input streams, one after the other, onto a
// single output stream with continuous sequence numbers and timestamps.
type rtpMunger struct {
	started   bool
	seqOffset uint16 // out = in + offset
	tsOffset  uint32
	firstIn   uint16 // first input sequence number of the current source
	highestIn uint16

	lastOutSeq uint16
	lastOutTS  uint32
	lastAt     time.Time // arrival of the packet that set lastOutTS
}

// switchSource starts a new input segment at (seq, ts), arriving at now.
// The output continues one sequence number after the last one sent, and
// its timestamp advances by the wall-clock time since the last packet.
func (m *rtpMunger) switchSource(seq uint16, ts uint32, now time.Time, clockRate uint32) {
	if !m.started {
		m.started = true
		m.seqOffset, m.tsOffset = 0, 0
	} else {
		m.seqOffset = m.lastOutSeq + 1 - seq
		step := uint32(1)
		if el := now.Sub(m.lastAt); el > 0 && clockRate > 0 {
			if s := uint64(el) * uint64(clockRate) / uint64(time.Second); s > 0 {
				step = uint32(s)
			}
		}
		m.tsOffset = m.lastOutTS + step - ts
	}
	m.firstIn = seq
	m.highestIn = seq - 1
}

// rewrite maps an input packet of the current source. It refuses packets
// from before the source switch.
func (m *rtpMunger) rewrite(seq uint16, ts uint32, now time.Time) (uint16, uint32, bool) {
	if int16(seq-m.firstIn) < 0 {
		return 0, 0, false
	}
	outSeq, outTS := seq+m.seqOffset, ts+m.tsOffset
	if int16(seq-m.highestIn) > 0 {
		m.highestIn = seq
		m.lastOutSeq, m.lastOutTS, m.lastAt = outSeq, outTS, now
		// Keep the segment start within half the sequence space, so the
		// age check above stays meaningful after a wrap.
		if m.highestIn-m.firstIn > 0x4000 {
			m.firstIn = m.highestIn - 0x4000
		}
	}
	return outSeq, outTS, true
}

// drop skips input seq, a packet of the current source that is not
// forwarded, so that the output sequence shows no gap. A packet that
// arrives out of order across a drop is mapped with the newer offset.
func (m *rtpMunger) drop(seq uint16) {
	if int16(seq-m.highestIn) > 0 {
		m.highestIn = seq
		m.seqOffset--
	}
}
