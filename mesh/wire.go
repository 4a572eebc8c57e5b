package mesh

import (
	"encoding/json"
	"errors"
	"fmt"
)

// The wire format. Every message is one kind byte and a JSON body with
// short keys (a state of a few conferences fits one UDP packet). Receivers
// drop unknown kinds, so new kinds can be added later.
const (
	kindState byte = 's' // one node's state (wireState)
	kindWant  byte = 'w' // "send me your state" (wireWant)
	kindPush  byte = 'p' // push/pull: every state the sender knows (wirePush)
)

// Limits on what a remote node may send. A message beyond them is dropped
// whole: it is either corrupt or hostile, and a partial state would be
// mistaken for the real one.
const (
	maxMessageBytes   = 16 << 20 // memberlist itself stops at 20 MiB
	maxPushStates     = 4096
	maxNameBytes      = 128 // node names
	maxStringBytes    = 4096
	maxConferences    = 100000
	maxConfNames      = 64
	maxConfMembers    = 10000
	maxTracksEach     = 64
	maxLayersEach     = 8
	maxDimension      = 65535 // a layer's width or height, in pixels
	broadcastMaxBytes = 1024  // larger states go over TCP to every member
	metaMaxBytes      = 512   // memberlist.MetaMaxSize
)

type wireState struct {
	Name     string       `json:"n"`
	Version  uint64       `json:"v"`
	Left     bool         `json:"x,omitempty"`
	Identity wireIdentity `json:"i"`
	Load     wireLoad     `json:"l"`
	Confs    []wireConf   `json:"c,omitempty"`
}

type wireIdentity struct {
	TrunkURL   string `json:"t,omitempty"`
	UserID     string `json:"u,omitempty"`
	DeviceID   string `json:"d,omitempty"`
	LiveKitURL string `json:"k,omitempty"`
}

type wireLoad struct {
	Participants int     `json:"p,omitempty"`
	BitrateBps   uint64  `json:"b,omitempty"`
	CPU          float64 `json:"c,omitempty"`
}

type wireConf struct {
	Names        []string          `json:"n"`
	Participants []wireParticipant `json:"p,omitempty"`
}

type wireParticipant struct {
	ID       string      `json:"i"`
	Identity string      `json:"u,omitempty"`
	Role     string      `json:"r,omitempty"`
	Tracks   []wireTrack `json:"t,omitempty"`
}

type wireTrack struct {
	ID        string   `json:"i"`
	StreamID  string   `json:"s,omitempty"`
	Kind      string   `json:"k,omitempty"`
	Source    string   `json:"o,omitempty"`
	MimeType  string   `json:"m,omitempty"`
	ClockRate uint32   `json:"r,omitempty"`
	Channels  uint16   `json:"c,omitempty"`
	Fmtp      string   `json:"f,omitempty"`
	Muted     bool     `json:"u,omitempty"`
	Layers    []string `json:"l,omitempty"`
	// Sizes are the layers' sizes, flat: width and height of the first
	// layer, then of the next (see Track.Sizes).
	Sizes []uint32 `json:"z,omitempty"`
}

type wireWant struct {
	From string `json:"f"`
}

type wirePush struct {
	States []wireState `json:"s"`
}

// wireMeta is the node metadata. Name and version always fit (New bounds
// the name); identity fields are kept in order while they fit.
type wireMeta struct {
	Name       string `json:"n"`
	Version    uint64 `json:"v"`
	TrunkURL   string `json:"t,omitempty"`
	UserID     string `json:"u,omitempty"`
	DeviceID   string `json:"d,omitempty"`
	LiveKitURL string `json:"k,omitempty"`
}

// encode encodes a message. Only values JSON cannot hold (NaN, infinities)
// make it fail, and SetLoad keeps those out.
func encode(kind byte, v any) ([]byte, error) {
	body, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return append([]byte{kind}, body...), nil
}

var errEmpty = errors.New("empty message")

// decodeMessage decodes a state or want message from a remote node.
// Exactly one of the results is non-nil when err is nil.
func decodeMessage(b []byte) (*wireState, *wireWant, error) {
	if len(b) == 0 {
		return nil, nil, errEmpty
	}
	if len(b) > maxMessageBytes {
		return nil, nil, fmt.Errorf("message of %d bytes exceeds %d", len(b), maxMessageBytes)
	}
	switch b[0] {
	case kindState:
		var s wireState
		if err := json.Unmarshal(b[1:], &s); err != nil {
			return nil, nil, fmt.Errorf("state: %w", err)
		}
		if err := s.validate(); err != nil {
			return nil, nil, fmt.Errorf("state: %w", err)
		}
		return &s, nil, nil
	case kindWant:
		var w wireWant
		if err := json.Unmarshal(b[1:], &w); err != nil {
			return nil, nil, fmt.Errorf("want: %w", err)
		}
		if err := validName(w.From); err != nil {
			return nil, nil, fmt.Errorf("want: %w", err)
		}
		return nil, &w, nil
	default:
		return nil, nil, fmt.Errorf("unknown message kind %#x", b[0])
	}
}

