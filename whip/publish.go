package whip

import (
	"github.com/pion/webrtc/v4"

	"github.com/focus-sfu/focus/focus"
	"github.com/focus-sfu/focus/rtc"
)

// onTrack publishes a remote track into the core and feeds it until the
// track ends. Simulcast layers of one receiver share one UpTrack.
func (sess *session) onTrack(track *webrtc.TrackRemote, recv *webrtc.RTPReceiver) {
	if !sess.trackStarted() {
		return
	}
	defer sess.tracks.Done()

	up, err := sess.publication(track, recv)
	if err != nil {
		sess.log.Warn().Err(err).Msg("publish track")
		return
	}
	log := sess.log.With().Str("track", string(up.ID())).Str("rid", track.RID()).Logger()
	log.Info().Str("codec", track.Codec().MimeType).Msg("receiving track")
	rtc.Receive(up, track, recv, log)

	sess.pubMu.Lock()
	pub := sess.pubs[recv]
	pub.running--
	last := pub.running == 0
	sess.pubMu.Unlock()
	if last {
		up.Close()
	}
}

func (sess *session) publication(track *webrtc.TrackRemote, recv *webrtc.RTPReceiver) (*focus.UpTrack, error) {
	sess.pubMu.Lock()
	defer sess.pubMu.Unlock()
	if pub := sess.pubs[recv]; pub != nil {
		pub.running++
		return pub.up, nil
	}
	info := rtc.TrackInfo(track, recv)
	info.Source = focus.SourceCamera
	if info.Kind == focus.KindAudio {
		info.Source = focus.SourceMicrophone
	}
	if track.RID() != "" {
		for _, t := range recv.Tracks() {
			info.Layers = append(info.Layers, t.RID())
		}
	}
	up, err := sess.part.Publish(info, sess.pc)
	if err != nil {
		return nil, err
	}
	sess.pubs[recv] = &publication{up: up, running: 1}
	return up, nil
}
