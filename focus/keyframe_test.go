package focus

import (
	"testing"
	"time"

	"github.com/pion/rtcp"
)

func TestKeyframeDetection(t *testing.T) {
	cases := []struct {
		name string
		fn   keyframeFunc
		in   []byte
		want bool
	}{
		{"vp8Codec key", isVP8Keyframe, []byte{0x10, 0x00}, true},
		{"vp8Codec inter", isVP8Keyframe, []byte{0x10, 0x01}, false},
		{"vp8Codec not start", isVP8Keyframe, []byte{0x00, 0x00}, false},
		{"vp8Codec partition 1", isVP8Keyframe, []byte{0x11, 0x00}, false},
		{"vp8Codec ext 7-bit picture id", isVP8Keyframe, []byte{0x90, 0x80, 0x05, 0x00}, true},
		{"vp8Codec ext 15-bit picture id + tl0 + tid", isVP8Keyframe, []byte{0x90, 0xe0, 0x81, 0x02, 0x07, 0x40, 0x00}, true},
		{"vp8Codec ext inter", isVP8Keyframe, []byte{0x90, 0xe0, 0x81, 0x02, 0x07, 0x40, 0x01}, false},
		{"vp8Codec truncated", isVP8Keyframe, []byte{0x90, 0xe0, 0x81}, false},
		{"vp8Codec empty", isVP8Keyframe, nil, false},
		{"vp9 key start", isVP9Keyframe, []byte{0x08}, true},
		{"vp9 predicted", isVP9Keyframe, []byte{0x48}, false},
		{"vp9 not start", isVP9Keyframe, []byte{0x00}, false},
		{"h264 idr", isH264Keyframe, []byte{0x65}, true},
		{"h264 sps", isH264Keyframe, []byte{0x67}, true},
		{"h264 slice", isH264Keyframe, []byte{0x41}, false},
		{"h264 stap-a with sps", isH264Keyframe, []byte{0x78, 0x00, 0x02, 0x67, 0x42, 0x00, 0x01, 0x68}, true},
		{"h264 stap-a without", isH264Keyframe, []byte{0x78, 0x00, 0x01, 0x41}, false},
		{"h264 stap-a truncated", isH264Keyframe, []byte{0x78, 0x00, 0x09, 0x67}, false},
		{"h264 fu-a idr start", isH264Keyframe, []byte{0x7c, 0x85}, true},
		{"h264 fu-a idr middle", isH264Keyframe, []byte{0x7c, 0x05}, false},
		{"av1 new sequence", isAV1Keyframe, []byte{0x18}, true},
		{"av1 continuation", isAV1Keyframe, []byte{0x10}, false},
	}
	for _, c := range cases {
		if got := c.fn(c.in); got != c.want {
			t.Errorf("%s: %x → %v, want %v", c.name, c.in, got, c.want)
		}
	}
}

func TestKeyframeDetectorByCodec(t *testing.T) {
	if !keyframeDetector(KindAudio, "audio/opus")(nil) {
		t.Fatal("audio must always be forwardable")
	}
	if keyframeDetector(KindVideo, "video/VP8")([]byte{0x10, 0x01}) {
		t.Fatal("VP8 detector not chosen")
	}
	if !keyframeDetector(KindVideo, "video/unknown")([]byte{0x00}) {
		t.Fatal("an unknown codec must not be gated")
	}
}

// FuzzKeyframe feeds arbitrary payloads to every detector: none may
// panic or read out of bounds.
func FuzzKeyframe(f *testing.F) {
	for _, seed := range [][]byte{{0x90, 0xe0, 0x81, 0x02, 0x07, 0x40, 0x00}, {0x78, 0x00, 0x02, 0x67, 0x42}, {0x7c, 0x85}, {0x08}, {0x18}, {}} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		isVP8Keyframe(p)
		isVP9Keyframe(p)
		isH264Keyframe(p)
		isAV1Keyframe(p)
	})
}

// FuzzHandleRTP feeds arbitrary datagrams through the forwarding path to
// a bound subscriber: malformed input is an error, never a panic.
func FuzzHandleRTP(f *testing.F) {
	f.Add([]byte{0x80, 0x60, 0x00, 0x01, 0, 0, 0, 1, 0, 0, 0, 1, 0x10, 0x00})
	f.Add([]byte{0x90, 0x60, 0x00, 0x01, 0, 0, 0, 1, 0, 0, 0, 1, 0xbe, 0xde, 0x00, 0x01, 0x10, 0x85, 0, 0, 0x10, 0x00})
	f.Add([]byte{0xa0, 0x60, 0x00, 0x01, 0, 0, 0, 1, 0, 0, 0, 1, 0x10, 0x00, 0x00, 0x02})
	f.Add([]byte{})
	up := []HeaderExtension{{1, extAudioLevel}, {2, extOrient}}
	down := []HeaderExtension{{3, extAudioLevel}, {14, extOrient}}
	// One SFU for every input, on an injected clock (no control loop):
	// the tracks' state (caches, mungers, meters) carries from one input
	// to the next, as it does for a stream of packets.
	clock := newFakeClock()
	s := New(Options{Now: clock.Now, PacketCache: 16})
	p, _ := s.Join("f", ParticipantInfo{})
	tr, _ := p.Publish(TrackInfo{Kind: KindVideo, Codec: vp8Codec, Extensions: up, Layers: []string{"q", "f"}}, nil)
	audio, _ := p.Publish(TrackInfo{Kind: KindAudio, Codec: opus, Extensions: up}, nil)
	q, _ := s.Join("f", ParticipantInfo{})
	var video *DownTrack
	for _, src := range []*UpTrack{tr, audio} {
		d, _ := q.Subscribe(src)
		d.Bind(Binding{SSRC: 1, PayloadType: 96, RTXSSRC: 2, RTXPayloadType: 97, Extensions: down, Writer: &discardWriter{}})
		if src == tr {
			video = d
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		clock.Advance(10 * time.Millisecond)
		_ = audio.HandleRTP(0, b)
		_ = tr.HandleRTP(1, b)
		if len(b) > 0 && b[0]&1 == 1 {
			s.control(clock.Now())
		}
		_ = tr.HandleRTP(0, b)
		if len(b) >= 4 && b[0]&2 == 2 { // NACK what the input names
			video.HandleRTCP([]rtcp.Packet{&rtcp.TransportLayerNack{Nacks: []rtcp.NackPair{{PacketID: uint16(b[2])<<8 | uint16(b[3]), LostPackets: 0xffff}}}})
		}
	})
}
