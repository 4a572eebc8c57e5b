package focus

import (
	"sync"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

// fakeClock is a manual clock for tests.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Unix(1_700_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// rtcpRecorder records RTCP sent upstream or downstream.
type rtcpRecorder struct {
	mu   sync.Mutex
	pkts []rtcp.Packet
}

func (r *rtcpRecorder) WriteRTCP(p []rtcp.Packet) error {
	r.mu.Lock()
	r.pkts = append(r.pkts, p...)
	r.mu.Unlock()
	return nil
}

func (r *rtcpRecorder) plis() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, p := range r.pkts {
		if _, ok := p.(*rtcp.PictureLossIndication); ok {
			n++
		}
	}
	return n
}

func (r *rtcpRecorder) senderReports() []*rtcp.SenderReport {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*rtcp.SenderReport
	for _, p := range r.pkts {
		if sr, ok := p.(*rtcp.SenderReport); ok {
			out = append(out, sr)
		}
	}
	return out
}

// rtpRecorder records what a subscriber would receive.
type rtpRecorder struct {
	mu   sync.Mutex
	pkts []rtp.Packet
}

func (r *rtpRecorder) WriteRTP(h *rtp.Header, payload []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := rtp.Packet{Header: *h, Payload: append([]byte(nil), payload...)}
	p.Header.CSRC = append([]uint32(nil), h.CSRC...)
	p.Header.Extensions = nil
	p.Header.Extension = false
	for _, id := range h.GetExtensionIDs() {
		_ = p.Header.SetExtension(id, append([]byte(nil), h.GetExtension(id)...))
	}
	r.pkts = append(r.pkts, p)
	return len(payload), nil
}

func (r *rtpRecorder) packets() []rtp.Packet {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]rtp.Packet(nil), r.pkts...)
}

var (
	vp8Codec = Codec{MimeType: "video/VP8", ClockRate: 90000}
	opus     = Codec{MimeType: "audio/opus", ClockRate: 48000, Channels: 2}
)

const (
	extAudioLevel = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
	extTWCC       = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"
	extMid        = "urn:ietf:params:rtp-hdrext:sdes:mid"
	extOrient     = "urn:3gpp:video-orientation"
)

// vp8Payload returns a VP8 RTP payload: a descriptor with the S bit and
// a payload header marking a keyframe or an interframe.
func vp8Payload(keyframe bool, body ...byte) []byte {
	hdr := byte(0x01) // P=1: interframe
	if keyframe {
		hdr = 0x00
	}
	return append([]byte{0x10, hdr, 0x9d, 0x01, 0x2a}, body...)
}

// packet marshals an RTP packet for HandleRTP.
func packet(t testing.TB, ssrc uint32, seq uint16, ts uint32, payload []byte, exts map[uint8][]byte) []byte {
	t.Helper()
	p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: seq, Timestamp: ts, SSRC: ssrc}, Payload: payload}
	for id, v := range exts {
		if err := p.Header.SetExtension(id, v); err != nil {
			t.Fatal(err)
		}
	}
	b, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type fixture struct {
	sfu   *SFU
	clock *fakeClock
	pub   *Participant
	up    *UpTrack
	upRTC *rtcpRecorder
}

func newFixture(t *testing.T, codec Codec, kind Kind, upExts []HeaderExtension) *fixture {
	t.Helper()
	clock := newFakeClock()
	s := New(Options{Now: clock.Now})
	pub, err := s.Join("c", ParticipantInfo{Identity: "pub"})
	if err != nil {
		t.Fatal(err)
	}
	rec := &rtcpRecorder{}
	up, err := pub.Publish(TrackInfo{Kind: kind, Codec: codec, Extensions: upExts}, rec)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{sfu: s, clock: clock, pub: pub, up: up, upRTC: rec}
}

func (f *fixture) subscriber(t *testing.T, src *UpTrack, exts []HeaderExtension) (*DownTrack, *rtpRecorder, *rtcpRecorder) {
	t.Helper()
	p, err := f.sfu.Join("c", ParticipantInfo{Identity: "sub"})
	if err != nil {
		t.Fatal(err)
	}
	d, err := p.Subscribe(src)
	if err != nil {
		t.Fatal(err)
	}
	w, r := &rtpRecorder{}, &rtcpRecorder{}
	d.Bind(Binding{SSRC: 0xdddd0000 + uint32(len(f.sfu.Conferences())), PayloadType: 100, Extensions: exts, Writer: w, RTCP: r})
	return d, w, r
}
