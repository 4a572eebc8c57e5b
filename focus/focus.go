// Package focus is the SFU core: conferences, participants, published
// tracks, subscriptions and the forwarding path between them.
//
// The core knows no signalling protocol. Front-ends (WHIP, MSC3898,
// LiveKit, cascade) own the PeerConnections, hand the core the packets
// they read, and bind the core's down tracks to their senders. Everything
// the front-ends need to react to comes out of the core as typed events.
//
// The nouns:
//
//	SFU          the registry of conferences; the source of events.
//	Conference   a set of participants and the tracks they publish.
//	Participant  one remote endpoint, with its identity.
//	UpTrack      one published track and its simulcast layers. Packets
//	             enter the core here (HandleRTP) and fan out from here.
//	DownTrack    one track sent to one subscriber: the selected source,
//	             and the subscriber's own SSRC, sequence and timestamp space.
//
// Per packet, the media plane reads an immutable subscriber list through
// an atomic pointer and takes no contended lock; the control plane
// (join, publish, subscribe, leave) takes the conference lock.
package focus

import (
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

// ConferenceID names a conference. It is opaque to the core; each
// front-end uses its own namespace ("whip:demo", "m:!room:hs/callid",
// "lk:room"). SFU.Alias gives a conference a second name, so that two
// front-ends share it; front-ends find their own name with
// Conference.Names or Conference.Has, never by the ID alone.
type ConferenceID string

// ParticipantID identifies a participant within the SFU.
type ParticipantID string

// TrackID identifies a published track within the SFU.
type TrackID string

// Kind is the media kind of a track.
type Kind uint8

// Track kinds.
const (
	KindAudio Kind = iota + 1
	KindVideo
)

func (k Kind) String() string {
	switch k {
	case KindAudio:
		return "audio"
	case KindVideo:
		return "video"
	}
	return "unknown"
}

// Source says what a track carries, independent of any signalling
// protocol's vocabulary.
type Source uint8

// Track sources.
const (
	SourceUnknown Source = iota
	SourceCamera
	SourceMicrophone
	SourceScreenShare
	SourceScreenShareAudio
)

func (s Source) String() string {
	switch s {
	case SourceCamera:
		return "camera"
	case SourceMicrophone:
		return "microphone"
	case SourceScreenShare:
		return "screen_share"
	case SourceScreenShareAudio:
		return "screen_share_audio"
	}
	return "unknown"
}

// Codec describes the codec of a published track.
type Codec struct {
	MimeType  string // "video/VP8", "audio/opus", ...
	ClockRate uint32
	Channels  uint16
	Fmtp      string
}

// HeaderExtension is one negotiated RTP header extension.
type HeaderExtension struct {
	ID  uint8
	URI string
}

// TrackInfo describes a track a participant publishes.
type TrackInfo struct {
	ID       TrackID // generated when empty
	StreamID string  // the media stream (msid) the track belongs to
	Kind     Kind
	Source   Source
	Codec    Codec
	// Extensions are the header extensions negotiated with the publisher,
	// with the publisher's IDs.
	Extensions []HeaderExtension
	// Layers are the simulcast RIDs, lowest quality first. Empty means a
	// single layer.
	Layers []string
}

// Role says what a participant does, in words every front-end can map to
// its own: a front-end that shows the participants of a shared
// conference (see SFU.Alias) shows those of other front-ends by it.
type Role uint8

// Participant roles.
const (
	// RoleMember publishes and subscribes interactively: a call member.
	RoleMember Role = iota
	// RoleIngress only publishes, from a non-interactive source such as
	// a broadcast encoder (a WHIP publisher).
	RoleIngress
	// RoleViewer only receives (a WHEP viewer); other front-ends need
	// not show it.
	RoleViewer
)

func (r Role) String() string {
	switch r {
	case RoleMember:
		return "member"
	case RoleIngress:
		return "ingress"
	case RoleViewer:
		return "viewer"
	}
	return "unknown"
}

// ParticipantInfo describes who a participant is. The front-end fills it.
type ParticipantInfo struct {
	ID       ParticipantID // generated when empty
	Identity string        // a human-meaningful name: user ID, "whip", ...
	Role     Role
	Remote   string // remote address, for logs
	// Origin names the focus a participant is connected to when it is
	// a proxy for a participant of another focus (a cascade trunk feeds
	// its tracks); empty for a participant connected here. A track whose
	// owner has an Origin is never relayed to a third focus.
	Origin string
}

// RTCPWriter sends RTCP on the connection a track belongs to. pion's
// PeerConnection satisfies it.
type RTCPWriter interface {
	WriteRTCP(pkts []rtcp.Packet) error
}

// RTPWriter writes one RTP packet to a subscriber. pion's
// TrackLocalWriter satisfies it. The header and payload are only valid
// for the duration of the call.
type RTPWriter interface {
	WriteRTP(header *rtp.Header, payload []byte) (int, error)
}
