package matrixclient

import (
	"encoding/json"
	"fmt"

	"github.com/pion/sdp/v3"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// The client writes and reads the wire format of docs/matrix.md ("Wire protocol")
// with its own types rather than the focus's (matrix/, metadata/): a test
// client that shared the server's structs would agree with the server's
// mistakes.

// To-device event types. mautrix registers m.call.* as room events only,
// so the to-device ones are built here.
var (
	TypeInvite       = event.Type{Type: "m.call.invite", Class: event.ToDeviceEventType}
	TypeAnswer       = event.Type{Type: "m.call.answer", Class: event.ToDeviceEventType}
	TypeCandidates   = event.Type{Type: "m.call.candidates", Class: event.ToDeviceEventType}
	TypeSelectAnswer = event.Type{Type: "m.call.select_answer", Class: event.ToDeviceEventType}
	TypeHangup       = event.Type{Type: "m.call.hangup", Class: event.ToDeviceEventType}
)

// Call membership state event types.
var (
	// TypeCallMember is the per-device format; its state key is
	// "_@user:hs_DEVICE_m.call".
	TypeCallMember = event.Type{Type: "org.matrix.msc3401.call.member", Class: event.StateEventType}
	// TypeLegacyCallMember is the MSC3401 format; its state key is the
	// user ID.
	TypeLegacyCallMember = event.Type{Type: "m.call.member", Class: event.StateEventType}
)

// Data-channel message types.
const (
	DCTrackSubscription = "m.call.track_subscription"
	DCNegotiate         = "m.call.negotiate"
	DCMetadataChanged   = "m.call.sdp_stream_metadata_changed"
	DCPing              = "m.call.ping"
	DCPong              = "m.call.pong"
	// The focus's own media-quality messages, focus → client
	// (docs/matrix.md, "Media quality"). They are recorded like any
	// message; a test reads them from Messages.
	DCActiveSpeakers    = "org.matrix.msc3898.call.active_speakers"
	DCSubscriptionState = "org.matrix.msc3898.call.subscription_state"
	DCPublishLayers     = "org.matrix.msc3898.call.publish_layers"
)

// DataChannelLabel is the label of the one data channel the client opens.
const DataChannelLabel = "datachannel"

// FocusType names an MSC3898 focus in call memberships.
const FocusType = "org.matrix.msc3898"

// Metadata keys in to-device content: the client writes the unstable one;
// the focus may answer with either.
const (
	metadataKey       = "org.matrix.msc3077.sdp_stream_metadata"
	metadataStableKey = "sdp_stream_metadata"
)

// callVersion is the VoIP version the client speaks.
const callVersion = "1"

// Purpose says what a stream carries (MSC3077).
type Purpose string

// Purposes.
const (
	PurposeUserMedia   Purpose = "m.usermedia"
	PurposeScreenShare Purpose = "m.screenshare"
)

// TrackMeta describes one track of a stream.
type TrackMeta struct {
	Kind   string `json:"kind,omitempty"`
	Width  int    `json:"width,omitempty"`
	Height int    `json:"height,omitempty"`
}

// StreamMeta describes one stream; the focus names its publisher.
type StreamMeta struct {
	UserID     id.UserID            `json:"user_id,omitempty"`
	DeviceID   id.DeviceID          `json:"device_id,omitempty"`
	Purpose    Purpose              `json:"purpose"`
	AudioMuted bool                 `json:"audio_muted"`
	VideoMuted bool                 `json:"video_muted"`
	Tracks     map[string]TrackMeta `json:"tracks,omitempty"`
}

// Metadata is sdp_stream_metadata: streams by stream ID.
type Metadata map[string]StreamMeta

// clone copies m deeply.
func (m Metadata) clone() Metadata {
	if m == nil {
		return nil
	}
	out := make(Metadata, len(m))
	for k, s := range m {
		tracks := make(map[string]TrackMeta, len(s.Tracks))
		for tk, t := range s.Tracks {
			tracks[tk] = t
		}
		s.Tracks = tracks
		out[k] = s
	}
	return out
}

// sessionDescription is an SDP with its type, as Matrix carries it.
type sessionDescription struct {
	Type string `json:"type"`
	SDP  string `json:"sdp"`
}

// callBase is in every to-device message of a call.
type callBase struct {
	CallID          string      `json:"call_id"`
	ConfID          string      `json:"conf_id"`
	PartyID         string      `json:"party_id"`
	DeviceID        id.DeviceID `json:"device_id"`
	SenderSessionID string      `json:"sender_session_id"`
	DestSessionID   string      `json:"dest_session_id"`
	Version         string      `json:"version"`
	Seq             int         `json:"seq"`
}

type inviteContent struct {
	callBase
	Lifetime int                `json:"lifetime"`
	Offer    sessionDescription `json:"offer"`
	Metadata Metadata           `json:"org.matrix.msc3077.sdp_stream_metadata"`
}

// wireCandidate is one ICE candidate; Candidate "" ends the candidates.
type wireCandidate struct {
	Candidate     string  `json:"candidate"`
	SDPMid        *string `json:"sdpMid,omitempty"`
	SDPMLineIndex *uint16 `json:"sdpMLineIndex,omitempty"`
}

type candidatesContent struct {
	callBase
	Candidates []wireCandidate `json:"candidates"`
}

type selectAnswerContent struct {
	callBase
	SelectedPartyID string `json:"selected_party_id"`
}

type hangupContent struct {
	callBase
	Reason string `json:"reason,omitempty"`
}

// incoming is any to-device message of a call from the focus. Seq is a
// pointer so that a missing one shows; Version is raw because senders
// write 1 and "1".
type incoming struct {
	CallID          string              `json:"call_id"`
	ConfID          string              `json:"conf_id"`
	PartyID         string              `json:"party_id"`
	DeviceID        id.DeviceID         `json:"device_id"`
	SenderSessionID string              `json:"sender_session_id"`
	DestSessionID   string              `json:"dest_session_id"`
	Version         json.RawMessage     `json:"version"`
	Seq             *int                `json:"seq"`
	Answer          *sessionDescription `json:"answer"`
	Candidates      []wireCandidate     `json:"candidates"`
	Reason          string              `json:"reason"`
	Metadata        Metadata            `json:"org.matrix.msc3077.sdp_stream_metadata"`
	StableMetadata  Metadata            `json:"sdp_stream_metadata"`
}

// metadata returns whichever metadata key the sender used, the unstable
// one first.
func (in *incoming) metadata() Metadata {
	if in.Metadata != nil {
		return in.Metadata
	}
	return in.StableMetadata
}

// dcMessage is the data-channel envelope.
type dcMessage struct {
	Type    string          `json:"type"`
	Content json.RawMessage `json:"content"`
}

// TrackRef names one track by its stream and track IDs (the msid).
type TrackRef struct {
	StreamID string `json:"stream_id"`
	TrackID  string `json:"track_id"`
}

func (r TrackRef) String() string { return r.StreamID + "/" + r.TrackID }

// subscription is one entry of a track_subscription's subscribe list.
type subscription struct {
	TrackRef
	Width  int `json:"width,omitempty"`
	Height int `json:"height,omitempty"`
}

type trackSubscriptionContent struct {
	Subscribe   []subscription `json:"subscribe,omitempty"`
	Unsubscribe []TrackRef     `json:"unsubscribe,omitempty"`
}

type negotiateContent struct {
	Description sessionDescription `json:"description"`
	Metadata    Metadata           `json:"sdp_stream_metadata"`
}

type metadataChangedContent struct {
	Metadata Metadata `json:"sdp_stream_metadata"`
}

// encodeDC builds a data-channel message.
func encodeDC(typ string, content any) ([]byte, error) {
	raw, err := json.Marshal(content)
	if err != nil {
		return nil, fmt.Errorf("matrixclient: encode %s: %w", typ, err)
	}
	return json.Marshal(dcMessage{Type: typ, Content: raw})
}

// mids lists the a=mid values of an SDP's media sections in order.
func mids(s string) ([]string, error) {
	var d sdp.SessionDescription
	if err := d.UnmarshalString(s); err != nil {
		return nil, fmt.Errorf("matrixclient: parse SDP: %w", err)
	}
	out := make([]string, 0, len(d.MediaDescriptions))
	for _, m := range d.MediaDescriptions {
		v, _ := m.Attribute(sdp.AttrKeyMID)
		out = append(out, v)
	}
	return out, nil
}
