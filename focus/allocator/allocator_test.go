package allocator

import (
	"fmt"
	"testing"
)

// Test fixtures: a three-layer simulcast camera, audio and a two-layer
// screen share, with the bitrates of the contract's examples.
func live(rates ...uint64) []Layer {
	ls := make([]Layer, len(rates))
	for i, r := range rates {
		ls[i] = Layer{Bitrate: r, Live: true}
	}
	return ls
}

func audio() Track {
	return Track{Priority: PriorityAudio, Layers: live(64_000), MaxLayer: 0, Current: 0}
}

func video(p Priority, maxLayer, current int) Track {
	return Track{Priority: p, Layers: live(150_000, 500_000, 1_500_000), MaxLayer: maxLayer, Current: current}
}

func screen(current int) Track {
	return Track{Priority: PriorityScreen, Layers: live(300_000, 1_200_000), MaxLayer: 1, Current: current}
}

var (
	full   = func(l int) Decision { return Decision{Layer: l, Temporal: -1} }
	none   = Decision{Layer: -1, Temporal: -1}
	paused = Decision{Layer: -1, Temporal: -1, Paused: true}
)

func TestAllocate(t *testing.T) {
	tests := []struct {
		name     string
		estimate uint64
		tracks   []Track
		want     []Decision
		used     uint64
		wanted   uint64
	}{
		{
			name:     "everything fits",
			estimate: 10_000_000,
			tracks:   []Track{audio(), screen(-1), video(PrioritySpeaker, 2, -1), video(PriorityVideo, 2, -1)},
			want:     []Decision{full(0), full(1), full(2), full(2)},
			used:     64_000 + 1_200_000 + 1_500_000 + 1_500_000,
			wanted:   64_000 + 1_200_000 + 1_500_000 + 1_500_000,
		},
		{
			name:     "400 kbit/s picks the low layer",
			estimate: 400_000,
			tracks:   []Track{audio(), video(PriorityVideo, 2, -1)},
			want:     []Decision{full(0), full(0)},
			used:     64_000 + 150_000,
			wanted:   64_000 + 1_500_000,
		},
		{
			name:     "MaxLayer caps the upgrade",
			estimate: 10_000_000,
			tracks:   []Track{video(PriorityVideo, 1, -1)},
			want:     []Decision{full(1)},
			used:     500_000,
			wanted:   500_000,
		},
		{
			name: "MaxLayer beyond the layers is capped",
			// A cap the core did not clamp must not index past Layers.
			estimate: 10_000_000,
			tracks:   []Track{video(PriorityVideo, 7, -1)},
			want:     []Decision{full(2)},
			used:     1_500_000,
			wanted:   1_500_000,
		},
		{
			name: "screen share beats the camera",
			// The camera comes first in the input: order of service is by
			// priority, not position. Base: 64k+300k+150k = 514k; the
			// screen's 900k step fits within 1.6M/1.1, then nothing more.
			estimate: 1_600_000,
			tracks:   []Track{audio(), video(PrioritySpeaker, 2, -1), screen(-1)},
			want:     []Decision{full(0), full(0), full(1)},
			used:     64_000 + 150_000 + 1_200_000,
			wanted:   64_000 + 1_500_000 + 1_200_000,
		},
		{
			name: "active speaker beats other video",
			// Base 64k+150k+150k = 364k; the speaker's 1.35M step fits
			// (1.714M*1.1 < 2M), the other one's 350k step then does not.
			estimate: 2_000_000,
			tracks:   []Track{audio(), video(PriorityVideo, 2, -1), video(PrioritySpeaker, 2, -1)},
			want:     []Decision{full(0), full(0), full(2)},
			used:     64_000 + 150_000 + 1_500_000,
			wanted:   64_000 + 2*1_500_000,
		},
		{
			name: "ties keep the input order",
			// Room for one step to the mid layer: the first track gets it.
			estimate: 1_000_000,
			tracks:   []Track{video(PriorityVideo, 2, -1), video(PriorityVideo, 2, -1)},
			want:     []Decision{full(1), full(0)},
			used:     500_000 + 150_000,
			wanted:   2 * 1_500_000,
		},
		{
			name: "every video visible before any is raised",
			// Raising the speaker to the top would leave nothing for the
			// other two; phase 1 gives each its low layer first, then
			// two of them fit the mid layer within 1.4M/1.1.
			estimate: 1_400_000,
			tracks: []Track{
				video(PrioritySpeaker, 2, -1), video(PriorityVideo, 2, -1), video(PriorityVideo, 2, -1),
			},
			want:   []Decision{full(1), full(1), full(0)},
			used:   500_000 + 500_000 + 150_000,
			wanted: 3 * 1_500_000,
		},
		{
			name: "temporal fallback",
			// 64k audio leaves 136k/1.1: the full 150k layer does not fit,
			// TID 0+1 (100k) does.
			estimate: 200_000,
			tracks: []Track{audio(), {
				Priority: PriorityVideo,
				Layers: []Layer{
					{Bitrate: 150_000, Live: true, Temporal: []uint64{50_000, 100_000, 150_000}},
					{Bitrate: 500_000, Live: true, Temporal: []uint64{170_000, 340_000, 500_000}},
				},
				MaxLayer: 1, Current: -1,
			}},
			want:   []Decision{full(0), {Layer: 0, Temporal: 1}},
			used:   64_000 + 100_000,
			wanted: 64_000 + 500_000,
		},
		{
			name:     "temporal fallback skips unknown levels",
			estimate: 200_000,
			tracks: []Track{audio(), {
				Priority: PriorityVideo,
				Layers:   []Layer{{Bitrate: 150_000, Live: true, Temporal: []uint64{50_000, 0, 150_000}}},
				MaxLayer: 0, Current: -1,
			}},
			want:   []Decision{full(0), {Layer: 0, Temporal: 0}},
			used:   64_000 + 50_000,
			wanted: 64_000 + 150_000,
		},
		{
			name:     "paused for bandwidth",
			estimate: 150_000,
			tracks:   []Track{audio(), video(PriorityVideo, 2, -1)},
			want:     []Decision{full(0), paused},
			used:     64_000,
			wanted:   64_000 + 1_500_000,
		},
		{
			name: "audio is served beyond the estimate",
			// Two audio tracks over a 50k estimate: both are forwarded,
			// the video is paused.
			estimate: 50_000,
			tracks:   []Track{video(PriorityScreen, 2, 0), audio(), audio()},
			want:     []Decision{paused, full(0), full(0)},
			used:     2 * 64_000,
			wanted:   2*64_000 + 1_500_000,
		},
		{
			name:     "zero estimate",
			estimate: 0,
			tracks:   []Track{audio(), video(PriorityVideo, 2, 2)},
			want:     []Decision{full(0), paused},
			used:     64_000,
			wanted:   64_000 + 1_500_000,
		},
		{
			name: "non-live mid layer is skipped",
			// 900k would fit the mid layer; it is not live, so low stays.
			estimate: 900_000,
			tracks:   []Track{withLive(video(PriorityVideo, 2, -1), true, false, true)},
			want:     []Decision{full(0)},
			used:     150_000,
			wanted:   1_500_000,
		},
		{
			name:     "non-live top falls back to the highest live below",
			estimate: 10_000_000,
			tracks:   []Track{withLive(video(PriorityVideo, 2, -1), true, true, false)},
			want:     []Decision{full(1)},
			used:     500_000,
			wanted:   500_000,
		},
		{
			name: "no live layer up to MaxLayer falls back to the lowest above",
			// Only the top layer is sent (the publisher's own bandwidth
			// trouble): a low-quality subscriber gets it if it fits.
			estimate: 10_000_000,
			tracks:   []Track{withLive(video(PriorityVideo, 0, -1), false, false, true)},
			want:     []Decision{full(2)},
			used:     1_500_000,
			wanted:   1_500_000,
		},
		{
			name:     "fallback above MaxLayer can be paused too",
			estimate: 1_000_000,
			tracks:   []Track{withLive(video(PriorityVideo, 0, -1), false, false, true)},
			want:     []Decision{paused},
			used:     0,
			wanted:   1_500_000,
		},
		{
			name: "nothing live is not paused",
			// Paused means "for lack of bandwidth"; this track lacks a
			// publisher, not bandwidth.
			estimate: 10_000_000,
			tracks:   []Track{withLive(video(PriorityVideo, 2, 1), false, false, false)},
			want:     []Decision{none},
			used:     0,
			wanted:   0,
		},
		{
			name: "audio not live is still selected",
			// A muted microphone costs nothing; selecting it anyway keeps
			// the first syllable after unmuting.
			estimate: 1_000_000,
			tracks:   []Track{withLive(audio(), false)},
			want:     []Decision{full(0)},
			used:     64_000,
			wanted:   64_000,
		},
		{
			name:     "MaxLayer -1 forwards nothing and is not paused",
			estimate: 10_000_000,
			tracks: []Track{
				{Priority: PriorityAudio, Layers: live(64_000), MaxLayer: -1, Current: 0},
				video(PriorityVideo, -1, 2),
				video(PriorityVideo, 2, -1),
			},
			want:   []Decision{none, none, full(2)},
			used:   1_500_000,
			wanted: 1_500_000,
		},
		{
			name: "unknown bitrates use the defaults",
			// Guessed 64k + 150k + 500k; the 1.5M top guess does not fit.
			estimate: 1_000_000,
			tracks: []Track{
				{Priority: PriorityAudio, Layers: live(0), MaxLayer: 0, Current: -1},
				{Priority: PriorityVideo, Layers: live(0, 0, 0), MaxLayer: 2, Current: -1},
			},
			want:   []Decision{full(0), full(1)},
			used:   DefaultAudioBitrate + DefaultMidBitrate,
			wanted: DefaultAudioBitrate + DefaultHighBitrate,
		},
		{
			name:     "no layers",
			estimate: 1_000_000,
			tracks:   []Track{{Priority: PriorityVideo, MaxLayer: 2, Current: -1}, {Priority: PriorityAudio, Current: -1}},
			want:     []Decision{none, none},
		},
		{
			name:     "priorities above PriorityVideo come last",
			estimate: 1_000_000,
			tracks:   []Track{video(PriorityVideo+3, 2, -1), video(PriorityVideo, 2, -1)},
			want:     []Decision{full(0), full(1)},
			used:     150_000 + 500_000,
			wanted:   2 * 1_500_000,
		},
		{
			name:     "no tracks",
			estimate: 1_000_000,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := make([]Decision, len(tt.tracks))
			r := Allocate(tt.estimate, tt.tracks, out)
			for i := range tt.want {
				if out[i] != tt.want[i] {
					t.Errorf("track %d: got %+v, want %+v", i, out[i], tt.want[i])
				}
			}
			if r.Used != tt.used || r.Wanted != tt.wanted {
				t.Errorf("got %+v, want Used %d Wanted %d", r, tt.used, tt.wanted)
			}
		})
	}
}

