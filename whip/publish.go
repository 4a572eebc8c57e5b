package whip

import (
	"github.com/pion/webrtc/v4"

	"github.com/focus-sfu/focus/focus"
)

// onTrack publishes a remote track into the core and feeds it until the
// track ends.
func (sess *session) onTrack(track *webrtc.TrackRemote, recv *webrtc.RTPReceiver) {
	if !sess.trackStarted() {
		return
	}
	defer sess.tracks.Done()
	sess.pubs.Receive(track, recv, func(info focus.TrackInfo) (*focus.UpTrack, error) {
		return sess.part.Publish(info, sess.pc)
	}, sess.log)
}
