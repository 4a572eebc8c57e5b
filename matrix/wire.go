package matrix

// The MSC3898 wire format: to-device call events between a client and the
// focus, and the JSON messages on the call's data channel. Field names
// follow matrix-js-sdk's SFU branch; docs/matrix.md ("Wire protocol") has
// an example of every message.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/focus-sfu/focus/metadata"
)

// Limits the parsers enforce on input from the network.
const (
	MaxMessageSize   = 64 << 10 // bytes of one to-device content or data-channel message
	MaxCandidates    = 256      // entries in one m.call.candidates
	MaxSubscriptions = 256      // entries in each list of one m.call.track_subscription
	MaxStreams       = 256      // streams in one metadata map, and tracks in one stream
	MaxLayers        = 16       // layers in one org.matrix.msc3898.call.publish_layers
)

// To-device event types. mautrix registers m.call.* only as room events,
// so these carry the to-device class explicitly.
var (
	TypeInvite       = event.Type{Type: "m.call.invite", Class: event.ToDeviceEventType}
	TypeAnswer       = event.Type{Type: "m.call.answer", Class: event.ToDeviceEventType}
	TypeCandidates   = event.Type{Type: "m.call.candidates", Class: event.ToDeviceEventType}
	TypeSelectAnswer = event.Type{Type: "m.call.select_answer", Class: event.ToDeviceEventType}
	TypeHangup       = event.Type{Type: "m.call.hangup", Class: event.ToDeviceEventType}
)

// Data-channel message types.
const (
	DCTrackSubscription = "m.call.track_subscription"
	DCNegotiate         = "m.call.negotiate"
	DCMetadataChanged   = "m.call.sdp_stream_metadata_changed"
	DCPing              = "m.call.ping"
	DCPong              = "m.call.pong"
	// Focus → client only, the focus's own: no MSC defines them yet, so
	// they carry MSC3898's unstable prefix.
	DCActiveSpeakers    = "org.matrix.msc3898.call.active_speakers"
	DCSubscriptionState = "org.matrix.msc3898.call.subscription_state"
	DCPublishLayers     = "org.matrix.msc3898.call.publish_layers"
)

// DataChannelLabel is the label of the data channel the client opens.
const DataChannelLabel = "datachannel"

// ProtocolVersion is the VoIP protocol version the focus speaks.
const ProtocolVersion Version = "1"

// The two keys stream metadata is found under. To-device messages are
// written with the unstable key (what matrix-js-sdk reads), data-channel
// messages with the stable one; both are read everywhere.
const (
	metadataKeyUnstable = "org.matrix.msc3077.sdp_stream_metadata"
	metadataKeyStable   = "sdp_stream_metadata"
)

// Errors from the parsers. Every error they return matches one of these
// with errors.Is.
var (
	ErrUnknownType = errors.New("unknown message type")
	ErrTooLarge    = errors.New("message too large")
	ErrInvalid     = errors.New("invalid message")
)

// FieldError says which field of which message is wrong, as in
// `m.call.invite: offer.sdp is empty`. It matches ErrInvalid.
type FieldError struct {
	Type    string // the message type
	Field   string // a path into the content: offer.sdp, candidates[3].candidate
	Problem string // "is empty", "is missing", "has 300 entries, more than 256"
}

func (e *FieldError) Error() string { return e.Type + ": " + e.Field + " " + e.Problem }

// Is makes a FieldError match ErrInvalid.
func (e *FieldError) Is(target error) bool { return target == ErrInvalid }

// Version is the `version` of a call event. Clients send it as a number
// or a string; it is held as its decimal text and always written as a
// string.
type Version string

// UnmarshalJSON accepts a JSON string or number.
func (v *Version) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case bytes.Equal(b, []byte("null")):
		*v = ""
		return nil
	case len(b) > 0 && b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return fmt.Errorf("version: %w", err)
		}
		*v = Version(s)
		return nil
	}
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		return errors.New("version is neither a number nor a string")
	}
	*v = Version(n.String())
	return nil
}

