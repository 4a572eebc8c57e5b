package whip

import (
	"encoding/json"
	"net/http"
	"slices"
	"sort"
	"time"

	"github.com/focus-sfu/focus/focus"
	"github.com/focus-sfu/focus/internal/httpauth"
)

// RoomStatus is one room in GET /api/rooms.
type RoomStatus struct {
	Name       string            `json:"name"`
	Publishers []PublisherStatus `json:"publishers"`
	Viewers    int               `json:"viewers"`
}

// PublisherStatus is one WHIP session, or another publisher in the
// room's conference: one of another front-end in a shared room, or one
// on another focus (Origin) that the cascade shows here.
type PublisherStatus struct {
	ID      string        `json:"id"`
	Started time.Time     `json:"started"`
	Origin  string        `json:"origin,omitempty"`
	Tracks  []TrackStatus `json:"tracks"`
}

// TrackStatus is one published track.
type TrackStatus struct {
	ID          string `json:"id"`
	Kind        string `json:"kind"`
	Codec       string `json:"codec"`
	Bitrate     uint64 `json:"bitrate"`
	Packets     uint64 `json:"packets"`
	Subscribers int    `json:"subscribers"`
}

// StatusHandler serves GET /api/rooms.
func (s *Server) StatusHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.cors(w, r)
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		if !httpauth.Admitted(r, s.opts.AdminToken) {
			httpauth.Refuse(w)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_ = json.NewEncoder(w).Encode(struct {
			Rooms []RoomStatus `json:"rooms"`
		}{s.Rooms()})
	})
}

// Rooms reports every room with a session.
func (s *Server) Rooms() []RoomStatus {
	s.mu.Lock()
	all := make([]*session, 0, len(s.sessions))
	for _, sess := range s.sessions {
		all = append(all, sess)
	}
	s.mu.Unlock()
	sort.Slice(all, func(i, j int) bool { return all[i].created.Before(all[j].created) })

	byName := map[string]*RoomStatus{}
	for _, sess := range all {
		rs := byName[sess.room]
		if rs == nil {
			rs = &RoomStatus{Name: sess.room, Publishers: []PublisherStatus{}}
			byName[sess.room] = rs
		}
		if sess.kind == viewer {
			rs.Viewers++
			continue
		}
		rs.Publishers = append(rs.Publishers, publisherStatus(sess.part, sess.created))
	}
	rooms := make([]RoomStatus, 0, len(byName))
	for _, rs := range byName {
		rs.Publishers = append(rs.Publishers, s.otherPublishers(rs.Name, all)...)
		rooms = append(rooms, *rs)
	}
	sort.Slice(rooms, func(i, j int) bool { return rooms[i].Name < rooms[j].Name })
	return rooms
}

func publisherStatus(p *focus.Participant, started time.Time) PublisherStatus {
	ps := PublisherStatus{ID: string(p.ID()), Started: started, Origin: p.Info().Origin, Tracks: []TrackStatus{}}
	for _, t := range p.Tracks() {
		st := t.Stats()
		ps.Tracks = append(ps.Tracks, TrackStatus{
			ID: string(t.ID()), Kind: t.Kind().String(), Codec: t.Codec().MimeType,
			Bitrate: st.Bitrate, Packets: st.Packets, Subscribers: t.Subscribers(),
		})
	}
	return ps
}

// otherPublishers are the participants with tracks in room's conference
// that are not WHIP sessions, oldest first.
func (s *Server) otherPublishers(room string, sessions []*session) []PublisherStatus {
	c := s.opts.SFU.Conference(ConferenceID(room))
	if c == nil {
		return nil
	}
	var out []PublisherStatus
	for _, p := range c.Participants() {
		if len(p.Tracks()) == 0 || slices.ContainsFunc(sessions, func(sess *session) bool { return sess.part == p }) {
			continue
		}
		out = append(out, publisherStatus(p, p.Joined()))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Started.Before(out[j].Started) })
	return out
}
