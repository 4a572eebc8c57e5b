package testclient

import (
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// TrackRecorder checks the packets of one remote track the way a Viewer
// checks each kind: sequence continuity, payload integrity, VP8 keyframes
// and the publisher's session. Clients that receive many tracks keep one
// per track. It is not safe for concurrent use.
type TrackRecorder struct {
	kind webrtc.RTPCodecType
	st   trackState
}

// NewTrackRecorder returns a recorder for a track of kind; VP8 is checked
// only for video.
func NewTrackRecorder(kind webrtc.RTPCodecType) *TrackRecorder {
	return &TrackRecorder{kind: kind}
}

// Record counts one packet that arrived at now.
func (r *TrackRecorder) Record(pkt *rtp.Packet, now time.Time) {
	r.st.record(r.kind, pkt, now)
}

// Stats returns a copy of the counts so far. TrackIDs and Codecs are left
// to the caller, who knows the track.
func (r *TrackRecorder) Stats() TrackStats { return r.st.stats.clone() }