// MarshalJSON writes v as a JSON string.
func (v Version) MarshalJSON() ([]byte, error) { return json.Marshal(string(v)) }

// Int returns v as a number.
func (v Version) Int() (int, error) { return strconv.Atoi(string(v)) }

// CallBase holds the fields every to-device call event carries.
//
// Seq numbers the messages one side sends in one call, from 0. It is
// optional on input (nil when absent) but must be set on output:
// marshalling a message whose Seq is nil fails, because matrix-js-sdk
// holds back messages without one.
type CallBase struct {
	CallID          string      `json:"call_id"`
	ConfID          string      `json:"conf_id"`
	PartyID         string      `json:"party_id"`
	DeviceID        id.DeviceID `json:"device_id"`
	SenderSessionID string      `json:"sender_session_id"`
	DestSessionID   string      `json:"dest_session_id"`
	Version         Version     `json:"version"`
	Seq             *int        `json:"seq"`
}

// SetSeq sets Seq to n.
func (b *CallBase) SetSeq(n int) { b.Seq = &n }

func (b *CallBase) validate(typ string) error {
	switch {
	case b.CallID == "":
		return &FieldError{typ, "call_id", "is empty"}
	case b.PartyID == "":
		return &FieldError{typ, "party_id", "is empty"}
	case b.Seq != nil && *b.Seq < 0:
		return &FieldError{typ, "seq", "is negative"}
	}
	return nil
}

// SessionDescription is an SDP offer or answer.
type SessionDescription = event.CallData

func validateDescription(typ, field string, d SessionDescription, want ...event.CallDataType) error {
	ok := false
	for _, w := range want {
		ok = ok || d.Type == w
	}
	if !ok {
		if d.Type == "" {
			return &FieldError{typ, field + ".type", "is empty"}
		}
		return &FieldError{typ, field + ".type", fmt.Sprintf("is %q, want %q", d.Type, want)}
	}
	if d.SDP == "" {
		return &FieldError{typ, field + ".sdp", "is empty"}
	}
	return nil
}

// Invite is m.call.invite, client → focus: the client's offer and the
// metadata of the streams it publishes.
type Invite struct {
	CallBase
	Lifetime int                `json:"lifetime"`
	Offer    SessionDescription `json:"offer"`
	Metadata metadata.Metadata  `json:"-"` // see metadataKeyUnstable
}

// Answer is m.call.answer, focus → client: the focus's answer and the
// metadata of the streams the client may subscribe to.
type Answer struct {
	CallBase
	Answer   SessionDescription `json:"answer"`
	Metadata metadata.Metadata  `json:"-"`
}

// Candidate is one ICE candidate. Its pointer fields convert directly to
// and from pion's ICECandidateInit. An empty Candidate string marks the
// end of candidates.
type Candidate struct {
	Candidate        string  `json:"candidate"`
	SDPMid           *string `json:"sdpMid,omitempty"`
	SDPMLineIndex    *uint16 `json:"sdpMLineIndex,omitempty"`
	UsernameFragment *string `json:"usernameFragment,omitempty"`
}

// IsEnd reports whether c is the end-of-candidates marker.
func (c Candidate) IsEnd() bool { return c.Candidate == "" }

// Candidates is m.call.candidates, in both directions.
type Candidates struct {
	CallBase
	Candidates []Candidate `json:"candidates"`
}

// SelectAnswer is m.call.select_answer, client → focus.
type SelectAnswer struct {
	CallBase
	SelectedPartyID string `json:"selected_party_id"`
}

// Hangup is m.call.hangup, in both directions.
type Hangup struct {
	CallBase
	Reason event.CallHangupReason `json:"reason,omitempty"`
}

