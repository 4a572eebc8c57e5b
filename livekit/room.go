package livekit

import (
	"crypto/rand"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/livekit/protocol/livekit"

	"github.com/focus-sfu/focus/focus"
	"github.com/focus-sfu/focus/rtc"
)

// confPrefix is the namespace of LiveKit rooms in the core.
const confPrefix = "lk:"

// conferenceID is the core's key for a LiveKit room.
func conferenceID(room string) focus.ConferenceID { return focus.ConferenceID(confPrefix + room) }

// ConferenceID is the core's name for the LiveKit room: what
// focus.SFU.Alias takes to share the room with another front-end.
func ConferenceID(room string) focus.ConferenceID { return conferenceID(room) }

// room is a LiveKit room: the participants of one core conference, as
// LiveKit clients see them. It lives while it has participants.
type room struct {
	name    string
	sid     string
	conf    focus.ConferenceID
	created time.Time
	// trailer marks frames a server injects into an encrypted track, so
	// that clients do not try to decrypt them. The focus never injects
	// any; clients expect a trailer all the same.
	trailer []byte

	// participants is guarded by Server.mu.
	participants map[string]*participant // by sid
	gone         bool                    // removed from Server.rooms

	dmu  sync.Mutex
	left []departure // recently departed participants, oldest first

	// bmu orders what the room's participants are told: a participant's
	// join response and every update after it are queued under it, so
	// each client sees updates in the order they happened.
	bmu sync.Mutex
}

func newRoom(name string, now time.Time) *room {
	r := &room{
		name:         name,
		sid:          newSID("RM_"),
		conf:         conferenceID(name),
		created:      now,
		trailer:      make([]byte, 32),
		participants: make(map[string]*participant),
	}
	_, _ = rand.Read(r.trailer) // crypto/rand.Read never fails on supported platforms
	return r
}

// proto describes the room; n is how many participants it has.
func (r *room) proto(n int) *livekit.Room {
	return &livekit.Room{
		Sid:             r.sid,
		Name:            r.name,
		EmptyTimeout:    0,
		CreationTime:    r.created.Unix(),
		CreationTimeMs:  r.created.UnixMilli(),
		EnabledCodecs:   enabledCodecs(),
		NumParticipants: uint32(n),
	}
}

// enabledCodecs lists the codecs the focus forwards, each MIME type once.
func enabledCodecs() []*livekit.Codec {
	var out []*livekit.Codec
	seen := map[string]bool{}
	for _, c := range rtc.Codecs {
		m := strings.ToLower(c.MimeType)
		if seen[m] {
			continue
		}
		seen[m] = true
		out = append(out, &livekit.Codec{Mime: c.MimeType})
	}
	return out
}

// members returns the room's participants, oldest first.
func (s *Server) members(r *room) []*participant {
	s.mu.Lock()
	out := make([]*participant, 0, len(r.participants))
	for _, p := range r.participants {
		out = append(out, p)
	}
	s.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].joinedAt.Before(out[j].joinedAt) })
	return out
}

// member returns the participant sid of room r, or nil.
func (s *Server) member(r *room, sid string) *participant {
	s.mu.Lock()
	defer s.mu.Unlock()
	return r.participants[sid]
}

// others returns the infos of r's participants other than p that p may
// see: not hidden, not leaving; then the foreign participants of p's
// conference (foreign.go).
func (s *Server) others(r *room, p *participant) []*livekit.ParticipantInfo {
	var out []*livekit.ParticipantInfo
	for _, o := range s.members(r) {
		if o == p || o.hidden() {
			continue
		}
		if info := o.info(); info.State != livekit.ParticipantInfo_DISCONNECTED {
			out = append(out, info)
		}
	}
	return append(out, s.foreignInfos(p.part.Conference())...)
}

// broadcast tells r's participants about p: everyone else, and p itself
// when self is set (its own view of its tracks and metadata).
func (s *Server) broadcast(r *room, p *participant, self bool) {
	r.bmu.Lock()
	defer r.bmu.Unlock()
	info := p.info()
	res := updateResponse(info)
	for _, o := range s.members(r) {
		if o == p {
			if self {
				o.send(res)
			}
			continue
		}
		if !p.hidden() {
			o.send(res)
		}
	}
}

// broadcastLeft tells r's participants that p has gone, unless a newer
// session of the same identity has taken its place.
func (s *Server) broadcastLeft(r *room, p *participant, info *livekit.ParticipantInfo) {
	if p.hidden() {
		return
	}
	r.bmu.Lock()
	defer r.bmu.Unlock()
	members := s.members(r)
	for _, o := range members {
		if o.identity == p.identity && o != p {
			return
		}
	}
	res := updateResponse(info)
	for _, o := range members {
		if o != p {
			o.send(res)
		}
	}
}

// departure is a participant that left, kept for clients that resume:
// they may have missed its leaving.
type departure struct {
	info *livekit.ParticipantInfo
	at   time.Time
}

// maxDepartures bounds the departures a room keeps.
const maxDepartures = 64

// departed records that a participant left, as info says.
func (r *room) departed(info *livekit.ParticipantInfo) {
	r.dmu.Lock()
	defer r.dmu.Unlock()
	if len(r.left) >= maxDepartures {
		r.left = append(r.left[:0], r.left[1:]...)
	}
	r.left = append(r.left, departure{info: info, at: time.Now()})
}

// departedSince returns the infos of participants that left after t and
// whose identity no current member has (a client keys participants by
// identity, so telling it of a departed session would remove the new one).
func (r *room) departedSince(t time.Time, members []*participant) []*livekit.ParticipantInfo {
	present := make(map[string]bool, len(members))
	for _, m := range members {
		present[m.identity] = true
	}
	r.dmu.Lock()
	defer r.dmu.Unlock()
	var out []*livekit.ParticipantInfo
	for _, d := range r.left {
		if d.at.After(t) && !present[d.info.Identity] {
			out = append(out, d.info)
		}
	}
	return out
}

func updateResponse(infos ...*livekit.ParticipantInfo) *livekit.SignalResponse {
	return &livekit.SignalResponse{Message: &livekit.SignalResponse_Update{
		Update: &livekit.ParticipantUpdate{Participants: infos},
	}}
}

// sidAlphabet spells the random part of room, participant and track sids.
const sidAlphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// newSID returns prefix and 12 random base-62 characters, the shape of
// LiveKit's sids (PA_…, TR_…, RM_…).
func newSID(prefix string) string {
	var b [12]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	out := make([]byte, 0, len(prefix)+len(b))
	out = append(out, prefix...)
	for _, c := range b {
		out = append(out, sidAlphabet[int(c)%len(sidAlphabet)])
	}
	return string(out)
}
