package rtc

import (
	"github.com/pion/webrtc/v4"

	"github.com/focus-sfu/focus/focus"
)

// Peer is a PeerConnection made by the Engine, with the send-side
// bandwidth estimate of what the focus sends on it.
type Peer struct {
	*webrtc.PeerConnection
	est *estimator
}

// Estimator returns the connection's send-side bandwidth estimate, for
// focus.Participant.SetBandwidthEstimator on the connection that carries
// a participant's subscriptions. It follows the subscriber's
// transport-wide feedback (rtc/bwe), or its REMB when it sends
// only REMB. It also implements focus.CongestionReporter.
func (p *Peer) Estimator() focus.BandwidthEstimator { return p.est }

// Congestion is the estimator's loss ratio and overuse state (see
// focus.CongestionReporter).
func (p *Peer) Congestion() (loss float64, overusing bool) { return p.est.Congestion() }

// Traffic is what a connection carried over its selected ICE pair.
type Traffic struct {
	PacketsIn, BytesIn, PacketsOut, BytesOut uint64
}

// Traffic returns what the connection carried over its selected ICE pair
// (pion's pair statistics), with the RTP the direct path sent and the
// RTCP it took, which pion never sees. It reports false while there is
// no pair. pion's ICE transport reads its gatherer without a lock while
// it is starting, so ask only once the connection has been connected.
func (p *Peer) Traffic() (Traffic, bool) {
	s, ok := p.SCTP().Transport().ICETransport().GetSelectedCandidatePairStats()
	if !ok {
		return Traffic{}, false
	}
	t := Traffic{
		PacketsIn:  uint64(s.PacketsReceived),
		BytesIn:    s.BytesReceived,
		PacketsOut: uint64(s.PacketsSent),
		BytesOut:   s.BytesSent,
	}
	if d := p.est.direct.Load(); d != nil {
		packets, bytes := d.sent()
		t.PacketsOut += packets
		t.BytesOut += bytes
		t.PacketsIn += d.received.Load()
		t.BytesIn += d.receivedBytes.Load()
	}
	return t, true
}
