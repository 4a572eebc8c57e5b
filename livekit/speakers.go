package livekit

import (
	"maps"
	"slices"

	"github.com/livekit/protocol/livekit"

	"github.com/focus-sfu/focus/focus"
)

// Active speakers: the core ranks a conference's audio tracks by level
// and raises SpeakersChanged when the order changes. LiveKit clients
// apply speakers_changed as a list of changes: an entry with active set
// makes that participant a speaker at the given level, one without it
// removes it, and participants not named keep their state. The client
// sorts its speakers by level. So each update names every current
// speaker (their levels give the order) and those who stopped.

// speakerInfos turns the core's speakers into what a client of room r
// may see: one entry per participant (its loudest track), for members of
// r that are not hidden (the client itself always) and foreign
// participants. Levels are clamped to 0..1.
func (p *participant) speakerInfos(list []focus.Speaker) []*livekit.SpeakerInfo {
	var out []*livekit.SpeakerInfo
	seen := make(map[string]bool, len(list))
	for _, sp := range list {
		if sp.Participant == nil {
			continue
		}
		sid := participantSID(sp.Participant)
		if seen[sid] {
			continue
		}
		if sp.Participant != p.part {
			if m := p.s.member(p.room, string(sp.Participant.ID())); m != nil {
				if m.hidden() {
					continue
				}
			} else if !p.s.isForeign(sp.Participant) {
				continue
			}
		}
		seen[sid] = true
		out = append(out, &livekit.SpeakerInfo{Sid: sid, Level: float32(min(max(sp.Level, 0), 1)), Active: true})
	}
	return out
}

// speakerUpdates is what a client that was last told the speakers in
// told needs to hear to see current: every current speaker, then
// everyone in told who is no longer one (level 0, not active).
func speakerUpdates(current []*livekit.SpeakerInfo, told map[string]bool) []*livekit.SpeakerInfo {
	out := append([]*livekit.SpeakerInfo(nil), current...)
	now := make(map[string]bool, len(current))
	for _, s := range current {
		now[s.Sid] = true
	}
	for _, sid := range slices.Sorted(maps.Keys(told)) {
		if !now[sid] {
			out = append(out, &livekit.SpeakerInfo{Sid: sid})
		}
	}
	return out
}

// speakersChanged tells the client the conference's speakers changed.
// It runs on the participant's goroutine.
func (p *participant) speakersChanged(list []focus.Speaker) {
	p.tellSpeakers(p.speakerInfos(list), p.speaking)
}

// resendSpeakers brings a resumed client up to date: updates sent while
// it was away went nowhere, so everyone it may know of who is not
// speaking is named as not speaking.
func (p *participant) resendSpeakers() {
	told := maps.Clone(p.speaking)
	if told == nil {
		told = map[string]bool{}
	}
	for _, o := range p.s.members(p.room) {
		if !o.hidden() {
			told[o.sid] = true
		}
	}
	for _, f := range p.s.foreigners(p.part.Conference()) {
		told[participantSID(f)] = true
	}
	p.tellSpeakers(p.speakerInfos(p.part.Conference().Speakers()), told)
}

// tellSpeakers sends the client the changes from told to current, and
// remembers current as what it was told.
func (p *participant) tellSpeakers(current []*livekit.SpeakerInfo, told map[string]bool) {
	updates := speakerUpdates(current, told)
	p.speaking = make(map[string]bool, len(current))
	for _, s := range current {
		p.speaking[s.Sid] = true
	}
	if len(updates) > 0 {
		p.send(speakersResponse(updates))
	}
}

func speakersResponse(updates []*livekit.SpeakerInfo) *livekit.SignalResponse {
	return &livekit.SignalResponse{Message: &livekit.SignalResponse_SpeakersChanged{SpeakersChanged: &livekit.SpeakersChanged{
		Speakers: updates,
	}}}
}