func withLive(t Track, live ...bool) Track {
	ls := append([]Layer(nil), t.Layers...)
	for i, l := range live {
		ls[i].Live = l
	}
	t.Layers = ls
	return t
}

// TestHysteresis feeds each decision back as Current while the estimate
// wobbles: the layer changes only when the estimate crosses the far
// threshold (the layer's need plus HeadroomPercent going up, the need
// itself going down), never on every wobble.
func TestHysteresis(t *testing.T) {
	// Audio plus the camera's mid layer: 564k to keep, 620.4k to move up.
	tracks := []Track{audio(), video(PriorityVideo, 2, -1)}
	steps := []struct {
		estimate uint64
		layer    int
	}{
		{600_000, 0}, // mid would fit, but not with headroom
		{615_000, 0},
		{590_000, 0},
		{621_000, 1}, // headroom reached
		{600_000, 1}, // fits without headroom: stays
		{570_000, 1},
		{565_000, 1},
		{615_000, 1},
		{563_000, 0}, // no longer fits
		{600_000, 0},
		{615_000, 0},
		{620_000, 0},
		{625_000, 1},
	}
	out := make([]Decision, len(tracks))
	for i, s := range steps {
		Allocate(s.estimate, tracks, out)
		if out[1].Layer != s.layer {
			t.Fatalf("step %d (estimate %d): layer %d, want %d", i, s.estimate, out[1].Layer, s.layer)
		}
		tracks[1].Current = out[1].Layer
	}
}

