package cascade

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
)

// The trunk's data channel carries one JSON object per message:
//
//	{"version":1,"type":"subscribe","conference":"whip:lobby","track":"TR_x","layer":2}  puller → exporter
//	{"version":1,"type":"unsubscribe","track":"TR_x","layer":2}                          puller → exporter
//	{"version":1,"type":"offer","sdp":"v=0..."}                               exporter → puller
//	{"version":1,"type":"answer","sdp":"v=0..."}                              puller → exporter
//	{"version":1,"type":"ping","seq":7}                                       both ways
//	{"version":1,"type":"pong","seq":7}                                       both ways
//	{"version":1,"type":"error","code":"unknown_track","error":"...","track":"TR_x","layer":2}  both ways
//	{"version":1,"type":"close","error":"idle"}                               both ways
//	{"version":1,"type":"part","data":"<base64>","more":true}                 both ways
//
// A subscription is of one layer of a track: "layer" is the index of a
// simulcast layer at the origin, lowest first; absent means 0, the only
// layer of audio and of video without simulcast. The exporter sends each
// subscribed layer as a track of its own, whose ID is trunkTrackID's. An
// error about a subscription names its track and layer.
//
// A message longer than a data channel message may be (pion reads at
// most 64 KiB) travels as parts: the bytes of the whole JSON message, cut
// in pieces, each in a "part" message, the last with "more" false.
//
// A receiver ignores fields it does not know, answers a malformed
// message, an unknown type or another version with an error message
// (never an error with an error), and logs it.
const protocolVersion = 1

// Message types.
const (
	msgSubscribe   = "subscribe"
	msgUnsubscribe = "unsubscribe"
	msgOffer       = "offer"
	msgAnswer      = "answer"
	msgPing        = "ping"
	msgPong        = "pong"
	msgError       = "error"
	msgClose       = "close"
	msgPart        = "part"
)

// Error codes of error messages.
const (
	codeBadMessage         = "bad_message"         // not JSON, or a field missing or too long
	codeUnsupportedVersion = "unsupported_version" // version is not protocolVersion
	codeUnknownType        = "unknown_type"
	codeUnknownConference  = "unknown_conference" // the exporter has no conference of that name
	codeUnknownTrack       = "unknown_track"      // the conference has no such track
	codeUnknownLayer       = "unknown_layer"      // the track has no such layer
	codeNotExportable      = "not_exportable"     // the track came over a trunk itself
	codeDuplicateTrack     = "duplicate_track"    // another conference's track of that ID is exported already
	codeSubscribeFailed    = "subscribe_failed"   // the core or pion refused
	codeTrackEnded         = "track_ended"        // an exported track was unpublished at its origin
	codeNegotiation        = "negotiation_failed" // an offer or answer was not applied
)

// Limits of a message's fields.
const (
	// maxName bounds a node name, conference name or track ID.
	maxName = 1024
	// maxLayer bounds a layer index (the core keeps at most 8 layers).
	maxLayer = 7
	// maxSDP bounds an offer or answer.
	maxSDP = 4 << 20
	// maxAssembled bounds a message sent in parts.
	maxAssembled = maxSDP + 64<<10
	// maxFrame is the largest message sent whole; longer ones go in
	// parts of partSize bytes (base64 makes a part 4/3 as long).
	maxFrame = 60000
	partSize = 32 << 10
)

// message is one data channel message; which fields are set depends on
// Type (see above).
type message struct {
	Version    int    `json:"version"`
	Type       string `json:"type"`
	Seq        uint64 `json:"seq,omitempty"`
	Conference string `json:"conference,omitempty"`
	Track      string `json:"track,omitempty"`
	Layer      int    `json:"layer,omitempty"`
	SDP        string `json:"sdp,omitempty"`
	Code       string `json:"code,omitempty"`
	Error      string `json:"error,omitempty"`
	Data       []byte `json:"data,omitempty"`
	More       bool   `json:"more,omitempty"`
}

// errMessage is wrapped by every error decodeMessage returns.
type errMessage struct {
	code string
	err  error
}

func (e *errMessage) Error() string { return e.err.Error() }

func badMessage(code, format string, args ...any) error {
	return &errMessage{code: code, err: fmt.Errorf(format, args...)}
}

// messageCode returns the error code for a decodeMessage error.
func messageCode(err error) string {
	var e *errMessage
	if errors.As(err, &e) {
		return e.code
	}
	return codeBadMessage
}

