package rtc

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/rs/zerolog"

	"github.com/focus-sfu/focus/focus"
)

// BenchmarkForwardThroughPion forwards packets from an UpTrack to one
// subscriber over a real, connected pion PeerConnection: rewriting,
// interceptors, SRTP and the UDP send. The core's share allocates
// nothing (focus.BenchmarkForward); what this reports per op is pion's.
func BenchmarkForwardThroughPion(b *testing.B) {
	e, _, up, d := videoSubscription(b)

	// The subscriber: a plain pion peer that offers to receive VP8.
	viewer := plainPeer(b)
	if _, err := viewer.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
		b.Fatal(err)
	}
	received := make(chan struct{}, 1)
	viewer.OnTrack(func(t *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		buf := make([]byte, 1500)
		for {
			if _, _, err := t.Read(buf); err != nil {
				return
			}
			select {
			case received <- struct{}{}:
			default:
			}
		}
	})
	focusPC, err := e.NewPeerConnection()
	if err != nil {
		b.Fatal(err)
	}
	defer focusPC.Close()
	lt := NewLocalTrack(d, "video", "bench", focusPC, zerolog.Nop())
	negotiate(b, viewer, focusPC.PeerConnection, func() {
		if _, err := focusPC.AddTrack(lt); err != nil {
			b.Fatal(err)
		}
	})

	payload := append([]byte{0x10, 0x00, 0x9d, 0x01, 0x2a}, make([]byte, 1000)...)
	bufs := make([][]byte, 64)
	for i := range bufs {
		p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: uint16(i), Timestamp: uint32(i * 3000), SSRC: 1}, Payload: payload}
		bufs[i], _ = p.Marshal()
	}
	deadline := time.Now().Add(10 * time.Second)
	seq := uint16(0)
	next := func(buf []byte) []byte { // the core drops a sequence number it has seen
		binary.BigEndian.PutUint16(buf[2:4], seq)
		seq++
		return buf
	}
	for i := 0; ; i++ { // the keyframe starts the subscriber
		_ = up.HandleRTP(0, next(bufs[0]))
		select {
		case <-received:
		case <-time.After(50 * time.Millisecond):
			if time.Now().After(deadline) {
				b.Fatal("subscriber never received a packet")
			}
			continue
		}
		break
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		_ = up.HandleRTP(0, next(bufs[1+i%63]))
	}
}

// videoSubscription is an Engine on loopback and, in an SFU of its own,
// a VP8 track with one subscription to it; all closed when the test
// ends.
func videoSubscription(tb testing.TB) (*Engine, *focus.SFU, *focus.UpTrack, *focus.DownTrack) {
	tb.Helper()
	e, err := New(Config{BindAddress: "127.0.0.1"}, zerolog.Nop())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = e.Close() })
	sfu := focus.New(focus.Options{})
	tb.Cleanup(sfu.Close)
	pub, _ := sfu.Join("c", focus.ParticipantInfo{})
	up, _ := pub.Publish(focus.TrackInfo{Kind: focus.KindVideo, Codec: focusCodec(Codecs[1])}, nil)
	sub, _ := sfu.Join("c", focus.ParticipantInfo{})
	d, _ := sub.Subscribe(up)
	return e, sfu, up, d
}

// plainPeer is a pion PeerConnection with pion's defaults, on loopback
// UDP: a client, not the focus. configure, if any, changes its settings
// further. It is closed when the test ends.
func plainPeer(tb testing.TB, configure ...func(*webrtc.SettingEngine) error) *webrtc.PeerConnection {
	tb.Helper()
	var se webrtc.SettingEngine
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	for _, c := range configure {
		if err := c(&se); err != nil {
			tb.Fatal(err)
		}
	}
	pc, err := webrtc.NewAPI(webrtc.WithSettingEngine(se)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = pc.Close() })
	return pc
}

// negotiate runs one offer and answer between two local peers, each
// description with all its candidates; beforeAnswer, if not nil, runs
// once the answerer has the offer (to add tracks to the answer).
func negotiate(tb testing.TB, offerer, answerer *webrtc.PeerConnection, beforeAnswer func()) {
	tb.Helper()
	offer, err := offerer.CreateOffer(nil)
	if err != nil {
		tb.Fatal(err)
	}
	g := webrtc.GatheringCompletePromise(offerer)
	if err := offerer.SetLocalDescription(offer); err != nil {
		tb.Fatal(err)
	}
	<-g
	if err := answerer.SetRemoteDescription(*offerer.LocalDescription()); err != nil {
		tb.Fatal(err)
	}
	if beforeAnswer != nil {
		beforeAnswer()
	}
	ans, err := answerer.CreateAnswer(nil)
	if err != nil {
		tb.Fatal(err)
	}
	g = webrtc.GatheringCompletePromise(answerer)
	if err := answerer.SetLocalDescription(ans); err != nil {
		tb.Fatal(err)
	}
	<-g
	if err := offerer.SetRemoteDescription(*answerer.LocalDescription()); err != nil {
		tb.Fatal(err)
	}
}