// TestHysteresisResume: a paused track needs the headroom to resume, so
// it does not flicker between paused and playing either.
func TestHysteresisResume(t *testing.T) {
	tracks := []Track{video(PriorityVideo, 2, -1)}
	out := make([]Decision, 1)
	for _, s := range []struct {
		estimate uint64
		want     Decision
	}{
		{160_000, paused}, // 150k fits, but resuming needs 165k
		{165_000, full(0)},
		{152_000, full(0)},
		{149_000, full(0)}, // kept: half of it is left (KeepPercent)
		{74_000, paused},
		{160_000, paused},
	} {
		Allocate(s.estimate, tracks, out)
		if out[0] != s.want {
			t.Fatalf("estimate %d: got %+v, want %+v", s.estimate, out[0], s.want)
		}
		tracks[0].Current = out[0].Layer
	}
}

// TestHysteresisNoFlap drives a noisy estimate around each threshold and
// counts layer changes.
func TestHysteresisNoFlap(t *testing.T) {
	// The totals at which a layer starts to fit for audio (64k), the
	// speaker (150k/500k/1.5M) and a camera capped at mid (150k/500k):
	// speaker resumes, camera resumes, speaker to mid, camera to mid,
	// speaker to top.
	for _, centre := range []uint64{214_000, 364_000, 714_000, 1_064_000, 1_714_000} {
		t.Run(fmt.Sprint(centre), func(t *testing.T) {
			tracks := []Track{audio(), video(PrioritySpeaker, 2, -1), video(PriorityVideo, 1, -1)}
			out := make([]Decision, len(tracks))
			changes := 0
			for i := range 200 {
				// ±4 %, deterministic: well inside the 10 % margin.
				wobble := int64(centre) * int64(i*37%9-4) / 100
				Allocate(uint64(int64(centre)+wobble), tracks, out)
				for k := range tracks {
					if i > 0 && out[k].Layer != tracks[k].Current {
						changes++
					}
					tracks[k].Current = out[k].Layer
				}
			}
			if changes > 2 {
				t.Errorf("%d layer changes around %d bit/s", changes, centre)
			}
		})
	}
}