// decodeMessage parses and checks one message. On error, the returned
// message still has whatever Type could be read, so that the caller can
// tell a broken error message (which gets no answer) from the rest.
func decodeMessage(b []byte) (message, error) {
	var m message
	d := json.NewDecoder(bytes.NewReader(b))
	if err := d.Decode(&m); err != nil {
		// Keep the type if it can be read on its own.
		var peek struct {
			Type string `json:"type"`
		}
		if json.Unmarshal(b, &peek) == nil {
			m = message{Type: peek.Type}
		}
		return m, badMessage(codeBadMessage, "not a JSON message object: %v", err)
	}
	if d.More() {
		return m, badMessage(codeBadMessage, "data after the JSON object")
	}
	if m.Version != protocolVersion {
		return m, badMessage(codeUnsupportedVersion, "version %d; this focus speaks version %d", m.Version, protocolVersion)
	}
	for _, f := range []struct {
		name, value string
		max         int
	}{
		{"type", m.Type, maxName}, {"conference", m.Conference, maxName}, {"track", m.Track, maxName},
		{"code", m.Code, maxName}, {"error", m.Error, maxName}, {"sdp", m.SDP, maxSDP},
	} {
		if len(f.value) > f.max {
			return m, badMessage(codeBadMessage, "%s is longer than %d bytes", f.name, f.max)
		}
	}
	if m.Layer < 0 || m.Layer > maxLayer {
		return m, badMessage(codeBadMessage, "layer %d; a layer is 0 to %d", m.Layer, maxLayer)
	}
	need := func(fields ...string) error {
		for i := 0; i+1 < len(fields); i += 2 {
			if fields[i+1] == "" {
				return badMessage(codeBadMessage, "%s message without %s", m.Type, fields[i])
			}
		}
		return nil
	}
	var err error
	switch m.Type {
	case msgSubscribe:
		err = need("conference", m.Conference, "track", m.Track)
	case msgUnsubscribe:
		err = need("track", m.Track)
	case msgOffer, msgAnswer:
		err = need("sdp", m.SDP)
	case msgError:
		err = need("code", m.Code)
	case msgPart:
		if len(m.Data) == 0 {
			err = badMessage(codeBadMessage, "part message without data")
		} else if len(m.Data) > partSize {
			err = badMessage(codeBadMessage, "part of %d bytes; at most %d", len(m.Data), partSize)
		}
	case msgPing, msgPong, msgClose:
	case "":
		err = badMessage(codeBadMessage, "message without type")
	default:
		err = badMessage(codeUnknownType, "unknown message type %q", m.Type)
	}
	return m, err
}

// trunkTrackID is the ID of the trunk track that carries layer of the
// origin's track: the track's own ID for layer 0, so that a track
// without simulcast keeps its ID on the trunk, and the ID with "~" and
// the layer's index after it for the others. IDs are unique per trunk as
// long as no origin track's ID is another's with such a suffix; the
// exporter refuses the second of two such subscriptions as
// duplicate_track.
func trunkTrackID(track string, layer int) string {
	if layer == 0 {
		return track
	}
	return track + "~" + strconv.Itoa(layer)
}

// encodeFrames returns the data channel messages that carry m: m itself,
// or its parts when it is too long for one.
func encodeFrames(m message) ([][]byte, error) {
	m.Version = protocolVersion
	b, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	if len(b) <= maxFrame {
		return [][]byte{b}, nil
	}
	var out [][]byte
	for off := 0; off < len(b); off += partSize {
		end := min(off+partSize, len(b))
		p, err := json.Marshal(message{Version: protocolVersion, Type: msgPart, Data: b[off:end], More: end < len(b)})
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// assembler joins the parts of a message. It is used by one goroutine.
type assembler struct {
	buf []byte
}

// add takes one decoded message. It returns the message to handle (the
// message itself, or the whole one its last part completes) and whether
// there is one yet.
func (a *assembler) add(m message) (message, bool, error) {
	if m.Type != msgPart {
		if a.buf != nil {
			a.buf = nil
			return m, true, badMessage(codeBadMessage, "a %s message interrupted a message in parts; the parts are dropped", m.Type)
		}
		return m, true, nil
	}
	if len(a.buf)+len(m.Data) > maxAssembled {
		a.buf = nil
		return message{}, false, badMessage(codeBadMessage, "message in parts is longer than %d bytes", maxAssembled)
	}
	a.buf = append(a.buf, m.Data...)
	if m.More {
		return message{}, false, nil
	}
	whole := a.buf
	a.buf = nil
	full, err := decodeMessage(whole)
	if err != nil {
		return full, false, err
	}
	if full.Type == msgPart {
		return full, false, badMessage(codeBadMessage, "a part inside a part")
	}
	return full, true, nil
}