// EventType returns the to-device event type of the message.
func (Invite) EventType() event.Type       { return TypeInvite }
func (Answer) EventType() event.Type       { return TypeAnswer }
func (Candidates) EventType() event.Type   { return TypeCandidates }
func (SelectAnswer) EventType() event.Type { return TypeSelectAnswer }
func (Hangup) EventType() event.Type       { return TypeHangup }

// Validate checks the fields the focus needs.
func (m *Invite) Validate() error {
	t := TypeInvite.Type
	if err := m.CallBase.validate(t); err != nil {
		return err
	}
	if m.DeviceID == "" {
		return &FieldError{t, "device_id", "is empty"}
	}
	if m.Lifetime < 0 {
		return &FieldError{t, "lifetime", "is negative"}
	}
	if err := validateDescription(t, "offer", m.Offer, event.CallDataTypeOffer); err != nil {
		return err
	}
	return validateMetadata(t, metadataKeyUnstable, m.Metadata)
}

// Validate checks the fields a client needs.
func (m *Answer) Validate() error {
	t := TypeAnswer.Type
	if err := m.CallBase.validate(t); err != nil {
		return err
	}
	if err := validateDescription(t, "answer", m.Answer, event.CallDataTypeAnswer); err != nil {
		return err
	}
	return validateMetadata(t, metadataKeyUnstable, m.Metadata)
}

// Validate checks the fields and the number of candidates.
func (m *Candidates) Validate() error {
	t := TypeCandidates.Type
	if err := m.CallBase.validate(t); err != nil {
		return err
	}
	if m.Candidates == nil {
		return &FieldError{t, "candidates", "is missing"}
	}
	if n := len(m.Candidates); n > MaxCandidates {
		return &FieldError{t, "candidates", fmt.Sprintf("has %d entries, more than %d", n, MaxCandidates)}
	}
	return nil
}

// Validate checks the fields.
func (m *SelectAnswer) Validate() error {
	t := TypeSelectAnswer.Type
	if err := m.CallBase.validate(t); err != nil {
		return err
	}
	if m.SelectedPartyID == "" {
		return &FieldError{t, "selected_party_id", "is empty"}
	}
	return nil
}

// Validate checks the fields.
func (m *Hangup) Validate() error { return m.CallBase.validate(TypeHangup.Type) }

// metadataKeys decodes metadata from either key.
type metadataKeys struct {
	Unstable metadata.Metadata `json:"org.matrix.msc3077.sdp_stream_metadata"`
	Stable   metadata.Metadata `json:"sdp_stream_metadata"`
}

// pick prefers the unstable key (what matrix-js-sdk writes) and returns
// an empty map when neither is present.
func (k metadataKeys) pick() metadata.Metadata {
	switch {
	case k.Unstable != nil:
		return k.Unstable
	case k.Stable != nil:
		return k.Stable
	}
	return metadata.Metadata{}
}

// orEmpty writes a nil map as {}: clients iterate over the metadata.
func orEmpty(m metadata.Metadata) metadata.Metadata {
	if m == nil {
		return metadata.Metadata{}
	}
	return m
}

// marshalCall refuses to write a call event without seq.
func marshalCall(typ string, seq *int, v any) ([]byte, error) {
	if seq == nil {
		return nil, &FieldError{typ, "seq", "is not set"}
	}
	return json.Marshal(v)
}

// MarshalJSON writes the metadata under the unstable key.
func (m Invite) MarshalJSON() ([]byte, error) {
	type plain Invite
	return marshalCall(TypeInvite.Type, m.Seq, struct {
		plain
		Metadata metadata.Metadata `json:"org.matrix.msc3077.sdp_stream_metadata"`
	}{plain(m), orEmpty(m.Metadata)})
}

// UnmarshalJSON reads the metadata from either key.
func (m *Invite) UnmarshalJSON(b []byte) error {
	type plain Invite
	var aux struct {
		plain
		metadataKeys
	}
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	*m = Invite(aux.plain)
	m.Metadata = aux.pick()
	return nil
}