func TestShortOut(t *testing.T) {
	tracks := []Track{audio(), video(PriorityVideo, 2, -1), screen(-1)}
	out := make([]Decision, 1)
	r := Allocate(10_000_000, tracks, out)
	if out[0] != full(0) {
		t.Errorf("out[0] = %+v", out[0])
	}
	if want := uint64(64_000 + 1_500_000 + 1_200_000); r.Used != want || r.Wanted != want {
		t.Errorf("got %+v, want Used and Wanted %d", r, want)
	}
	// A longer out is fine too; the extra entries are left alone.
	long := make([]Decision, 5)
	long[4] = Decision{Layer: 9}
	Allocate(10_000_000, tracks, long)
	if long[2] != full(1) || long[4] != (Decision{Layer: 9}) {
		t.Errorf("long out: %+v", long)
	}
}

func TestDefaultBitrate(t *testing.T) {
	tests := []struct {
		p             Priority
		layer, layers int
		want          uint64
	}{
		{PriorityAudio, 0, 1, DefaultAudioBitrate},
		{PriorityVideo, 0, 1, DefaultHighBitrate},
		{PriorityScreen, 0, 2, DefaultMidBitrate},
		{PriorityScreen, 1, 2, DefaultHighBitrate},
		{PrioritySpeaker, 0, 3, DefaultLowBitrate},
		{PrioritySpeaker, 1, 3, DefaultMidBitrate},
		{PrioritySpeaker, 2, 3, DefaultHighBitrate},
		{PriorityVideo, 0, 4, DefaultLowBitrate},
		{PriorityVideo, 1, 4, DefaultLowBitrate},
	}
	for _, tt := range tests {
		if got := DefaultBitrate(tt.p, tt.layer, tt.layers); got != tt.want {
			t.Errorf("DefaultBitrate(%d, %d, %d) = %d, want %d", tt.p, tt.layer, tt.layers, got, tt.want)
		}
	}
}

func TestWithoutHeadroom(t *testing.T) {
	for _, tt := range []struct{ in, want uint64 }{
		{0, 0},
		{110, 100},
		{1_100_000, 1_000_000},
		{^uint64(0), ^uint64(0) / 110 * 100},
	} {
		got := withoutHeadroom(tt.in)
		if tt.in == ^uint64(0) {
			// No overflow: close to max/1.1, not a wrapped small number.
			if got < tt.want || got > tt.want+100 {
				t.Errorf("withoutHeadroom(max) = %d", got)
			}
			continue
		}
		if got != tt.want {
			t.Errorf("withoutHeadroom(%d) = %d, want %d", tt.in, got, tt.want)
		}
	}
}

