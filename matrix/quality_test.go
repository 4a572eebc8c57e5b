package matrix

import (
	"encoding/json"
	"reflect"
	"slices"
	"sync/atomic"
	"testing"

	"maunium.net/go/mautrix/id"

	"github.com/focus-sfu/focus/focus"
	"github.com/focus-sfu/focus/metadata"
)

func TestPublishLayers(t *testing.T) {
	tests := []struct {
		rids   []string
		wanted []bool
		want   []PublishLayer
	}{
		{[]string{"q", "h", "f"}, []bool{true, true, false}, []PublishLayer{{"q", true}, {"h", true}, {"f", false}}},
		{[]string{"q", "h", "f"}, []bool{false, false, false}, []PublishLayer{{"q", false}, {"h", false}, {"f", false}}},
		{nil, []bool{true}, []PublishLayer{{"", true}}},
		{nil, []bool{false}, []PublishLayer{{"", false}}},
	}
	for _, tt := range tests {
		if got := publishLayers(tt.rids, tt.wanted); !slices.Equal(got, tt.want) {
			t.Errorf("publishLayers(%v, %v) = %v, want %v", tt.rids, tt.wanted, got, tt.want)
		}
	}
}

func TestTrackMuted(t *testing.T) {
	own := trackRef{"stream", "cam"}
	tests := []struct {
		name string
		meta metadata.Metadata
		mid  string
		kind focus.Kind
		want bool
	}{
		{"no metadata", nil, "", focus.KindVideo, false},
		{"video muted", metadata.Metadata{"stream": {VideoMuted: true}}, "", focus.KindVideo, true},
		{"audio muted, video not", metadata.Metadata{"stream": {AudioMuted: true}}, "", focus.KindVideo, false},
		{"audio muted", metadata.Metadata{"stream": {AudioMuted: true}}, "", focus.KindAudio, true},
		{"keyed by MID", metadata.Metadata{"3": {VideoMuted: true}}, "3", focus.KindVideo, true},
		{"another stream", metadata.Metadata{"other": {VideoMuted: true}}, "", focus.KindVideo, false},
		{"listed under another stream", metadata.Metadata{"other": {VideoMuted: true, Tracks: map[string]metadata.Track{"cam": {}}}}, "", focus.KindVideo, true},
	}
	for _, tt := range tests {
		if got := trackMuted(tt.meta, own, tt.mid, tt.kind); got != tt.want {
			t.Errorf("%s: muted %v, want %v", tt.name, got, tt.want)
		}
	}
}

// fixedEstimate is a bandwidth estimator that says what the test wants.
type fixedEstimate struct{ bps atomic.Uint64 }

func (f *fixedEstimate) TargetBitrate() uint64 { return f.bps.Load() }

// dcOfType returns the contents of the data-channel messages of typ the
// peer received, oldest first.
func (p *peer) dcOfType(typ string) []json.RawMessage {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []json.RawMessage
	for _, m := range p.dcMsgs {
		if m.Type == typ {
			out = append(out, m.Content)
		}
	}
	return out
}

// lastDC decodes the newest data-channel message of typ into v, and
// reports whether there was one.
func (p *peer) lastDC(typ string, v any) bool {
	msgs := p.dcOfType(typ)
	if len(msgs) == 0 {
		return false
	}
	if err := json.Unmarshal(msgs[len(msgs)-1], v); err != nil {
		p.t.Fatalf("%s: %v", typ, err)
	}
	return true
}

func (h *harness) callOf(user id.UserID, device id.DeviceID) *call {
	h.f.mu.Lock()
	defer h.f.mu.Unlock()
	return h.f.calls[deviceKey{user, device}]
}