// MarshalJSON writes the metadata under the unstable key.
func (m Answer) MarshalJSON() ([]byte, error) {
	type plain Answer
	return marshalCall(TypeAnswer.Type, m.Seq, struct {
		plain
		Metadata metadata.Metadata `json:"org.matrix.msc3077.sdp_stream_metadata"`
	}{plain(m), orEmpty(m.Metadata)})
}

// UnmarshalJSON reads the metadata from either key.
func (m *Answer) UnmarshalJSON(b []byte) error {
	type plain Answer
	var aux struct {
		plain
		metadataKeys
	}
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	*m = Answer(aux.plain)
	m.Metadata = aux.pick()
	return nil
}

// MarshalJSON fails when Seq is not set.
func (m Candidates) MarshalJSON() ([]byte, error) {
	type plain Candidates
	if m.Candidates == nil {
		m.Candidates = []Candidate{}
	}
	return marshalCall(TypeCandidates.Type, m.Seq, plain(m))
}

// MarshalJSON fails when Seq is not set.
func (m SelectAnswer) MarshalJSON() ([]byte, error) {
	type plain SelectAnswer
	return marshalCall(TypeSelectAnswer.Type, m.Seq, plain(m))
}

// MarshalJSON fails when Seq is not set.
func (m Hangup) MarshalJSON() ([]byte, error) {
	type plain Hangup
	return marshalCall(TypeHangup.Type, m.Seq, plain(m))
}

// ToDeviceContent is implemented by the to-device messages.
type ToDeviceContent interface {
	EventType() event.Type
	Validate() error
}

// ParseToDevice decodes and checks the content of a to-device event of
// type typ. It returns *Invite, *Answer, *Candidates, *SelectAnswer or
// *Hangup. Errors match ErrTooLarge, ErrUnknownType or ErrInvalid.
func ParseToDevice(typ string, raw json.RawMessage) (any, error) {
	if len(raw) > MaxMessageSize {
		return nil, fmt.Errorf("%s: %w: %d bytes, limit %d", typ, ErrTooLarge, len(raw), MaxMessageSize)
	}
	var msg ToDeviceContent
	switch typ {
	case TypeInvite.Type:
		msg = new(Invite)
	case TypeAnswer.Type:
		msg = new(Answer)
	case TypeCandidates.Type:
		msg = new(Candidates)
	case TypeSelectAnswer.Type:
		msg = new(SelectAnswer)
	case TypeHangup.Type:
		msg = new(Hangup)
	default:
		return nil, fmt.Errorf("%w: to-device %q", ErrUnknownType, typ)
	}
	if err := json.Unmarshal(raw, msg); err != nil {
		return nil, fmt.Errorf("%s: %w: %w", typ, ErrInvalid, err)
	}
	if err := msg.Validate(); err != nil {
		return nil, err
	}
	return msg, nil
}

// DCMessage is the envelope of every data-channel message.
type DCMessage struct {
	Type    string          `json:"type"`
	Content json.RawMessage `json:"content"`
}

// SubscribeTrack asks for one track. Width and height, when set, pick
// the simulcast layer closest to that size.
type SubscribeTrack struct {
	StreamID string `json:"stream_id"`
	TrackID  string `json:"track_id"`
	Width    int    `json:"width,omitempty"`
	Height   int    `json:"height,omitempty"`
}

// UnsubscribeTrack stops one track.
type UnsubscribeTrack struct {
	StreamID string `json:"stream_id"`
	TrackID  string `json:"track_id"`
}

// TrackSubscription is m.call.track_subscription, client → focus.
type TrackSubscription struct {
	Subscribe   []SubscribeTrack   `json:"subscribe,omitempty"`
	Unsubscribe []UnsubscribeTrack `json:"unsubscribe,omitempty"`
}