// TestWithHeadroom: the estimate WithHeadroom gives is just enough for
// Allocate to move a track up to that total, and one less is not.
func TestWithHeadroom(t *testing.T) {
	for _, b := range []uint64{0, 1, 99, 100, 101, 150_000, 1_234_567, 1_246_450} {
		need := WithHeadroom(b)
		if got := withoutHeadroom(need); got < b {
			t.Errorf("WithHeadroom(%d) = %d allows only %d", b, need, got)
		}
		if b > 0 && withoutHeadroom(need-1) >= b {
			t.Errorf("WithHeadroom(%d) = %d is more than needed", b, need)
		}
		// The allocator agrees: a track on its lowest layer moves up to
		// a top layer costing b at that estimate.
		if b >= 2 {
			tracks := []Track{{Priority: PriorityVideo, Layers: live(1, b), MaxLayer: 1, Current: 0}}
			out := make([]Decision, 1)
			if Allocate(need, tracks, out); out[0].Layer != 1 {
				t.Errorf("at WithHeadroom(%d) = %d the track stays on layer %d", b, need, out[0].Layer)
			}
		}
	}
	if got := WithHeadroom(^uint64(0)); got != ^uint64(0) {
		t.Errorf("WithHeadroom(max) = %d, want it saturated", got)
	}
}

// conference is a subscriber in a 20-track call: audio, a screen share,
// speakers and cameras, some with temporal layers and a non-live layer.
func conference() []Track {
	tracks := make([]Track, 0, 20)
	for i := range 20 {
		var tr Track
		switch {
		case i%3 == 0:
			tr = audio()
		case i == 1:
			tr = screen(1)
		case i < 6:
			tr = video(PrioritySpeaker, 2, 1)
		default:
			tr = video(PriorityVideo, 1, 0)
		}
		if tr.Priority != PriorityAudio {
			tr.Layers[0].Temporal = []uint64{50_000, 100_000, 150_000}
		}
		if i == 7 {
			tr.Layers[1].Live = false
		}
		tracks = append(tracks, tr)
	}
	return tracks
}

func TestAllocateAllocs(t *testing.T) {
	tracks := conference()
	out := make([]Decision, len(tracks))
	for _, estimate := range []uint64{0, 300_000, 2_500_000, 100_000_000} {
		if n := testing.AllocsPerRun(100, func() { Allocate(estimate, tracks, out) }); n != 0 {
			t.Errorf("estimate %d: %v allocs per run, want 0", estimate, n)
		}
	}
}

func BenchmarkAllocate(b *testing.B) {
	tracks := conference()
	out := make([]Decision, len(tracks))
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		Allocate(uint64(1_000_000+i%8*500_000), tracks, out)
	}
}

// FuzzAllocate checks the invariants for any input: decisions in range,
// video never on a non-live layer, Used the sum of the decisions and
// within the estimate unless audio alone exceeds it or a kept layer
// (KeepPercent) overshoots it by at most the part of it not left.
func FuzzAllocate(f *testing.F) {
	f.Add(uint64(400_000), []byte{0, 1, 0, 1, 64, 3, 2, 0xff, 7, 15, 3, 1, 50, 150})
	f.Add(uint64(0), []byte{3, 3, 2, 2, 0, 0, 0, 1, 2, 3})
	f.Add(uint64(1<<63), []byte{1, 2, 1, 0, 255, 255, 1, 9})
	f.Fuzz(func(t *testing.T, estimate uint64, data []byte) {
		tracks := tracksFrom(data)
		out := make([]Decision, len(tracks))
		r := Allocate(estimate, tracks, out)

		var used, audioUsed, slack uint64
		for i, d := range out {
			tr := &tracks[i]
			if d.Layer < -1 || d.Layer >= len(tr.Layers) {
				t.Fatalf("track %d: layer %d of %d", i, d.Layer, len(tr.Layers))
			}
			if d.Layer < 0 {
				if d.Temporal != -1 {
					t.Fatalf("track %d: no layer but temporal %d", i, d.Temporal)
				}
				if d.Paused && (tr.MaxLayer < 0 || tr.Priority == PriorityAudio) {
					t.Fatalf("track %d: paused though unwanted or audio: %+v", i, tr)
				}
				continue
			}
			if d.Paused {
				t.Fatalf("track %d: paused with layer %d", i, d.Layer)
			}
			if tr.MaxLayer < 0 {
				t.Fatalf("track %d: unwanted but got layer %d", i, d.Layer)
			}
			c := cost(tr, d.Layer)
			if d.Temporal >= 0 {
				c = tr.Layers[d.Layer].Temporal[d.Temporal]
			}
			if tr.Priority == PriorityAudio {
				audioUsed += c
			} else if !tr.Layers[d.Layer].Live {
				t.Fatalf("track %d: non-live layer %d", i, d.Layer)
			}
			if tr.Priority != PriorityAudio && tr.Current >= d.Layer && d.Temporal < 0 {
				slack = max(slack, c-c*KeepPercent/100)
			}
			used += c
		}
		if used != r.Used {
			t.Fatalf("Used %d, decisions sum to %d", r.Used, used)
		}
		if used > addSat(max(estimate, audioUsed), slack) {
			t.Fatalf("Used %d over estimate %d (audio %d)", used, estimate, audioUsed)
		}
		// Deterministic, and out's previous contents do not matter.
		again := make([]Decision, len(tracks))
		for i := range again {
			again[i] = Decision{Layer: 5, Temporal: 5, Paused: true}
		}
		if r2 := Allocate(estimate, tracks, again); r2 != r {
			t.Fatalf("second run %+v, first %+v", r2, r)
		}
		for i := range out {
			if out[i] != again[i] {
				t.Fatalf("track %d: %+v then %+v", i, out[i], again[i])
			}
		}
	})
}

