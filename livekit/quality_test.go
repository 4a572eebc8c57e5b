package livekit

import (
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/livekit/protocol/livekit"
	lksdk "github.com/livekit/server-sdk-go/v2"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/rs/zerolog"

	"github.com/focus-sfu/focus/focus"
)

// The media-quality messages: speakers_changed, stream_state_update and
// the caps a subscriber's track_setting puts on the layer.

func TestSpeakerUpdates(t *testing.T) {
	a := &livekit.SpeakerInfo{Sid: "PA_a", Level: 0.8, Active: true}
	b := &livekit.SpeakerInfo{Sid: "PA_b", Level: 0.3, Active: true}
	off := func(sid string) *livekit.SpeakerInfo { return &livekit.SpeakerInfo{Sid: sid} }
	tests := []struct {
		name    string
		current []*livekit.SpeakerInfo
		told    map[string]bool
		want    []*livekit.SpeakerInfo
	}{
		{"nobody, nobody told", nil, nil, nil},
		{"first speaker", []*livekit.SpeakerInfo{a}, nil, []*livekit.SpeakerInfo{a}},
		{"a second one: both, for their levels", []*livekit.SpeakerInfo{b, a}, map[string]bool{"PA_a": true}, []*livekit.SpeakerInfo{b, a}},
		{"one stops", []*livekit.SpeakerInfo{a}, map[string]bool{"PA_a": true, "PA_b": true}, []*livekit.SpeakerInfo{a, off("PA_b")}},
		{"everyone stops, in sid order", nil, map[string]bool{"PA_c": true, "PA_a": true, "PA_b": true}, []*livekit.SpeakerInfo{off("PA_a"), off("PA_b"), off("PA_c")}},
	}
	for _, tt := range tests {
		got := speakerUpdates(tt.current, tt.told)
		if !slices.EqualFunc(got, tt.want, func(x, y *livekit.SpeakerInfo) bool {
			return x.Sid == y.Sid && x.Level == y.Level && x.Active == y.Active
		}) {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestLayerSizes(t *testing.T) {
	qhf := []string{"q", "h", "f"}
	declared := &livekit.TrackInfo{Width: 1280, Height: 720, Layers: []*livekit.VideoLayer{
		{Quality: livekit.VideoQuality_HIGH, Width: 1280, Height: 720},
		{Quality: livekit.VideoQuality_LOW, Width: 320, Height: 180},
		{Quality: livekit.VideoQuality_MEDIUM, Width: 640, Height: 360},
	}}
	sz := func(w, h uint32) focus.Size { return focus.Size{Width: w, Height: h} }
	tests := []struct {
		name string
		info *livekit.TrackInfo
		rids []string
		want []focus.Size
	}{
		{"declared, by quality", declared, qhf, []focus.Size{sz(320, 180), sz(640, 360), sz(1280, 720)}},
		{"in the RIDs' order", declared, []string{"f", "h", "q"}, []focus.Size{sz(1280, 720), sz(640, 360), sz(320, 180)}},
		{"two layers", declared, []string{"q", "h"}, []focus.Size{sz(320, 180), sz(640, 360)}},
		{"by RID before quality", &livekit.TrackInfo{Layers: []*livekit.VideoLayer{
			{Quality: livekit.VideoQuality_LOW, Width: 100, Height: 50, Rid: "h"},
			{Quality: livekit.VideoQuality_MEDIUM, Width: 400, Height: 200, Rid: "q"},
		}}, []string{"q", "h"}, []focus.Size{sz(400, 200), sz(100, 50)}},
		{"from the track's size", &livekit.TrackInfo{Width: 1280, Height: 720}, qhf, []focus.Size{sz(320, 180), sz(640, 360), sz(1280, 720)}},
		{"from the first codec's layers", &livekit.TrackInfo{Codecs: []*livekit.SimulcastCodecInfo{{Layers: declared.Layers}}}, qhf,
			[]focus.Size{sz(320, 180), sz(640, 360), sz(1280, 720)}},
		{"single layer", &livekit.TrackInfo{Width: 640, Height: 360}, nil, []focus.Size{sz(640, 360)}},
		{"unknown", nil, qhf, []focus.Size{{}, {}, {}}},
	}
	for _, tt := range tests {
		if got := layerSizes(tt.info, tt.rids); !slices.Equal(got, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestSettingCaps: a size caps the layer by the declared layer sizes, a
// quality by name, and each setting clears the other's cap: the core's
// demand follows the latest setting alone.
func TestSettingCaps(t *testing.T) {
	e := newSigEnv(t, nil)
	demand := make(chan []bool, 64)
	defer e.sfu.OnEvent(func(ev focus.Event) {
		if d, ok := ev.(focus.DemandChanged); ok {
			demand <- d.Wanted
		}
	})()
	conf := conferenceID("caps")
	pub, err := e.sfu.Join(conf, focus.ParticipantInfo{ID: "PA_pub"})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Leave()
	up, err := pub.Publish(focus.TrackInfo{ID: "TR_cam", Kind: focus.KindVideo, Codec: focus.Codec{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000},
		Layers: []string{"q", "h", "f"}}, nopRTCP{})
	if err != nil {
		t.Fatal(err)
	}
	up.SetLayerSizes(layerSizes(&livekit.TrackInfo{Width: 1280, Height: 720}, up.Info().Layers))
	sub, err := e.sfu.Join(conf, focus.ParticipantInfo{ID: "PA_sub"})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Leave()
	down, err := sub.Subscribe(up)
	if err != nil {
		t.Fatal(err)
	}
	p := &participant{
		s: e.srv, room: newRoom("caps", time.Now()), log: zerolog.Nop(),
		subs:     map[string]*subscription{"TR_cam": {up: up, down: down}},
		settings: map[string]*livekit.UpdateTrackSettings{},
	}
	expect := func(what string, want []bool) {
		t.Helper()
		deadline := time.After(5 * time.Second)
		var last []bool
		for {
			select {
			case w := <-demand:
				if last = w; slices.Equal(w, want) {
					return
				}
			case <-deadline:
				t.Fatalf("%s: demand %v, want %v", what, last, want)
			}
		}
	}
	// A track starts with every layer wanted; the first change shows.
	for _, step := range []struct {
		what string
		st   *livekit.UpdateTrackSettings
		want []bool
	}{
		{"small size", &livekit.UpdateTrackSettings{Width: 320, Height: 180}, []bool{true, false, false}},
		{"medium quality clears the size", &livekit.UpdateTrackSettings{Quality: livekit.VideoQuality_MEDIUM}, []bool{true, true, false}},
		{"large size clears the quality", &livekit.UpdateTrackSettings{Width: 1280, Height: 720, Quality: livekit.VideoQuality_LOW}, []bool{true, true, true}},
		{"low quality", &livekit.UpdateTrackSettings{Quality: livekit.VideoQuality_LOW}, []bool{true, false, false}},
		{"a bit above small", &livekit.UpdateTrackSettings{Width: 330, Height: 186}, []bool{true, true, false}},
		{"disabled", &livekit.UpdateTrackSettings{Disabled: true, Width: 330, Height: 186}, []bool{false, false, false}},
	} {
		step.st.TrackSids = []string{"TR_cam"}
		p.onTrackSetting(step.st)
		expect(step.what, step.want)
	}
}

type nopRTCP struct{}

func (nopRTCP) WriteRTCP([]rtcp.Packet) error { return nil }

// fixedEstimate is a bandwidth estimator that says what the test wants.
type fixedEstimate struct{ bps atomic.Uint64 }

func (f *fixedEstimate) TargetBitrate() uint64 { return f.bps.Load() }

// speakingAudio publishes an Opus microphone whose packets carry the RFC
// 6464 audio level in level (0 loudest, 127 silence), until the test
// ends.
func (c *lkClient) speakingAudio(level *atomic.Uint32) *lksdk.LocalTrackPublication {
	c.t.Helper()
	track, err := lksdk.NewLocalTrack(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2})
	if err != nil {
		c.t.Fatal(err)
	}
	pub, err := c.room.LocalParticipant.PublishTrack(track, &lksdk.TrackPublicationOptions{Name: "mic", Source: livekit.TrackSource_MICROPHONE})
	if err != nil {
		c.t.Fatalf("%s: publish audio: %v", c.name, err)
	}
	stop := make(chan struct{})
	var done sync.WaitGroup
	done.Add(1)
	go func() {
		defer done.Done()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		pkt := &rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: uint16(rand.Uint32()), Timestamp: rand.Uint32()}, Payload: make([]byte, 60)}
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			lvl := uint8(level.Load())
			_ = track.WriteRTP(pkt, &lksdk.SampleWriteOptions{AudioLevel: &lvl})
			pkt.SequenceNumber++
			pkt.Timestamp += 960
		}
	}()
	c.t.Cleanup(func() { close(stop); done.Wait() })
	return pub
}

func speakerSIDs(r *lksdk.Room) []string {
	var out []string
	for _, p := range r.ActiveSpeakers() {
		out = append(out, p.SID())
	}
	return out
}

// TestSpeakersChanged: a participant whose microphone carries loud audio
// levels becomes an active speaker for the others and for itself, and
// stops being one when its levels fall silent.
func TestSpeakersChanged(t *testing.T) {
	e := newSigEnv(t, nil)
	alice := e.connect("alice", "room")
	bob := e.connect("bob", "room")
	var level atomic.Uint32
	level.Store(127)
	alice.speakingAudio(&level)
	eventually(t, 20*time.Second, "bob receives alice's microphone", func() bool { return bob.received("alice", "audio") > 10 })
	if s := speakerSIDs(bob.room); len(s) != 0 {
		t.Fatalf("speakers while alice is silent: %v", s)
	}
	aliceSID := alice.room.LocalParticipant.SID()
	level.Store(10) // -10 dBov: talking
	eventually(t, 10*time.Second, "bob hears alice speak", func() bool {
		return slices.Equal(speakerSIDs(bob.room), []string{aliceSID})
	})
	eventually(t, 5*time.Second, "alice sees herself speak", func() bool {
		return slices.Equal(speakerSIDs(alice.room), []string{aliceSID})
	})
	if l := bob.room.ActiveSpeakers()[0].AudioLevel(); l <= 0 || l > 1 {
		t.Errorf("alice's level at bob: %v", l)
	}

	// A late joiner is told who speaks now.
	carol := e.connect("carol", "room")
	eventually(t, 10*time.Second, "carol hears alice speak", func() bool {
		return slices.Equal(speakerSIDs(carol.room), []string{aliceSID})
	})

	level.Store(127)
	eventually(t, 10*time.Second, "alice stops speaking for bob", func() bool { return len(speakerSIDs(bob.room)) == 0 })
	eventually(t, 5*time.Second, "alice stops speaking for herself", func() bool { return len(speakerSIDs(alice.room)) == 0 })
}

// TestStreamStateUpdate: a subscriber whose bandwidth no longer carries
// a video track is told it is paused, and active again when it does.
func TestStreamStateUpdate(t *testing.T) {
	e := newSigEnv(t, nil)
	alice := e.connect("alice", "room")
	pub := alice.publish()
	raw := dialRaw(t, e, sigToken(t, "bob", "room", time.Hour, nil), "")
	bob := newRTCClient(t, raw)
	bob.attach(raw)
	aliceSID := alice.room.LocalParticipant.SID()
	bob.pump(20*time.Second, true, func(*livekit.SignalResponse) bool {
		return bob.sub.ConnectionState() == webrtc.PeerConnectionStateConnected && bob.packets(aliceSID) > 20
	})
	est := &fixedEstimate{}
	est.bps.Store(1000)
	p := e.srv.findParticipant("room", "bob")
	if p == nil {
		t.Fatal("bob is not in the room")
	}
	p.part.SetBandwidthEstimator(est)
	state := func(want livekit.StreamState) func(*livekit.SignalResponse) bool {
		return func(r *livekit.SignalResponse) bool {
			for _, s := range r.GetStreamStateUpdate().GetStreamStates() {
				if s.GetTrackSid() == pub.video.SID() {
					if s.GetParticipantSid() != aliceSID {
						t.Errorf("stream state names participant %q, want %q", s.GetParticipantSid(), aliceSID)
					}
					return s.GetState() == want
				}
			}
			return false
		}
	}
	bob.pump(10*time.Second, true, state(livekit.StreamState_PAUSED))
	est.bps.Store(50_000_000)
	bob.pump(10*time.Second, true, state(livekit.StreamState_ACTIVE))
}

// TestPublisherStateReachesCore: the sizes a publisher declares for its
// layers, and its mute, reach the core's track.
func TestPublisherStateReachesCore(t *testing.T) {
	e := newSigEnv(t, nil)
	alice := e.connect("alice", "room")
	vpub := alice.publishSimulcast()
	var up *focus.UpTrack
	eventually(t, 20*time.Second, "alice's camera is in the core", func() bool {
		if c := e.sfu.Conference(conferenceID("room")); c != nil {
			for _, t := range c.Tracks() {
				if string(t.ID()) == vpub.SID() && t.Layers() == 3 {
					up = t
				}
			}
		}
		return up != nil
	})
	want := []focus.Size{{Width: 320, Height: 180}, {Width: 640, Height: 360}, {Width: 1280, Height: 720}}
	for i, w := range want {
		if got := up.LayerSize(i); got != w {
			t.Errorf("layer %d (%s): size %v, want %v", i, up.Info().Layers[i], got, w)
		}
	}
	vpub.SetMuted(true)
	eventually(t, 5*time.Second, "the core sees the camera muted", up.Muted)
	vpub.SetMuted(false)
	eventually(t, 5*time.Second, "the core sees the camera unmuted", func() bool { return !up.Muted() })
}
