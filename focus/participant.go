package focus

import (
	"fmt"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// Participant is one remote endpoint in a conference.
type Participant struct {
	conf   *Conference
	info   ParticipantInfo
	log    zerolog.Logger
	joined time.Time

	mu     sync.Mutex
	tracks []*UpTrack
	downs  map[*DownTrack]struct{}
	left   bool
	bwe    BandwidthEstimator

	alloc allocation // owned by the SFU's control loop
}

func newParticipant(c *Conference, info ParticipantInfo) *Participant {
	return &Participant{
		conf:   c,
		info:   info,
		log:    c.sfu.log.With().Str("conf", string(c.id)).Str("participant", string(info.ID)).Logger(),
		joined: c.sfu.now(),
		downs:  make(map[*DownTrack]struct{}),
	}
}

// ID returns the participant's ID.
func (p *Participant) ID() ParticipantID { return p.info.ID }

// Info returns what the front-end said about the participant.
func (p *Participant) Info() ParticipantInfo { return p.info }

// Conference returns the participant's conference.
func (p *Participant) Conference() *Conference { return p.conf }

// Joined returns when the participant joined.
func (p *Participant) Joined() time.Time { return p.joined }

// Tracks returns the tracks the participant publishes.
func (p *Participant) Tracks() []*UpTrack {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]*UpTrack(nil), p.tracks...)
}

// DownTracks returns the participant's subscriptions.
func (p *Participant) DownTracks() []*DownTrack {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]*DownTrack, 0, len(p.downs))
	for d := range p.downs {
		out = append(out, d)
	}
	return out
}

// Publish announces a track. upstream carries keyframe requests back to
// the publisher. The front-end then feeds packets to UpTrack.HandleRTP.
func (p *Participant) Publish(info TrackInfo, upstream RTCPWriter) (*UpTrack, error) {
	if info.Kind != KindAudio && info.Kind != KindVideo {
		return nil, fmt.Errorf("focus: publish: unknown kind %d", info.Kind)
	}
	if info.ID == "" {
		info.ID = TrackID("TR_" + randomID()[:16])
	}
	t := newUpTrack(p, info, upstream)
	p.mu.Lock()
	if p.left {
		p.mu.Unlock()
		return nil, ErrClosed
	}
	p.tracks = append(p.tracks, t)
	p.mu.Unlock()
	p.conf.addTrack(t)
	t.log.Debug().Str("codec", info.Codec.MimeType).Msg("track published")
	p.conf.sfu.emit(TrackPublished{Conference: p.conf, Participant: p, Track: t})
	return t, nil
}

// Subscribe creates a down track that forwards src to this participant.
// The front-end binds it to a sender (DownTrack.Bind) once negotiated.
func (p *Participant) Subscribe(src *UpTrack) (*DownTrack, error) {
	d := newDownTrack(p, src.info.Kind, src.info.Codec)
	p.mu.Lock()
	if p.left {
		p.mu.Unlock()
		return nil, ErrClosed
	}
	p.downs[d] = struct{}{}
	p.mu.Unlock()
	if err := d.SetSource(src); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

func (p *Participant) removeTrack(t *UpTrack) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, o := range p.tracks {
		if o == t {
			p.tracks = append(p.tracks[:i], p.tracks[i+1:]...)
			return
		}
	}
}

func (p *Participant) removeDown(d *DownTrack) {
	p.mu.Lock()
	delete(p.downs, d)
	p.mu.Unlock()
}

// Leave unpublishes the participant's tracks, ends its subscriptions and
// removes it from the conference. It is safe to call more than once.
func (p *Participant) Leave() {
	p.mu.Lock()
	if p.left {
		p.mu.Unlock()
		return
	}
	p.left = true
	tracks := append([]*UpTrack(nil), p.tracks...)
	downs := make([]*DownTrack, 0, len(p.downs))
	for d := range p.downs {
		downs = append(downs, d)
	}
	p.mu.Unlock()

	for _, d := range downs {
		d.Close()
	}
	for _, t := range tracks {
		t.Close()
	}
	p.conf.sfu.leave(p)
	p.log.Debug().Msg("participant left")
	p.conf.sfu.emit(ParticipantLeft{Conference: p.conf, Participant: p})
}
