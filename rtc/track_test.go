package rtc

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/rs/zerolog"

	"github.com/focus-sfu/focus/focus"
	"github.com/focus-sfu/focus/focus/vp8"
)

// TestReceiveLayer: a track without a RID fed to layer 2 of a simulcast
// track lands on that layer (its keyframes' size is layer 2's, the
// others have none), with rewrite applied to every packet; a layer the
// track does not have is refused at once.
func TestReceiveLayer(t *testing.T) {
	e, err := New(Config{BindAddress: "127.0.0.1"}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	sfu := focus.New(focus.Options{})
	defer sfu.Close()
	pub, err := sfu.Join("r", focus.ParticipantInfo{})
	if err != nil {
		t.Fatal(err)
	}
	up, err := pub.Publish(focus.TrackInfo{ID: "v", Kind: focus.KindVideo, Codec: focusCodec(Codecs[1]), Layers: []string{"q", "h", "f"}}, nil)
	if err != nil {
		t.Fatal(err)
	}

	done := make(chan struct{})
	go func() {
		defer close(done)
		ReceiveLayer(up, 3, nil, nil, nil, zerolog.Nop())
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("ReceiveLayer of a layer the track does not have did not return")
	}

	// The sender: a plain pion peer with one VP8 track, no RID.
	sender := plainPeer(t)
	local, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "v", "s")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sender.AddTrack(local); err != nil {
		t.Fatal(err)
	}
	receiver, err := e.NewPeerConnection()
	if err != nil {
		t.Fatal(err)
	}
	var rewritten atomic.Int64
	var wg sync.WaitGroup
	receiver.OnTrack(func(track *webrtc.TrackRemote, recv *webrtc.RTPReceiver) {
		wg.Add(1)
		defer wg.Done()
		ReceiveLayer(up, 2, track, recv, func([]byte) { rewritten.Add(1) }, zerolog.Nop())
	})
	negotiate(t, sender, receiver.PeerConnection, nil)

	// Keyframes of 1280x720 until layer 2 knows its size.
	payload := vp8.AppendFrameHeader([]byte{0x10}, true, 1280, 720)
	payload = append(payload, make([]byte, 100)...)
	deadline := time.Now().Add(10 * time.Second)
	for seq := uint16(0); up.LayerSize(2) == (focus.Size{}); seq++ {
		if time.Now().After(deadline) {
			t.Fatal("layer 2 never saw a keyframe")
		}
		p := &rtp.Packet{Header: rtp.Header{Version: 2, Marker: true, SequenceNumber: seq, Timestamp: uint32(seq) * 3000}, Payload: payload}
		if err := local.WriteRTP(p); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if s := up.LayerSize(2); s != (focus.Size{Width: 1280, Height: 720}) {
		t.Errorf("layer 2 size %v", s)
	}
	for _, i := range []int{0, 1} {
		if s := up.LayerSize(i); s != (focus.Size{}) {
			t.Errorf("layer %d size %v, want none", i, s)
		}
	}
	if rewritten.Load() == 0 {
		t.Error("rewrite saw no packet")
	}
	if err := receiver.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
}
