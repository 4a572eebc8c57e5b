package testclient

import (
	"errors"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

func TestPayloadRoundTrip(t *testing.T) {
	sent := time.Unix(1700000000, 123456789)
	tests := []struct {
		name     string
		header   []byte
		size     int
		wantSize int
	}{
		{"audio", nil, 100, 100},
		{"vp8 keyframe start", vp8Header(nil, true, true), 1000, 1000},
		{"vp8 interframe start", vp8Header(nil, true, false), 1000, 1000},
		{"vp8 continuation", vp8Header(nil, false, false), 1000, 1000},
		{"size raised to fit", vp8Header(nil, true, true), 3, 11 + TrailerSize},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := Marker{Session: 0xdeadbeef, Counter: uint32(i) + 41, Sent: sent}
			p := appendPayload([]byte("prefix"), tt.header, tt.size, m)[len("prefix"):]
			if len(p) != tt.wantSize {
				t.Fatalf("len = %d, want %d", len(p), tt.wantSize)
			}
			got, err := DecodeTrailer(p)
			if err != nil {
				t.Fatalf("DecodeTrailer: %v", err)
			}
			if got.Session != m.Session || got.Counter != m.Counter || !got.Sent.Equal(m.Sent) {
				t.Errorf("marker = %+v, want %+v", got, m)
			}
		})
	}
}

func TestDecodeTrailerRejects(t *testing.T) {
	good := appendPayload(nil, vp8Header(nil, true, true), 200, Marker{Counter: 7, Sent: time.Now()})
	flip := func(i int) []byte {
		p := append([]byte(nil), good...)
		p[i] ^= 0x01
		return p
	}
	tests := []struct {
		name    string
		payload []byte
		want    error
	}{
		{"empty", nil, ErrShortPayload},
		{"short", good[:TrailerSize-1], ErrShortPayload},
		{"header rewritten", flip(0), ErrBadChecksum},
		{"filler changed", flip(50), ErrBadChecksum},
		{"counter changed", flip(len(good) - 13), ErrBadChecksum},
		{"checksum changed", flip(len(good) - 1), ErrBadChecksum},
		{"magic changed", flip(len(good) - TrailerSize), ErrBadMagic},
		{"truncated", good[:len(good)-1], ErrBadMagic},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := DecodeTrailer(tt.payload); !errors.Is(err, tt.want) {
				t.Errorf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestParseVP8(t *testing.T) {
	tests := []struct {
		name    string
		payload []byte
		want    VP8Info
		wantErr bool
	}{
		{"keyframe start", vp8Header(nil, true, true), VP8Info{Start: true, Keyframe: true}, false},
		{"interframe start", vp8Header(nil, true, false), VP8Info{Start: true}, false},
		{"continuation", append(vp8Header(nil, false, false), 0x00), VP8Info{}, false},
		// X, I with a 15-bit picture ID, L, T: 5 descriptor bytes.
		{"extended keyframe", append([]byte{0x90, 0xe0, 0x80, 0x01, 0x05, 0x20}, vp8Header(nil, true, true)[1:]...),
			VP8Info{Start: true, Keyframe: true}, false},
		// X, I with a 7-bit picture ID.
		{"extended interframe", append([]byte{0x90, 0x80, 0x05}, vp8Header(nil, true, false)[1:]...),
			VP8Info{Start: true}, false},
		// S set but PID 1: not a frame start even though P reads 0.
		{"partition 1", []byte{0x11, 0x00, 0x00, 0x00}, VP8Info{}, false},
		// The R bit before PID is reserved and ignored.
		{"reserved bit", []byte{0x18, 0x01, 0x00, 0x00}, VP8Info{Start: true}, false},
		{"empty", nil, VP8Info{}, true},
		{"descriptor only", []byte{0x10}, VP8Info{}, true},
		{"truncated extension", []byte{0x90}, VP8Info{}, true},
		{"keyframe without start code", []byte{0x10, 0x10, 0x08, 0x00, 0, 0, 0, 0, 0, 0, 0}, VP8Info{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseVP8(tt.payload)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("info = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(appendPayload(nil, vp8Header(nil, true, true), 100, Marker{Counter: 1}))
	f.Add([]byte{0x90, 0xe0, 0x80})
	f.Fuzz(func(t *testing.T, p []byte) {
		_, _ = ParseVP8(p)
		_, _ = DecodeTrailer(p)
	})
}

// TestExportedPayloadsRecord: what AppendVP8 and AppendOpus make, a
// TrackRecorder counts as intact, in order, starting at a keyframe.
func TestExportedPayloadsRecord(t *testing.T) {
	video := NewTrackRecorder(webrtc.RTPCodecTypeVideo)
	audio := NewTrackRecorder(webrtc.RTPCodecTypeAudio)
	now := time.Now()
	for i := range 10 {
		m := Marker{Session: 1, Counter: uint32(i), Sent: now}
		video.Record(&rtp.Packet{
			Header:  rtp.Header{SequenceNumber: uint16(65530 + i), Timestamp: uint32(i / 2)},
			Payload: AppendVP8(nil, i%2 == 0, i == 0, 300, m),
		}, now)
		audio.Record(&rtp.Packet{
			Header:  rtp.Header{SequenceNumber: uint16(i), Timestamp: uint32(960 * i)},
			Payload: AppendOpus(nil, 100, m),
		}, now)
	}
	v, a := video.Stats(), audio.Stats()
	if v.Packets != 10 || v.Intact != 10 || v.Seq.Gaps != 0 || v.CounterGaps != 0 || !v.FirstKeyframe ||
		v.Keyframes != 1 || v.VP8Errors != 0 || v.Sessions != 1 {
		t.Errorf("video stats = %+v", v)
	}
	if a.Packets != 10 || a.Intact != 10 || a.Seq.Gaps != 0 || a.CounterGaps != 0 || a.FirstKeyframe || a.Sessions != 1 {
		t.Errorf("audio stats = %+v", a)
	}
	if p := AppendOpus(nil, 100, Marker{}); len(p) != 100 || p[0] != opusTOC {
		t.Errorf("AppendOpus: len %d, first byte %#x", len(p), p[0])
	}
}