// TestQualityMessages: a publisher hears which layers of its camera are
// needed as a subscriber comes; the subscriber hears its subscription
// paused and resumed as its bandwidth falls and rises; a publisher's
// metadata mutes its track in the core; and every call hears the
// conference's speakers, named by the IDs it knows.
func TestQualityMessages(t *testing.T) {
	h := newHarness(t)
	a := h.join("@a:hs", "A", "conf")
	b := h.join("@b:hs", "B", "conf")

	// Nobody watches A's camera: A may stop sending it.
	var pl PublishLayers
	a.waitFor("A's camera unwatched", func() bool {
		return a.lastDC(DCPublishLayers, &pl) && pl.TrackID == "cam-A" && len(pl.Layers) == 1 && !pl.Layers[0].Active
	})
	if pl.StreamID != "stream-A" || pl.Layers[0].RID != "" {
		t.Errorf("publish_layers %+v", pl)
	}
	b.waitFor("A's stream", func() bool { return len(b.lastMetadata()["stream-A"]) == 2 })
	b.sendDC(&TrackSubscription{Subscribe: []SubscribeTrack{{StreamID: "stream-A", TrackID: "cam-A", Width: 320, Height: 180}}})
	a.waitFor("A's camera watched", func() bool {
		return a.lastDC(DCPublishLayers, &pl) && pl.TrackID == "cam-A" && len(pl.Layers) == 1 && pl.Layers[0].Active
	})
	b.waitFor("A's camera", func() bool { return b.packets("cam-A") > 20 })

	// B's bandwidth falls below the camera's bitrate, then recovers.
	est := &fixedEstimate{}
	est.bps.Store(1000)
	bc := h.callOf("@b:hs", "B")
	bc.part.SetBandwidthEstimator(est)
	var st SubscriptionState
	b.waitFor("the camera paused", func() bool { return b.lastDC(DCSubscriptionState, &st) && st.Paused })
	if st != (SubscriptionState{StreamID: "stream-A", TrackID: "cam-A", Paused: true}) {
		t.Errorf("subscription_state %+v", st)
	}
	est.bps.Store(50_000_000)
	b.waitFor("the camera resumed", func() bool { return b.lastDC(DCSubscriptionState, &st) && !st.Paused })
	n := b.packets("cam-A")
	b.waitFor("A's camera again", func() bool { return b.packets("cam-A") > n+20 })

	// A mutes its camera in its metadata; the core knows.
	ac := h.callOf("@a:hs", "A")
	var cam, mic *focus.UpTrack
	for _, up := range ac.part.Tracks() {
		switch up.ID() {
		case "cam-A":
			cam = up
		case "mic-A":
			mic = up
		}
	}
	if cam == nil || mic == nil {
		t.Fatal("A's tracks are not in the core")
	}
	a.sendDC(&MetadataChanged{Metadata: metadata.Metadata{"stream-A": {Purpose: metadata.PurposeUsermedia, VideoMuted: true}}})
	a.waitFor("the camera muted in the core", cam.Muted)
	if mic.Muted() {
		t.Error("muting the video muted the audio")
	}
	a.sendDC(&MetadataChanged{Metadata: metadata.Metadata{"stream-A": {Purpose: metadata.PurposeUsermedia}}})
	a.waitFor("the camera unmuted in the core", func() bool { return !cam.Muted() })

	// A speaks (the core's detector is tested in focus/; here its event
	// is raised directly): B hears of A by the announced IDs, A by its
	// own; a track of another participant that is no Matrix call is
	// left out.
	conf := ac.part.Conference()
	other, err := h.sfu.Join(conf.ID(), focus.ParticipantInfo{Identity: "whip"})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Leave()
	otherMic, err := other.Publish(focus.TrackInfo{Kind: focus.KindAudio, Codec: focus.Codec{MimeType: "audio/opus", ClockRate: 48000, Channels: 2}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	h.f.onEvent(focus.SpeakersChanged{Conference: conf, Speakers: []focus.Speaker{
		{Participant: other, Track: otherMic, Level: 0.9},
		{Participant: ac.part, Track: mic, Level: 0.5},
		{Participant: ac.part, Track: cam, Level: 0.4}, // a second track of A: left out
	}})
	want := []ActiveSpeaker{{UserID: "@a:hs", DeviceID: "A", StreamID: "stream-A", TrackID: "mic-A", Level: 0.5}}
	for _, p := range []*peer{a, b} {
		var as ActiveSpeakers
		p.waitFor("A speaking", func() bool { return p.lastDC(DCActiveSpeakers, &as) && len(as.Speakers) > 0 })
		if !reflect.DeepEqual(as.Speakers, want) {
			t.Errorf("%s: speakers %+v, want %+v", p.device, as.Speakers, want)
		}
	}
	h.f.onEvent(focus.SpeakersChanged{Conference: conf})
	for _, p := range []*peer{a, b} {
		p.waitFor("nobody speaking", func() bool {
			var as ActiveSpeakers
			return p.lastDC(DCActiveSpeakers, &as) && as.Speakers != nil && len(as.Speakers) == 0
		})
	}
	// The same list again is not sent again.
	before := len(b.dcOfType(DCActiveSpeakers))
	h.f.onEvent(focus.SpeakersChanged{Conference: conf})
	h.f.onEvent(focus.SpeakersChanged{Conference: conf, Speakers: []focus.Speaker{{Participant: ac.part, Track: mic, Level: 0.5}}})
	b.waitFor("A speaking again", func() bool { return len(b.dcOfType(DCActiveSpeakers)) == before+1 })
}