// decodePush decodes the push/pull state of a remote node.
func decodePush(b []byte) ([]wireState, error) {
	if len(b) == 0 {
		return nil, errEmpty
	}
	if len(b) > maxMessageBytes {
		return nil, fmt.Errorf("push/pull state of %d bytes exceeds %d", len(b), maxMessageBytes)
	}
	if b[0] != kindPush {
		return nil, fmt.Errorf("push/pull state: unknown kind %#x", b[0])
	}
	var p wirePush
	if err := json.Unmarshal(b[1:], &p); err != nil {
		return nil, fmt.Errorf("push/pull state: %w", err)
	}
	if len(p.States) > maxPushStates {
		return nil, fmt.Errorf("push/pull state: %d states exceed %d", len(p.States), maxPushStates)
	}
	for i := range p.States {
		if err := p.States[i].validate(); err != nil {
			return nil, fmt.Errorf("push/pull state %d: %w", i, err)
		}
	}
	return p.States, nil
}

// decodeMeta decodes a node's metadata.
func decodeMeta(b []byte) (wireMeta, error) {
	var m wireMeta
	if len(b) > metaMaxBytes {
		return m, fmt.Errorf("metadata of %d bytes exceeds %d", len(b), metaMaxBytes)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, err
	}
	return m, validName(m.Name)
}

// encodeMeta encodes this node's metadata within limit bytes. Identity
// fields that do not fit are left out (the full identity also travels in
// the state); complete reports whether all of them fit.
func encodeMeta(name string, version uint64, id Identity, limit int) (b []byte, complete bool) {
	m := wireMeta{Name: name, Version: version}
	b, _ = json.Marshal(m)
	complete = true
	for _, add := range []func(*wireMeta){
		func(m *wireMeta) { m.TrunkURL = id.TrunkURL },
		func(m *wireMeta) { m.UserID = id.MatrixUserID },
		func(m *wireMeta) { m.DeviceID = id.MatrixDeviceID },
		func(m *wireMeta) { m.LiveKitURL = id.LiveKitURL },
	} {
		next := m
		add(&next)
		nb, _ := json.Marshal(next)
		if len(nb) > limit {
			complete = false
			continue
		}
		m, b = next, nb
	}
	return b, complete
}

func (s *wireState) validate() error {
	if err := validName(s.Name); err != nil {
		return err
	}
	if s.Version == 0 {
		return errors.New("version 0")
	}
	if err := validStrings(s.Identity.TrunkURL, s.Identity.UserID, s.Identity.DeviceID, s.Identity.LiveKitURL); err != nil {
		return fmt.Errorf("identity: %w", err)
	}
	if s.Load.Participants < 0 || s.Load.CPU < 0 {
		return errors.New("negative load")
	}
	if len(s.Confs) > maxConferences {
		return fmt.Errorf("%d conferences exceed %d", len(s.Confs), maxConferences)
	}
	for i := range s.Confs {
		if err := s.Confs[i].validate(); err != nil {
			return fmt.Errorf("conference %d: %w", i, err)
		}
	}
	return nil
}

func (c *wireConf) validate() error {
	if len(c.Names) == 0 || len(c.Names) > maxConfNames {
		return fmt.Errorf("%d names (want 1 to %d)", len(c.Names), maxConfNames)
	}
	if err := validStrings(c.Names...); err != nil {
		return err
	}
	if len(c.Participants) > maxConfMembers {
		return fmt.Errorf("%d participants exceed %d", len(c.Participants), maxConfMembers)
	}
	for _, p := range c.Participants {
		if err := validStrings(p.ID, p.Identity, p.Role); err != nil {
			return err
		}
		if len(p.Tracks) > maxTracksEach {
			return fmt.Errorf("participant %q: %d tracks exceed %d", p.ID, len(p.Tracks), maxTracksEach)
		}
		for _, t := range p.Tracks {
			if err := validStrings(t.ID, t.StreamID, t.Kind, t.Source, t.MimeType, t.Fmtp); err != nil {
				return err
			}
			if len(t.Layers) > maxLayersEach {
				return fmt.Errorf("track %q: %d layers exceed %d", t.ID, len(t.Layers), maxLayersEach)
			}
			if err := validStrings(t.Layers...); err != nil {
				return err
			}
			if err := t.validSizes(); err != nil {
				return fmt.Errorf("track %q: %w", t.ID, err)
			}
		}
	}
	return nil
}

