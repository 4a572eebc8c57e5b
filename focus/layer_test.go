package focus

import (
	"testing"
	"time"
)

// A simulcast track: the subscriber starts on the highest layer, moves
// to the layer it picks at that layer's keyframe, and pausing stops it
// until a keyframe after the resume.
func TestLayerChoiceAndPause(t *testing.T) {
	f := newFixture(t, vp8Codec, KindVideo, nil)
	pub, err := f.sfu.Join("c", ParticipantInfo{Identity: "simulcast"})
	if err != nil {
		t.Fatal(err)
	}
	var demand [][]bool
	f.sfu.OnEvent(func(ev Event) {
		if d, ok := ev.(DemandChanged); ok {
			demand = append(demand, d.Wanted)
		}
	})
	rec := &rtcpRecorder{}
	up, err := pub.Publish(TrackInfo{Kind: KindVideo, Codec: vp8Codec, Layers: []string{"q", "h", "f"}}, rec)
	if err != nil {
		t.Fatal(err)
	}
	d, w, _ := f.subscriber(t, up, nil)
	seq := [3]uint16{100, 200, 300}
	// send one packet on each layer; the payload's body names the layer.
	send := func(key bool) {
		for i := range seq {
			if err := up.HandleRTP(i, packet(t, uint32(0x100+i), seq[i], uint32(seq[i])*3000, vp8Payload(key, byte(i)), nil)); err != nil {
				t.Fatal(err)
			}
			seq[i]++
		}
	}
	last := func() byte {
		ps := w.packets()
		if len(ps) == 0 {
			return 0xff
		}
		p := ps[len(ps)-1].Payload
		return p[len(p)-1]
	}
	count := func() int { return len(w.packets()) }

	send(true)
	if last() != 2 || count() != 1 {
		t.Fatalf("forwarding layer %d (%d packets), want layer 2 only", last(), count())
	}
	d.SetMaxLayer(0)
	f.sfu.control(f.clock.Now())
	send(false)
	if last() != 2 {
		t.Fatal("left the old layer before the new one's keyframe")
	}
	send(true)
	if last() != 0 {
		t.Fatalf("forwarding layer %d after the keyframe, want 0", last())
	}
	n := count()
	send(false)
	if count() != n+1 {
		t.Fatal("forwarding more than the chosen layer")
	}
	if got := demand[len(demand)-1]; !got[0] || got[2] {
		t.Errorf("demand %v after choosing layer 0", got)
	}
	d.SetMaxLayer(7) // clamped to the top
	f.sfu.control(f.clock.Now())
	send(true)
	if last() != 2 {
		t.Fatalf("forwarding layer %d, want the clamped 2", last())
	}

	d.SetPaused(true)
	n = count()
	send(true)
	send(false)
	if count() != n || !d.Paused() {
		t.Fatal("forwarded while paused")
	}
	plis := rec.plis()
	f.clock.Advance(time.Second) // past the keyframe request spacing
	d.SetPaused(false)
	if rec.plis() <= plis {
		t.Error("resuming did not ask for a keyframe")
	}
	send(false)
	if count() != n {
		t.Fatal("resumed without a keyframe")
	}
	send(true)
	if count() != n+1 || last() != 2 {
		t.Fatal("did not resume at the keyframe")
	}
}
