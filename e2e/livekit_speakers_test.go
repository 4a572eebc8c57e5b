package e2e

import (
	"context"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/livekit/protocol/livekit"
	lksdk "github.com/livekit/server-sdk-go/v2"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/focus-sfu/focus/internal/testclient"
)

// TestLiveKitActiveSpeakers: a Go SDK client publishes Opus whose packets
// carry the RFC 6464 audio level (the SDK writes the ssrc-audio-level
// extension the focus negotiates). While the level is loud, the other
// client's SDK lists it as the active speaker, and so does its own;
// when the level falls to silence, both lists empty.
func TestLiveKitActiveSpeakers(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	env := startLiveKit(t, nil)
	const room = "speakers"
	alice := env.join(ctx, t, "alice", room, lkPublish{})
	bob := env.join(ctx, t, "bob", room, lkPublish{})

	var level atomic.Uint32
	level.Store(127) // silence
	alice.publishLeveledAudio(t, &level)
	waitCond(ctx, t, "bob to receive alice's microphone", func() bool {
		return bob.packets(alice, webrtc.RTPCodecTypeAudio) > 25
	})
	if s := speakerIdentities(bob.room); len(s) != 0 {
		t.Fatalf("speakers at bob while alice is silent: %v", s)
	}

	level.Store(12) // -12 dBov: talking
	for _, p := range []*lkPeer{bob, alice} {
		waitCond(ctx, t, p.name+" to list alice as the speaker", func() bool {
			return slices.Equal(speakerIdentities(p.room), []string{"alice"})
		})
	}
	if l := bob.room.ActiveSpeakers()[0].AudioLevel(); l <= 0 || l > 1 {
		t.Errorf("alice's level at bob: %v, want in (0, 1]", l)
	}

	level.Store(127)
	for _, p := range []*lkPeer{bob, alice} {
		waitCond(ctx, t, p.name+" to list nobody", func() bool { return len(speakerIdentities(p.room)) == 0 })
	}
}

func speakerIdentities(r *lksdk.Room) []string {
	var out []string
	for _, p := range r.ActiveSpeakers() {
		out = append(out, p.Identity())
	}
	return out
}

// publishLeveledAudio publishes an Opus microphone that sends a 20 ms
// packet every 20 ms with the audio level in level (0 loudest, 127
// silence), until the peer leaves.
func (p *lkPeer) publishLeveledAudio(t *testing.T, level *atomic.Uint32) {
	t.Helper()
	track, err := lksdk.NewLocalTrack(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2})
	if err != nil {
		t.Fatal(err)
	}
	l := &lkLayer{interval: 20 * time.Millisecond, size: 120, session: rand.Uint32(), track: track}
	pub, err := p.room.LocalParticipant.PublishTrack(track, &lksdk.TrackPublicationOptions{Name: "mic", Source: livekit.TrackSource_MICROPHONE})
	if err != nil {
		t.Fatalf("%s: publish audio: %v", p.name, err)
	}
	p.senders[webrtc.RTPCodecTypeAudio] = &lkSender{kind: webrtc.RTPCodecTypeAudio, layers: []*lkLayer{l}, pub: pub}
	stop := make(chan struct{})
	var done sync.WaitGroup
	done.Add(1)
	go func() {
		defer done.Done()
		tick := time.NewTicker(l.interval)
		defer tick.Stop()
		pkt := &rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: uint16(rand.Uint32()), Timestamp: rand.Uint32()}}
		var buf []byte
		for counter := uint32(0); ; counter++ {
			select {
			case <-stop:
				return
			case <-p.stop:
				return
			case <-tick.C:
			}
			buf = testclient.AppendOpus(buf[:0], l.size, testclient.Marker{Session: l.session, Counter: counter, Sent: time.Now()})
			pkt.Payload = buf
			lvl := uint8(level.Load())
			_ = track.WriteRTP(pkt, &lksdk.SampleWriteOptions{AudioLevel: &lvl})
			l.sent.Add(1)
			pkt.SequenceNumber++
			pkt.Timestamp += 960
		}
	}()
	t.Cleanup(func() { close(stop); done.Wait() })
	p.event("published leveled audio %s", pub.SID())
}