// Negotiate is m.call.negotiate, in both directions: an offer or answer
// on the established connection, with the sender's stream metadata.
type Negotiate struct {
	Description SessionDescription `json:"description"`
	Metadata    metadata.Metadata  `json:"-"` // see metadataKeyStable
}

// MetadataChanged is m.call.sdp_stream_metadata_changed, in both
// directions: the sender's streams changed (mute, publish, unpublish).
type MetadataChanged struct {
	Metadata metadata.Metadata `json:"-"` // see metadataKeyStable
}

// Ping is m.call.ping, focus → client.
type Ping struct{}

// Pong is m.call.pong, the client's reply to Ping.
type Pong struct{}

// ActiveSpeakers is org.matrix.msc3898.call.active_speakers, focus →
// client: who speaks in the conference, loudest first, each named by a
// track of theirs as the client knows it (the focus's announced IDs, the
// client's own for itself). It is sent whole whenever the order changes;
// an empty list means nobody speaks.
type ActiveSpeakers struct {
	Speakers []ActiveSpeaker `json:"speakers"`
}

// ActiveSpeaker is one speaker. Level is the smoothed audio level, 0
// (silence) to 1 (loudest).
type ActiveSpeaker struct {
	UserID   id.UserID   `json:"user_id,omitempty"`
	DeviceID id.DeviceID `json:"device_id,omitempty"`
	StreamID string      `json:"stream_id"`
	TrackID  string      `json:"track_id"`
	Level    float64     `json:"level"`
}

// SubscriptionState is org.matrix.msc3898.call.subscription_state, focus
// → client: the focus stopped forwarding a track the client subscribed
// to because its connection lacks the bandwidth (Paused), or resumed it.
type SubscriptionState struct {
	StreamID string `json:"stream_id"`
	TrackID  string `json:"track_id"`
	Paused   bool   `json:"paused"`
}

// PublishLayers is org.matrix.msc3898.call.publish_layers, focus →
// client: which layers of one of the client's own tracks anyone needs,
// so that it can stop encoding the others. The track is named by the
// client's own IDs. Layers are the simulcast layers by RID, lowest
// first; a track of one encoding has one layer without a RID. None
// active means nobody watches the track.
type PublishLayers struct {
	StreamID string         `json:"stream_id"`
	TrackID  string         `json:"track_id"`
	Layers   []PublishLayer `json:"layers"`
}

// PublishLayer is one layer of a PublishLayers.
type PublishLayer struct {
	RID    string `json:"rid,omitempty"`
	Active bool   `json:"active"`
}

// DCType returns the data-channel message type.
func (TrackSubscription) DCType() string { return DCTrackSubscription }
func (Negotiate) DCType() string         { return DCNegotiate }
func (MetadataChanged) DCType() string   { return DCMetadataChanged }
func (Ping) DCType() string              { return DCPing }
func (Pong) DCType() string              { return DCPong }
func (ActiveSpeakers) DCType() string    { return DCActiveSpeakers }
func (SubscriptionState) DCType() string { return DCSubscriptionState }
func (PublishLayers) DCType() string     { return DCPublishLayers }

// Validate checks the list sizes and that every entry names a track.
func (m *TrackSubscription) Validate() error {
	t := DCTrackSubscription
	if n := len(m.Subscribe); n > MaxSubscriptions {
		return &FieldError{t, "subscribe", fmt.Sprintf("has %d entries, more than %d", n, MaxSubscriptions)}
	}
	if n := len(m.Unsubscribe); n > MaxSubscriptions {
		return &FieldError{t, "unsubscribe", fmt.Sprintf("has %d entries, more than %d", n, MaxSubscriptions)}
	}
	for i, s := range m.Subscribe {
		if err := validateTrackRef(t, fmt.Sprintf("subscribe[%d]", i), s.StreamID, s.TrackID); err != nil {
			return err
		}
		if s.Width < 0 || s.Height < 0 {
			return &FieldError{t, fmt.Sprintf("subscribe[%d]", i), "has a negative width or height"}
		}
	}
	for i, s := range m.Unsubscribe {
		if err := validateTrackRef(t, fmt.Sprintf("unsubscribe[%d]", i), s.StreamID, s.TrackID); err != nil {
			return err
		}
	}
	return nil
}

