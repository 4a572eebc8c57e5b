// Package metadata holds MSC3077 stream metadata (`sdp_stream_metadata`):
// what each stream in an SDP is for, who publishes it, whether it is
// muted, and the size of its video tracks.
//
// A Metadata is keyed by stream ID (the msid stream of the SDP). A client
// may key it by MID instead, so that two clients reusing a stream ID
// cannot collide; Resolve finds the entry for a track either way.
package metadata

import (
	"maps"
	"slices"

	"maunium.net/go/mautrix/id"
)

// Purpose says what a stream carries.
type Purpose string

// Purposes defined by MSC3077.
const (
	PurposeUsermedia   Purpose = "m.usermedia"
	PurposeScreenshare Purpose = "m.screenshare"
)

// Track describes one track of a stream. Width and height are those of
// the largest layer a video track publishes.
type Track struct {
	Kind   string `json:"kind,omitempty"` // "audio" or "video"
	Width  int    `json:"width,omitempty"`
	Height int    `json:"height,omitempty"`
}

// Stream describes one stream. UserID and DeviceID name the publisher;
// the focus fills them in for the streams it announces.
type Stream struct {
	UserID     id.UserID        `json:"user_id,omitempty"`
	DeviceID   id.DeviceID      `json:"device_id,omitempty"`
	Purpose    Purpose          `json:"purpose"`
	AudioMuted bool             `json:"audio_muted"`
	VideoMuted bool             `json:"video_muted"`
	Tracks     map[string]Track `json:"tracks,omitempty"`
}

// Metadata maps stream IDs (or MIDs) to streams.
type Metadata map[string]Stream

// Clone returns a deep copy of s.
func (s Stream) Clone() Stream {
	s.Tracks = maps.Clone(s.Tracks)
	return s
}

// Clone returns a deep copy of m. The clone of a nil Metadata is nil.
func (m Metadata) Clone() Metadata {
	if m == nil {
		return nil
	}
	out := make(Metadata, len(m))
	for k, s := range m {
		out[k] = s.Clone()
	}
	return out
}

// Merge returns a new Metadata holding the entries of all ms; for a key
// present in several, the last one wins whole (streams are not merged
// field by field, so a later entry can drop a track). Nil inputs are
// skipped; the result is never nil.
func Merge(ms ...Metadata) Metadata {
	out := make(Metadata)
	for _, m := range ms {
		for k, s := range m {
			out[k] = s.Clone()
		}
	}
	return out
}

// Keys returns the keys of m in sorted order.
func (m Metadata) Keys() []string {
	return slices.Sorted(maps.Keys(m))
}

// ByTrack finds the stream that lists trackID among its tracks. If
// several do (two publishers reusing an ID), the one with the smallest
// key wins, so the answer is stable.
func (m Metadata) ByTrack(trackID string) (key string, s Stream, ok bool) {
	if trackID == "" {
		return "", Stream{}, false
	}
	for _, k := range m.Keys() {
		if _, has := m[k].Tracks[trackID]; has {
			return k, m[k], true
		}
	}
	return "", Stream{}, false
}

// Resolve finds the entry describing the track with the given msid
// stream ID, msid track ID and MID. Any of the three may be empty.
// The most specific match wins:
//
//  1. the entry keyed by streamID that lists trackID;
//  2. the entry keyed by mid (MID-keyed metadata);
//  3. the entry keyed by streamID;
//  4. any entry listing trackID (see ByTrack).
func (m Metadata) Resolve(streamID, trackID, mid string) (key string, s Stream, ok bool) {
	if streamID != "" {
		if s, has := m[streamID]; has && trackID != "" {
			if _, listed := s.Tracks[trackID]; listed {
				return streamID, s, true
			}
		}
	}
	if mid != "" {
		if s, has := m[mid]; has {
			return mid, s, true
		}
	}
	if streamID != "" {
		if s, has := m[streamID]; has {
			return streamID, s, true
		}
	}
	return m.ByTrack(trackID)
}
