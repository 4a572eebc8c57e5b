package rtc

import (
	"slices"
	"strings"
	"sync"

	"github.com/pion/webrtc/v4"
	"github.com/rs/zerolog"

	"github.com/focus-sfu/focus/focus"
)

// Publications turns one PeerConnection's remote tracks into core
// UpTracks. pion reports each simulcast layer as its own remote track;
// the layers of one receiver share one UpTrack, which is unpublished when
// its last layer ends.
type Publications struct {
	mu   sync.Mutex
	byRx map[*webrtc.RTPReceiver]*publication
}

type publication struct {
	up      *focus.UpTrack
	running int
}

// PublishFunc publishes a track in the core; info has the codec, kind,
// extensions and layers filled in from the remote track.
type PublishFunc func(info focus.TrackInfo) (*focus.UpTrack, error)

// Receive publishes track (or joins it to its receiver's UpTrack) and
// feeds it until it ends. Call it from PeerConnection.OnTrack.
func (p *Publications) Receive(track *webrtc.TrackRemote, recv *webrtc.RTPReceiver, publish PublishFunc, log zerolog.Logger) {
	if isRTX(track.Codec().MimeType) {
		// pion announces a retransmission stream it could not pair with
		// its media stream (seen after an ICE restart of a simulcast
		// publisher) as a track of its own. Its packets are repairs with
		// the original sequence number in front: forwarded as media they
		// would corrupt the layer. Drain it so pion's buffer stays empty.
		log.Debug().Str("rid", track.RID()).Msg("ignoring an unpaired retransmission stream")
		buf := make([]byte, 1500)
		for {
			if _, _, err := track.Read(buf); err != nil {
				return
			}
		}
	}
	up, err := p.start(track, recv, publish)
	if err != nil {
		log.Warn().Err(err).Msg("publish track")
		return
	}
	log = log.With().Str("track", string(up.ID())).Str("rid", track.RID()).Logger()
	log.Info().Str("codec", track.Codec().MimeType).Msg("receiving track")
	Receive(up, track, recv, log)

	p.mu.Lock()
	pub := p.byRx[recv]
	pub.running--
	last := pub.running == 0
	if last {
		delete(p.byRx, recv)
	}
	p.mu.Unlock()
	if last {
		up.Close()
	}
}

func isRTX(mime string) bool { return strings.EqualFold(mime, webrtc.MimeTypeRTX) }

// start holds the lock across publish, which raises core events, so
// that simulcast layers arriving together make one UpTrack.
func (p *Publications) start(track *webrtc.TrackRemote, recv *webrtc.RTPReceiver, publish PublishFunc) (*focus.UpTrack, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.byRx == nil {
		p.byRx = make(map[*webrtc.RTPReceiver]*publication)
	}
	if pub := p.byRx[recv]; pub != nil {
		pub.running++
		return pub.up, nil
	}
	info := TrackInfo(track, recv)
	info.Source = focus.SourceCamera
	if info.Kind == focus.KindAudio {
		info.Source = focus.SourceMicrophone
	}
	if track.RID() != "" {
		// pion may list a receiver's track for one RID more than once.
		for _, t := range recv.Tracks() {
			if rid := t.RID(); !slices.Contains(info.Layers, rid) {
				info.Layers = append(info.Layers, rid)
			}
		}
	}
	up, err := publish(info)
	if err != nil {
		return nil, err
	}
	p.byRx[recv] = &publication{up: up, running: 1}
	return up, nil
}