// tracksFrom decodes fuzz bytes: per track a header byte (priority in the
// low 2 bits plus 2 extra bits, layer count), MaxLayer, Current, then per
// layer a flags byte and a bitrate byte in units of 10 kbit/s.
func tracksFrom(data []byte) []Track {
	var tracks []Track
	next := func() (byte, bool) {
		if len(data) == 0 {
			return 0, false
		}
		b := data[0]
		data = data[1:]
		return b, true
	}
	for len(tracks) < 32 {
		h, ok := next()
		if !ok {
			break
		}
		ml, _ := next()
		cur, _ := next()
		tr := Track{
			Priority: Priority(h & 7),
			MaxLayer: int(ml%6) - 1,
			Current:  int(cur%6) - 1,
		}
		for range int(h>>3) % 5 {
			fl, _ := next()
			br, _ := next()
			l := Layer{Bitrate: uint64(br) * 10_000, Live: fl&1 != 0}
			for k := range int(fl>>1) % 4 {
				l.Temporal = append(l.Temporal, uint64(k+1)*uint64(fl>>3)*5_000)
			}
			tr.Layers = append(tr.Layers, l)
		}
		tracks = append(tracks, tr)
	}
	return tracks
}

// A forwarded video keeps its lowest layer while half of it is left; a
// paused one needs the full layer (and headroom) to resume, and a second
// video finds the budget spent.
func TestKeepLowestLayer(t *testing.T) {
	lay := func() []Layer { return []Layer{{Bitrate: 155_000, Live: true}, {Bitrate: 500_000, Live: true}} }
	for _, tc := range []struct {
		name     string
		estimate uint64
		current  []int
		want     []Decision
	}{
		{"kept at the floor", 100_000, []int{0}, []Decision{{Layer: 0, Temporal: -1}}},
		{"kept from a higher layer", 100_000, []int{1}, []Decision{{Layer: 0, Temporal: -1}}},
		{"below half: paused", 70_000, []int{0}, []Decision{{Layer: -1, Temporal: -1, Paused: true}}},
		{"not forwarded: paused", 100_000, []int{-1}, []Decision{{Layer: -1, Temporal: -1, Paused: true}}},
		{"only the first", 100_000, []int{0, 0}, []Decision{{Layer: 0, Temporal: -1}, {Layer: -1, Temporal: -1, Paused: true}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var tracks []Track
			for _, c := range tc.current {
				tracks = append(tracks, Track{Priority: PriorityVideo, Layers: lay(), MaxLayer: 1, Current: c})
			}
			out := make([]Decision, len(tracks))
			Allocate(tc.estimate, tracks, out)
			for i := range out {
				if out[i] != tc.want[i] {
					t.Fatalf("track %d: %+v, want %+v", i, out[i], tc.want[i])
				}
			}
		})
	}
}
