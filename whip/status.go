package whip

import (
	"crypto/subtle"
	"encoding/json"
	"net/http"
	"sort"
	"time"
)

// RoomStatus is one room in GET /api/rooms.
type RoomStatus struct {
	Name       string            `json:"name"`
	Publishers []PublisherStatus `json:"publishers"`
	Viewers    int               `json:"viewers"`
}

// PublisherStatus is one WHIP session.
type PublisherStatus struct {
	ID      string        `json:"id"`
	Started time.Time     `json:"started"`
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
		if s.opts.AdminToken != "" {
			tok, _ := bearer(r)
			if subtle.ConstantTimeCompare([]byte(tok), []byte(s.opts.AdminToken)) != 1 {
				w.Header().Set("WWW-Authenticate", `Bearer realm="focus-admin"`)
				http.Error(w, "admin token required", http.StatusUnauthorized)
				return
			}
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
		ps := PublisherStatus{ID: sess.id, Started: sess.created, Tracks: []TrackStatus{}}
		for _, t := range sess.part.Tracks() {
			st := t.Stats()
			ps.Tracks = append(ps.Tracks, TrackStatus{
				ID: string(t.ID()), Kind: t.Kind().String(), Codec: t.Codec().MimeType,
				Bitrate: st.Bitrate, Packets: st.Packets, Subscribers: t.Subscribers(),
			})
		}
		rs.Publishers = append(rs.Publishers, ps)
	}
	rooms := make([]RoomStatus, 0, len(byName))
	for _, rs := range byName {
		rooms = append(rooms, *rs)
	}
	sort.Slice(rooms, func(i, j int) bool { return rooms[i].Name < rooms[j].Name })
	return rooms
}