// validateTrackRef checks the stream and track IDs of an entry at field
// ("" for the content itself).
func validateTrackRef(typ, field, streamID, trackID string) error {
	if field != "" {
		field += "."
	}
	if streamID == "" {
		return &FieldError{typ, field + "stream_id", "is empty"}
	}
	if trackID == "" {
		return &FieldError{typ, field + "track_id", "is empty"}
	}
	return nil
}

// Validate checks the description and the metadata.
func (m *Negotiate) Validate() error {
	err := validateDescription(DCNegotiate, "description", m.Description, event.CallDataTypeOffer, event.CallDataTypeAnswer)
	if err != nil {
		return err
	}
	return validateMetadata(DCNegotiate, metadataKeyStable, m.Metadata)
}

// Validate checks the metadata, which must be present (it may be empty).
func (m *MetadataChanged) Validate() error {
	if m.Metadata == nil {
		return &FieldError{DCMetadataChanged, metadataKeyStable, "is missing"}
	}
	return validateMetadata(DCMetadataChanged, metadataKeyStable, m.Metadata)
}

// Validate accepts any ping.
func (*Ping) Validate() error { return nil }

// Validate accepts any pong.
func (*Pong) Validate() error { return nil }

// Validate checks the list's size, that every entry names a track, and
// the levels.
func (m *ActiveSpeakers) Validate() error {
	t := DCActiveSpeakers
	if m.Speakers == nil {
		return &FieldError{t, "speakers", "is missing"}
	}
	if n := len(m.Speakers); n > MaxStreams {
		return &FieldError{t, "speakers", fmt.Sprintf("has %d entries, more than %d", n, MaxStreams)}
	}
	for i, s := range m.Speakers {
		at := fmt.Sprintf("speakers[%d]", i)
		if err := validateTrackRef(t, at, s.StreamID, s.TrackID); err != nil {
			return err
		}
		if !(s.Level >= 0 && s.Level <= 1) {
			return &FieldError{t, at + ".level", "is not between 0 and 1"}
		}
	}
	return nil
}

// Validate checks that the message names a track.
func (m *SubscriptionState) Validate() error {
	return validateTrackRef(DCSubscriptionState, "", m.StreamID, m.TrackID)
}

// Validate checks that the message names a track and has layers.
func (m *PublishLayers) Validate() error {
	t := DCPublishLayers
	if err := validateTrackRef(t, "", m.StreamID, m.TrackID); err != nil {
		return err
	}
	if n := len(m.Layers); n == 0 || n > MaxLayers {
		return &FieldError{t, "layers", fmt.Sprintf("has %d entries, want 1 to %d", n, MaxLayers)}
	}
	return nil
}

// MarshalJSON writes the metadata under the stable key.
func (m Negotiate) MarshalJSON() ([]byte, error) {
	type plain Negotiate
	return json.Marshal(struct {
		plain
		Metadata metadata.Metadata `json:"sdp_stream_metadata"`
	}{plain(m), orEmpty(m.Metadata)})
}

// UnmarshalJSON reads the metadata from either key.
func (m *Negotiate) UnmarshalJSON(b []byte) error {
	type plain Negotiate
	var aux struct {
		plain
		metadataKeys
	}
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	*m = Negotiate(aux.plain)
	m.Metadata = aux.pick()
	return nil
}

// MarshalJSON writes the metadata under the stable key.
func (m MetadataChanged) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Metadata metadata.Metadata `json:"sdp_stream_metadata"`
	}{orEmpty(m.Metadata)})
}

