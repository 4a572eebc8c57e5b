package focus

import (
	"math/bits"

	"github.com/pion/rtcp"
)

// Stats is a snapshot of the SFU for monitoring: gauges of what it holds
// now, and counters that only grow. The counters of tracks that ended
// are kept, so a counter never goes back when a participant leaves.
//
// The media plane counts in fields the forwarding path owns already (a
// layer's atomics, a down track's mutex-guarded fields); Stats gathers
// them, so taking a snapshot costs the packets nothing.
type Stats struct {
	Conferences  int
	Participants int
	Audio, Video MediaStats

	// NACKs are the NACK messages subscribers sent, asking for NACKed
	// packets; Retransmitted of those were sent again and
	// RetransmitsRefused were over a subscriber's retransmission budget.
	NACKs              uint64
	NACKedPackets      uint64
	Retransmitted      uint64
	RetransmitsRefused uint64
	// PLIsReceived are the picture loss indications and full intra
	// requests subscribers sent; PLIsSent are the keyframe requests the
	// SFU sent publishers (one may answer many received).
	PLIsReceived uint64
	PLIsSent     uint64
	// LayerSwitches counts a subscription moving to another simulcast
	// layer of its track.
	LayerSwitches uint64
	// PaddingPackets and PaddingBytes are the padding sent to probe
	// subscribers' links.
	PaddingPackets uint64
	PaddingBytes   uint64

	// PausedForBandwidth is how many subscriptions are held back now
	// for lack of bandwidth.
	PausedForBandwidth int
	// Estimates are the current bandwidth estimates, in bits per second,
	// of the participants whose connection has an estimator.
	Estimates []uint64
}

// MediaStats are the figures of one media kind.
type MediaStats struct {
	// Published and Subscribed are the live tracks and subscriptions.
	Published  int
	Subscribed int
	// PacketsIn and BytesIn count the RTP received from publishers;
	// PacketsOut and BytesOut the RTP forwarded to subscribers, without
	// retransmissions and padding. Bytes are whole RTP packets, header
	// included, before SRTP.
	PacketsIn  uint64
	BytesIn    uint64
	PacketsOut uint64
	BytesOut   uint64
}

func (s *Stats) kind(k Kind) *MediaStats {
	if k == KindAudio {
		return &s.Audio
	}
	return &s.Video
}

// Stats returns a snapshot of the SFU's gauges and counters. It walks
// every conference, and is meant to be called a few times a minute.
func (s *SFU) Stats() Stats {
	var ests []BandwidthEstimator
	s.statsMu.Lock()
	st := s.retired
	s.mu.Lock()
	confs := make([]*Conference, 0, len(s.conferences))
	for _, c := range s.conferences {
		confs = append(confs, c)
	}
	st.Participants = s.participants
	s.mu.Unlock()
	st.Conferences = len(confs)
	for _, c := range confs {
		for _, p := range c.Participants() {
			for _, t := range p.Tracks() {
				if !t.retired {
					st.addUp(t)
				}
			}
			for _, d := range p.DownTracks() {
				if !d.retired {
					st.addDown(d)
				}
			}
			if e := p.bandwidthEstimator(); e != nil {
				ests = append(ests, e)
			}
		}
	}
	s.statsMu.Unlock()
	// Estimators answer outside the SFU's locks.
	if len(ests) > 0 {
		st.Estimates = make([]uint64, 0, len(ests))
		for _, e := range ests {
			st.Estimates = append(st.Estimates, e.TargetBitrate())
		}
	}
	return st
}

// addUp adds t's counters, and t itself when it is live.
func (s *Stats) addUp(t *UpTrack) {
	m := s.kind(t.info.Kind)
	for _, l := range t.layers {
		m.PacketsIn += l.packets.Load()
		m.BytesIn += l.bytes.Load()
	}
	s.PLIsSent += t.plisSent.Load()
	if !t.Closed() {
		m.Published++
	}
}

// addDown adds d's counters, and d itself when it is live.
func (s *Stats) addDown(d *DownTrack) {
	m := s.kind(d.kind)
	d.mu.Lock()
	defer d.mu.Unlock()
	m.PacketsOut += d.packets
	m.BytesOut += d.bytesOut
	s.NACKs += d.nacks
	s.NACKedPackets += d.nacked
	s.Retransmitted += d.rtx.resent
	s.RetransmitsRefused += d.rtx.refused
	s.PLIsReceived += d.plis
	s.LayerSwitches += d.switches
	s.PaddingPackets += d.paddingPackets
	s.PaddingBytes += d.paddingBytes
	if !d.closed {
		m.Subscribed++
		if d.heldForBandwidth {
			s.PausedForBandwidth++
		}
	}
}

// retireUp keeps the counters of an unpublished track. Packets it reads
// after this are not counted: they go nowhere.
func (s *SFU) retireUp(t *UpTrack) {
	s.statsMu.Lock()
	defer s.statsMu.Unlock()
	if t.retired {
		return
	}
	t.retired = true
	s.retired.addUp(t)
}

// retireDown keeps the counters of a closed down track, which no longer
// change.
func (s *SFU) retireDown(d *DownTrack) {
	s.statsMu.Lock()
	defer s.statsMu.Unlock()
	if d.retired {
		return
	}
	d.retired = true
	s.retired.addDown(d)
}

// nackedPackets is how many packets a NACK asks for.
func nackedPackets(nacks []rtcp.NackPair) uint64 {
	n := uint64(0)
	for _, p := range nacks {
		n += 1 + uint64(bits.OnesCount16(uint16(p.LostPackets)))
	}
	return n
}