// validSizes checks a track's sizes: none, or a width and a height for
// each layer (one layer when the track has no RIDs), each at most
// maxDimension.
func (t *wireTrack) validSizes() error {
	if len(t.Sizes) == 0 {
		return nil
	}
	layers := max(len(t.Layers), 1)
	if len(t.Sizes) != 2*layers {
		return fmt.Errorf("%d size values for %d layers (want a width and a height each)", len(t.Sizes), layers)
	}
	for _, v := range t.Sizes {
		if v > maxDimension {
			return fmt.Errorf("layer size %d exceeds %d", v, maxDimension)
		}
	}
	return nil
}

func validName(name string) error {
	if name == "" {
		return errors.New("empty node name")
	}
	if len(name) > maxNameBytes {
		return fmt.Errorf("node name of %d bytes exceeds %d", len(name), maxNameBytes)
	}
	return nil
}

func validStrings(ss ...string) error {
	for _, s := range ss {
		if len(s) > maxStringBytes {
			return fmt.Errorf("string of %d bytes exceeds %d", len(s), maxStringBytes)
		}
	}
	return nil
}

// The conversions below also serve as deep copies; they map empty slices
// to nil so that equal holdings compare equal.

func toWireConfs(cs []Conference) []wireConf {
	if len(cs) == 0 {
		return nil
	}
	out := make([]wireConf, len(cs))
	for i, c := range cs {
		out[i] = wireConf{Names: copyStrings(c.Names)}
		if len(c.Participants) > 0 {
			out[i].Participants = make([]wireParticipant, len(c.Participants))
		}
		for j, p := range c.Participants {
			wp := wireParticipant{ID: p.ID, Identity: p.Identity, Role: p.Role}
			if len(p.Tracks) > 0 {
				wp.Tracks = make([]wireTrack, len(p.Tracks))
			}
			for k, t := range p.Tracks {
				wp.Tracks[k] = wireTrack{
					ID: t.ID, StreamID: t.StreamID, Kind: t.Kind, Source: t.Source,
					MimeType: t.MimeType, ClockRate: t.ClockRate, Channels: t.Channels,
					Fmtp: t.Fmtp, Muted: t.Muted, Layers: copyStrings(t.Layers),
					Sizes: toWireSizes(t.Sizes),
				}
			}
			out[i].Participants[j] = wp
		}
	}
	return out
}

func fromWireConfs(ws []wireConf) []Conference {
	if len(ws) == 0 {
		return nil
	}
	out := make([]Conference, len(ws))
	for i, w := range ws {
		out[i] = Conference{Names: copyStrings(w.Names)}
		if len(w.Participants) > 0 {
			out[i].Participants = make([]Participant, len(w.Participants))
		}
		for j, wp := range w.Participants {
			p := Participant{ID: wp.ID, Identity: wp.Identity, Role: wp.Role}
			if len(wp.Tracks) > 0 {
				p.Tracks = make([]Track, len(wp.Tracks))
			}
			for k, t := range wp.Tracks {
				p.Tracks[k] = Track{
					ID: t.ID, StreamID: t.StreamID, Kind: t.Kind, Source: t.Source,
					MimeType: t.MimeType, ClockRate: t.ClockRate, Channels: t.Channels,
					Fmtp: t.Fmtp, Muted: t.Muted, Layers: copyStrings(t.Layers),
					Sizes: fromWireSizes(t.Sizes),
				}
			}
			out[i].Participants[j] = p
		}
	}
	return out
}

// copyConferences is a deep copy of cs, with empty slices as nil.
func copyConferences(cs []Conference) []Conference {
	return fromWireConfs(toWireConfs(cs))
}

func copyStrings(ss []string) []string {
	if len(ss) == 0 {
		return nil
	}
	return append([]string(nil), ss...)
}

// toWireSizes flattens sizes into width, height pairs.
func toWireSizes(sizes []LayerSize) []uint32 {
	if len(sizes) == 0 {
		return nil
	}
	out := make([]uint32, 0, 2*len(sizes))
	for _, s := range sizes {
		out = append(out, s.Width, s.Height)
	}
	return out
}

// fromWireSizes reads width, height pairs; a value without its pair (which
// validation refuses) is dropped.
func fromWireSizes(flat []uint32) []LayerSize {
	if len(flat) < 2 {
		return nil
	}
	out := make([]LayerSize, len(flat)/2)
	for i := range out {
		out[i] = LayerSize{Width: flat[2*i], Height: flat[2*i+1]}
	}
	return out
}

func toWireIdentity(id Identity) wireIdentity {
	return wireIdentity{TrunkURL: id.TrunkURL, UserID: id.MatrixUserID, DeviceID: id.MatrixDeviceID, LiveKitURL: id.LiveKitURL}
}

func (w wireIdentity) identity() Identity {
	return Identity{TrunkURL: w.TrunkURL, MatrixUserID: w.UserID, MatrixDeviceID: w.DeviceID, LiveKitURL: w.LiveKitURL}
}