// UnmarshalJSON reads the metadata from either key; when neither is
// present Metadata stays nil (and Validate fails).
func (m *MetadataChanged) UnmarshalJSON(b []byte) error {
	var k metadataKeys
	if err := json.Unmarshal(b, &k); err != nil {
		return err
	}
	m.Metadata = nil
	if k.Unstable != nil || k.Stable != nil {
		m.Metadata = k.pick()
	}
	return nil
}

// DCContent is implemented by the data-channel messages.
type DCContent interface {
	DCType() string
	Validate() error
}

// ParseDataChannel decodes and checks one data-channel message. It
// returns *TrackSubscription, *Negotiate, *MetadataChanged, *Ping,
// *Pong, or one of the focus → client messages *ActiveSpeakers,
// *SubscriptionState and *PublishLayers (which a Go client reads). A
// missing content is read as {}. Errors match ErrTooLarge,
// ErrUnknownType or ErrInvalid.
func ParseDataChannel(raw []byte) (any, error) {
	const where = "data channel"
	if len(raw) > MaxMessageSize {
		return nil, fmt.Errorf("%s: %w: %d bytes, limit %d", where, ErrTooLarge, len(raw), MaxMessageSize)
	}
	var env DCMessage
	if err := json.Unmarshal(raw, &env); err != nil {
		return nil, fmt.Errorf("%s: %w: %w", where, ErrInvalid, err)
	}
	var msg DCContent
	switch env.Type {
	case "":
		return nil, &FieldError{where, "type", "is empty"}
	case DCTrackSubscription:
		msg = new(TrackSubscription)
	case DCNegotiate:
		msg = new(Negotiate)
	case DCMetadataChanged:
		msg = new(MetadataChanged)
	case DCPing:
		msg = new(Ping)
	case DCPong:
		msg = new(Pong)
	case DCActiveSpeakers:
		msg = new(ActiveSpeakers)
	case DCSubscriptionState:
		msg = new(SubscriptionState)
	case DCPublishLayers:
		msg = new(PublishLayers)
	default:
		return nil, fmt.Errorf("%w: data channel %q", ErrUnknownType, env.Type)
	}
	content := env.Content
	if len(content) == 0 || bytes.Equal(content, []byte("null")) {
		content = []byte("{}")
	}
	if err := json.Unmarshal(content, msg); err != nil {
		return nil, fmt.Errorf("%s: %w: %w", env.Type, ErrInvalid, err)
	}
	if err := msg.Validate(); err != nil {
		return nil, err
	}
	return msg, nil
}

// MarshalDataChannel wraps msg in its envelope.
func MarshalDataChannel(msg DCContent) ([]byte, error) {
	content, err := json.Marshal(msg)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", msg.DCType(), err)
	}
	return json.Marshal(DCMessage{Type: msg.DCType(), Content: content})
}

// validateMetadata bounds the metadata and rejects empty keys and
// negative sizes.
func validateMetadata(typ, field string, m metadata.Metadata) error {
	if n := len(m); n > MaxStreams {
		return &FieldError{typ, field, fmt.Sprintf("has %d streams, more than %d", n, MaxStreams)}
	}
	for _, key := range m.Keys() { // sorted, so the error is stable
		s := m[key]
		at := fmt.Sprintf("%s[%q]", field, key)
		if key == "" {
			return &FieldError{typ, field, "has an empty stream key"}
		}
		if n := len(s.Tracks); n > MaxStreams {
			return &FieldError{typ, at + ".tracks", fmt.Sprintf("has %d tracks, more than %d", n, MaxStreams)}
		}
		for _, tid := range slices.Sorted(maps.Keys(s.Tracks)) {
			tr := s.Tracks[tid]
			if tid == "" {
				return &FieldError{typ, at + ".tracks", "has an empty track key"}
			}
			if tr.Width < 0 || tr.Height < 0 {
				return &FieldError{typ, fmt.Sprintf("%s.tracks[%q]", at, tid), "has a negative width or height"}
			}
		}
	}
	return nil
}
