package focus

import (
	"slices"
	"sort"
	"sync"
)

// Conference is a set of participants and the tracks they publish.
type Conference struct {
	sfu *SFU
	id  ConferenceID

	mu           sync.Mutex
	participants map[ParticipantID]*Participant
	tracks       []*UpTrack // in publish order
	speakers     []Speaker

	ctl conferenceControl // owned by the SFU's control loop
}

func newConference(s *SFU, id ConferenceID) *Conference {
	return &Conference{sfu: s, id: id, participants: make(map[ParticipantID]*Participant)}
}

// ID returns the conference's key.
func (c *Conference) ID() ConferenceID { return c.id }

// Participants returns the participants, ordered by ID.
func (c *Conference) Participants() []*Participant {
	out := c.appendParticipants(nil)
	sort.Slice(out, func(i, j int) bool { return out[i].info.ID < out[j].info.ID })
	return out
}

// appendParticipants appends the participants to out, in no order.
func (c *Conference) appendParticipants(out []*Participant) []*Participant {
	c.mu.Lock()
	defer c.mu.Unlock()
	out = slices.Grow(out, len(c.participants))
	for _, p := range c.participants {
		out = append(out, p)
	}
	return out
}

// Participant returns the participant id, or nil.
func (c *Conference) Participant(id ParticipantID) *Participant {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.participants[id]
}

// Tracks returns the published tracks, oldest first.
func (c *Conference) Tracks() []*UpTrack {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*UpTrack(nil), c.tracks...)
}

func (c *Conference) addTrack(t *UpTrack) {
	c.mu.Lock()
	c.tracks = append(c.tracks, t)
	c.mu.Unlock()
}

func (c *Conference) removeTrack(t *UpTrack) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, o := range c.tracks {
		if o == t {
			c.tracks = append(c.tracks[:i], c.tracks[i+1:]...)
			return
		}
	}
}

// localParticipantsLocked counts the participants connected here, not
// the cascade's proxies and relays. c.mu is held.
func (c *Conference) localParticipantsLocked() int {
	n := 0
	for _, p := range c.participants {
		if p.info.Origin == "" {
			n++
		}
	}
	return n
}
