package livekit

import (
	"strings"

	"github.com/livekit/protocol/livekit"

	"github.com/focus-sfu/focus/focus"
)

// Foreign participants are the participants of a shared conference (see
// focus.SFU.Alias) that are not LiveKit sessions: a WHIP publisher whose
// room is an alias of a LiveKit room, later Matrix members. LiveKit
// clients see them as participants like any other, described from the
// core alone, and subscribe to their tracks on the same path as to a
// LiveKit publisher's. WHEP viewers (focus.RoleViewer) are not shown.
//
// A LiveKit session of another LiveKit room sharing the conference is
// not shown either: sharing is between front-ends, not between rooms.

// participantSID is the LiveKit sid of a core participant: a LiveKit
// session's own sid, or "PA_" and the core ID.
func participantSID(p *focus.Participant) string {
	if id := string(p.ID()); strings.HasPrefix(id, "PA_") {
		return id
	}
	return "PA_" + string(p.ID())
}

// trackSID is the LiveKit sid of a core track: the core names tracks
// "TR_…" unless a front-end chose an ID.
func trackSID(up *focus.UpTrack) string {
	if id := string(up.ID()); strings.HasPrefix(id, "TR_") {
		return id
	}
	return "TR_" + string(up.ID())
}

// setSession records whether id is a LiveKit session of this server.
func (s *Server) setSession(id focus.ParticipantID, on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if on {
		s.sessions[id] = true
	} else {
		delete(s.sessions, id)
	}
}

// isSession reports whether the core participant is a LiveKit session of
// this server, in any room.
func (s *Server) isSession(p *focus.Participant) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sessions[p.ID()]
}

// isForeign reports whether LiveKit clients are shown p as a foreign
// participant.
func (s *Server) isForeign(p *focus.Participant) bool {
	return p.Info().Role != focus.RoleViewer && !s.isSession(p)
}

// visible reports whether r's clients see the tracks of owner: a member
// of r, or a foreign participant.
func (s *Server) visible(r *room, owner *focus.Participant) bool {
	return s.member(r, string(owner.ID())) != nil || s.isForeign(owner)
}

// foreigners returns the foreign participants of conf, by core ID.
func (s *Server) foreigners(conf *focus.Conference) []*focus.Participant {
	var out []*focus.Participant
	for _, p := range conf.Participants() {
		if s.isForeign(p) {
			out = append(out, p)
		}
	}
	return out
}

// foreignVersion bumps and returns the info version of a foreign
// participant, so that clients take each update as newer.
func (s *Server) foreignVersion(p *focus.Participant, gone bool) uint32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.versions[p.ID()] + 1
	if gone {
		delete(s.versions, p.ID())
	} else {
		s.versions[p.ID()] = v
	}
	return v
}

// foreignInfo describes a foreign participant as LiveKit clients see it:
// its identity made unique with its sid (a client keys participants by
// identity) unless it is a call member on another focus, ingress kind for
// an ingress, and its tracks, unmuted.
func foreignInfo(p *focus.Participant, version uint32, state livekit.ParticipantInfo_State) *livekit.ParticipantInfo {
	pi := p.Info()
	sid := participantSID(p)
	suffix := strings.TrimPrefix(sid, "PA_")
	if len(suffix) > 12 {
		suffix = suffix[:12]
	}
	name := pi.Identity
	if name == "" {
		name = "participant"
	}
	identity := name + "-" + suffix
	if pi.Origin != "" && pi.Role == focus.RoleMember && pi.Identity != "" {
		// A call member on another focus, shown here by the cascade: its
		// identity is already unique in the call (a LiveKit identity such
		// as Element Call's @user:server:DEVICE), and clients map tiles
		// to members by it.
		identity = pi.Identity
	}
	info := &livekit.ParticipantInfo{
		Sid:        sid,
		Identity:   identity,
		Name:       name,
		State:      state,
		JoinedAt:   p.Joined().Unix(),
		JoinedAtMs: p.Joined().UnixMilli(),
		Version:    version,
		Permission: &livekit.ParticipantPermission{CanPublish: true, CanSubscribe: pi.Role == focus.RoleMember},
	}
	if pi.Role == focus.RoleIngress {
		info.Kind = livekit.ParticipantInfo_INGRESS
	}
	if state == livekit.ParticipantInfo_DISCONNECTED {
		return info
	}
	for _, up := range p.Tracks() {
		if up.Closed() {
			continue
		}
		info.Tracks = append(info.Tracks, foreignTrackInfo(up))
	}
	info.IsPublisher = len(info.Tracks) > 0
	return info
}

// foreignTrackInfo describes a foreign participant's track.
func foreignTrackInfo(up *focus.UpTrack) *livekit.TrackInfo {
	ti := up.Info()
	info := &livekit.TrackInfo{
		Sid:       trackSID(up),
		Name:      up.Kind().String(),
		MimeType:  ti.Codec.MimeType,
		Stream:    ti.StreamID,
		Simulcast: len(ti.Layers) > 1,
	}
	switch up.Kind() {
	case focus.KindAudio:
		info.Type = livekit.TrackType_AUDIO
		info.Source = livekit.TrackSource_MICROPHONE
	case focus.KindVideo:
		info.Type = livekit.TrackType_VIDEO
		info.Source = livekit.TrackSource_CAMERA
	}
	switch ti.Source {
	case focus.SourceScreenShare:
		info.Source = livekit.TrackSource_SCREEN_SHARE
	case focus.SourceScreenShareAudio:
		info.Source = livekit.TrackSource_SCREEN_SHARE_AUDIO
	}
	if info.Simulcast {
		for i, rid := range ti.Layers {
			info.Layers = append(info.Layers, &livekit.VideoLayer{Quality: layerQuality(ti.Layers, i), Rid: rid})
		}
	}
	return info
}

// announceForeign tells r's clients how p is now, or that it has gone.
func (s *Server) announceForeign(r *room, p *focus.Participant, gone bool) {
	state := livekit.ParticipantInfo_ACTIVE
	if gone {
		state = livekit.ParticipantInfo_DISCONNECTED
	}
	info := foreignInfo(p, s.foreignVersion(p, gone), state)
	if gone {
		r.departed(info)
	}
	r.bmu.Lock()
	defer r.bmu.Unlock()
	res := updateResponse(info)
	for _, o := range s.members(r) {
		o.send(res)
	}
}

// foreignInfos describes the foreign participants of conf as they are.
func (s *Server) foreignInfos(conf *focus.Conference) []*livekit.ParticipantInfo {
	var out []*livekit.ParticipantInfo
	for _, p := range s.foreigners(conf) {
		s.mu.Lock()
		v := s.versions[p.ID()]
		s.mu.Unlock()
		out = append(out, foreignInfo(p, v, livekit.ParticipantInfo_ACTIVE))
	}
	return out
}
