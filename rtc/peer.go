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
