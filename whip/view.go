package whip

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/focus-sfu/focus/focus"
	"github.com/focus-sfu/focus/rtc"
)

// sourceWait bounds how long a new viewer waits for the publisher it
// will watch to have all the tracks its offer announced: a publisher that
// has just connected has no tracks until its first packets arrive.
const sourceWait = 5 * time.Second

// waitSources chooses what a new viewer of room, whose offer has
// sections media sections, watches: the pinned publisher, or else the
// publisher that started last, waiting up to sourceWait for its tracks.
// Should that publisher have none by then, the newest publisher with
// tracks is chosen.
func (s *Server) waitSources(ctx context.Context, room string, pinned focus.ParticipantID, sections int) []*focus.UpTrack {
	deadline := time.Now().Add(sourceWait)
	for {
		srcs, complete := s.pickSources(room, pinned, sections)
		if complete || time.Now().After(deadline) || ctx.Err() != nil {
			if len(srcs) == 0 && pinned == "" {
				srcs = s.newestPublication(room)
			}
			return srcs
		}
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// trackSettle is how long after a participant's newest track a
// participant that is not a WHIP session counts as having all its
// tracks, whatever their kinds: an audio-only publisher keeps a new
// viewer waiting at most this long.
const trackSettle = 2 * time.Second

// pickSources returns the tracks of the pinned or newest publisher, and
// whether that publisher has all of its tracks yet. A WHIP publisher
// session is complete once it has as many tracks as its offer announced.
// Any other publisher of the room (one of another front-end in a shared
// room, or a cascade proxy of one on another focus) is a participant
// whose offer this front-end never saw, so it counts as complete once it
// has a track of as many kinds as the viewer's offer has sections (at
// most two, audio and video), or once its newest track is trackSettle
// old. A cascade proxy publishes its origin's tracks as the origin's
// gossip names them, one by one while the origin's publisher is
// starting; a local publisher's tracks appear as their first packets
// arrive. A viewer answered in between would never get the others (WHEP
// cannot renegotiate).
func (s *Server) pickSources(room string, pinned focus.ParticipantID, sections int) ([]*focus.UpTrack, bool) {
	sessions := s.roomSessions(room)
	for i := len(sessions) - 1; i >= 0; i-- {
		sess := sessions[i]
		if sess.kind != publisher || pinned != "" && focus.ParticipantID(sess.id) != pinned {
			continue
		}
		tracks := sess.part.Tracks()
		return onePerKind(tracks), len(tracks) >= sess.expected
	}
	c := s.opts.SFU.Conference(ConferenceID(room))
	if c == nil {
		return nil, true
	}
	var p *focus.Participant
	if pinned != "" {
		p = c.Participant(pinned)
	} else {
		p = newestPublisher(c)
	}
	if p == nil {
		return nil, true
	}
	tracks := p.Tracks()
	srcs := onePerKind(tracks)
	settled := len(tracks) > 0 && time.Since(tracks[len(tracks)-1].Started()) >= trackSettle
	return srcs, len(srcs) >= min(sections, 2) || settled
}

// newestPublication returns the tracks of the publisher whose track was
// published last.
func (s *Server) newestPublication(room string) []*focus.UpTrack {
	c := s.opts.SFU.Conference(ConferenceID(room))
	if c == nil {
		return nil
	}
	if p := newestPublisher(c); p != nil {
		return onePerKind(p.Tracks())
	}
	return nil
}

// newestPublisher returns the participant of c whose track was published
// last, or nil.
func newestPublisher(c *focus.Conference) *focus.Participant {
	tracks := c.Tracks()
	if len(tracks) == 0 {
		return nil
	}
	return tracks[len(tracks)-1].Owner()
}

func onePerKind(tracks []*focus.UpTrack) []*focus.UpTrack {
	var out []*focus.UpTrack
	seen := map[focus.Kind]bool{}
	for _, t := range tracks {
		if !seen[t.Kind()] {
			seen[t.Kind()] = true
			out = append(out, t)
		}
	}
	return out
}

// maxViewSize bounds the width and height a viewer may ask for: larger
// than any encoder produces, small enough to be plainly a size.
const maxViewSize = 16384

// viewSize reads a viewer's ?width=W&height=H: the size it shows the
// video at, so that focus sends the smallest simulcast layer at least
// that large rather than the top one. Either may be left out (or 0) to
// leave that dimension free; neither means no cap.
func viewSize(q url.Values) (focus.Size, *httpError) {
	var size focus.Size
	for _, p := range []struct {
		name string
		dst  *uint32
	}{{"width", &size.Width}, {"height", &size.Height}} {
		vals, ok := q[p.name]
		if !ok {
			continue
		}
		if len(vals) != 1 {
			return focus.Size{}, reject(http.StatusBadRequest, "query parameter %s is given %d times; give it once", p.name, len(vals))
		}
		// ParseUint takes no sign, so "-1" and "+1" are refused with the rest.
		n, err := strconv.ParseUint(vals[0], 10, 32)
		if err != nil || n > maxViewSize {
			return focus.Size{}, reject(http.StatusBadRequest, "query parameter %s=%q is not a whole number of pixels from 0 to %d", p.name, vals[0], maxViewSize)
		}
		*p.dst = uint32(n)
	}
	return size, nil
}

// subscribe adds a down track per source whose codec the viewer offers.
// size caps the video layer (see viewSize); it stays with the down track
// when the viewer moves to another source.
func (sess *session) subscribe(offer string, sources []*focus.UpTrack, size focus.Size) *httpError {
	offered := rtc.OfferedCodecs(offer)
	var missing []string
	for _, src := range sources {
		if !offered[strings.ToLower(src.Codec().MimeType)] {
			missing = append(missing, src.Codec().MimeType)
			continue
		}
		d, err := sess.part.Subscribe(src)
		if err != nil {
			return reject(http.StatusServiceUnavailable, "subscribe: %v", err)
		}
		if d.Kind() == focus.KindVideo && size != (focus.Size{}) {
			d.SetMaxSize(size.Width, size.Height)
		}
		lt := rtc.NewLocalTrack(d, d.Kind().String(), "focus-"+sess.room, sess.pc, sess.log)
		if _, err := sess.pc.AddTrack(lt); err != nil {
			d.Close()
			return reject(http.StatusBadRequest, "offer has no %s section to send on: %v", d.Kind(), err)
		}
		sess.mu.Lock()
		sess.locals = append(sess.locals, lt)
		sess.mu.Unlock()
	}
	if len(sess.locals) == 0 {
		return reject(http.StatusUnprocessableEntity, "offer has none of the published codecs (%s)", strings.Join(missing, ", "))
	}
	return nil
}

// onEvent keeps viewers watching: when the track a viewer watched ends,
// its down track moves to the newest live track of the same kind and
// codec in the room, with no renegotiation; an idle down track takes up
// a newly published track.
func (s *Server) onEvent(ev focus.Event) {
	switch ev := ev.(type) {
	case focus.TrackUnpublished:
		for _, sess := range s.conferenceSessions(ev.Conference) {
			for _, d := range sess.idleDownTracks(ev.Track.Kind()) {
				if src := newestSource(ev.Conference, d, sess.pinned); src != nil {
					s.retarget(sess, d, src)
				}
			}
		}
	case focus.TrackPublished:
		for _, sess := range s.conferenceSessions(ev.Conference) {
			if sess.pinned != "" && sess.pinned != ev.Participant.ID() {
				continue
			}
			for _, d := range sess.idleDownTracks(ev.Track.Kind()) {
				if sameCodec(d, ev.Track) {
					s.retarget(sess, d, ev.Track)
				}
			}
		}
	}
}

// conferenceSessions returns the sessions of every WHIP room that names
// the conference c: its own name, or an alias when the conference is
// shared with another front-end.
func (s *Server) conferenceSessions(c *focus.Conference) []*session {
	var out []*session
	for _, room := range c.NamesIn(confPrefix) {
		out = append(out, s.roomSessions(room)...)
	}
	return out
}

func (s *Server) retarget(sess *session, d *focus.DownTrack, src *focus.UpTrack) {
	if err := d.SetSource(src); err != nil {
		sess.log.Debug().Err(err).Msg("move viewer to new source")
		return
	}
	sess.log.Info().Str("track", string(src.ID())).Str("publisher", string(src.Owner().ID())).Msg("viewer follows new source")
}

// idleDownTracks returns a viewer's down tracks of kind that have no
// source.
func (sess *session) idleDownTracks(kind focus.Kind) []*focus.DownTrack {
	if sess.kind != viewer {
		return nil
	}
	sess.mu.Lock()
	defer sess.mu.Unlock()
	var out []*focus.DownTrack
	for _, lt := range sess.locals {
		if d := lt.DownTrack(); d.Kind() == kind && d.Source() == nil {
			out = append(out, d)
		}
	}
	return out
}

func newestSource(c *focus.Conference, d *focus.DownTrack, pinned focus.ParticipantID) *focus.UpTrack {
	tracks := c.Tracks()
	for i := len(tracks) - 1; i >= 0; i-- {
		t := tracks[i]
		if pinned != "" && t.Owner().ID() != pinned {
			continue
		}
		if sameCodec(d, t) {
			return t
		}
	}
	return nil
}

func sameCodec(d *focus.DownTrack, t *focus.UpTrack) bool {
	return d.Kind() == t.Kind() && strings.EqualFold(d.Codec().MimeType, t.Codec().MimeType)
}
