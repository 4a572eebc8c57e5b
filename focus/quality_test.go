package focus

import (
	"encoding/binary"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"

	"github.com/focus-sfu/focus/focus/allocator"
	"github.com/focus-sfu/focus/focus/vp8"
)

// vp8Frame returns a VP8 payload with a full descriptor: 15-bit picture
// ID, TL0PICIDX, TID and Y; keyframes carry their frame size.
func vp8Frame(key bool, pic uint16, tl0, tid uint8, y bool, body ...byte) []byte {
	b := []byte{0x90, 0xe0, 0x80 | byte(pic>>8&0x7f), byte(pic), tl0, tid << 6}
	if y {
		b[5] |= 0x20
	}
	if key {
		b = append(b, 0x10, 0, 0, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01) // 640x480
	} else {
		b = append(b, 0x11, 0, 0)
	}
	return append(b, body...)
}

func descriptorOf(t *testing.T, p rtp.Packet) vp8.Descriptor {
	t.Helper()
	var d vp8.Descriptor
	if err := d.Unmarshal(p.Payload); err != nil {
		t.Fatalf("forwarded payload %x: %v", p.Payload, err)
	}
	return d
}

// seqContinuous fails unless ps have consecutive sequence numbers.
func seqContinuous(t *testing.T, ps []rtp.Packet) {
	t.Helper()
	for i := 1; i < len(ps); i++ {
		if ps[i].SequenceNumber != ps[i-1].SequenceNumber+1 {
			t.Fatalf("sequence jumps from %d to %d at packet %d", ps[i-1].SequenceNumber, ps[i].SequenceNumber, i)
		}
	}
}

func TestNACKAnsweredFromCache(t *testing.T) {
	for _, withRTX := range []bool{false, true} {
		name := "plain"
		if withRTX {
			name = "rtx"
		}
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, vp8Codec, KindVideo, nil)
			d, w, _ := f.subscriber(t, f.up, nil)
			if withRTX {
				d.Bind(Binding{SSRC: 1, PayloadType: 100, RTXSSRC: 2, RTXPayloadType: 101, Writer: w})
			}
			for i := 0; i < 10; i++ {
				buf := packet(t, 0x42, uint16(65530+i), uint32(i)*3000, vp8Frame(i == 0, uint16(300+i), 0, 0, false, byte(i)), nil)
				if err := f.up.HandleRTP(0, buf); err != nil {
					t.Fatal(err)
				}
			}
			sent := w.packets()
			if len(sent) != 10 {
				t.Fatalf("forwarded %d packets, want 10", len(sent))
			}
			lost3, lost5 := sent[3], sent[5] // on both sides of the wrap
			nack := []rtcp.Packet{&rtcp.TransportLayerNack{Nacks: []rtcp.NackPair{{PacketID: lost3.SequenceNumber, LostPackets: 1 << 1}}}}
			d.HandleRTCP(nack)
			resent := w.packets()[10:]
			if len(resent) != 2 {
				t.Fatalf("%d packets resent, want 2", len(resent))
			}
			for i, want := range []rtp.Packet{lost3, lost5} {
				got := resent[i]
				payload := got.Payload
				if withRTX {
					if got.SSRC != 2 || got.PayloadType != 101 {
						t.Fatalf("RTX packet on SSRC %d PT %d", got.SSRC, got.PayloadType)
					}
					if osn := binary.BigEndian.Uint16(payload); osn != want.SequenceNumber {
						t.Fatalf("RTX carries original seq %d, want %d", osn, want.SequenceNumber)
					}
					payload = payload[2:]
				} else if got.SSRC != want.SSRC || got.SequenceNumber != want.SequenceNumber {
					t.Fatalf("resent as SSRC %d seq %d, want %d/%d", got.SSRC, got.SequenceNumber, want.SSRC, want.SequenceNumber)
				}
				if got.Timestamp != want.Timestamp || string(payload) != string(want.Payload) {
					t.Fatalf("resent packet differs: ts %d payload %x, want ts %d payload %x", got.Timestamp, payload, want.Timestamp, want.Payload)
				}
			}
			if withRTX && resent[1].SequenceNumber != resent[0].SequenceNumber+1 {
				t.Fatal("RTX stream has its own continuous sequence numbers")
			}

			d.HandleRTCP(nack) // again at once: refused, one RTT has not passed
			if n := len(w.packets()); n != 12 {
				t.Fatalf("a repeated NACK within 100 ms was answered (%d packets)", n)
			}
			f.clock.Advance(150 * time.Millisecond)
			d.HandleRTCP(nack)
			if n := len(w.packets()); n != 14 {
				t.Fatalf("a NACK after 150 ms was not answered (%d packets)", n)
			}
			// A sequence number never sent is ignored.
			d.HandleRTCP([]rtcp.Packet{&rtcp.TransportLayerNack{Nacks: []rtcp.NackPair{{PacketID: lost3.SequenceNumber + 1000}}}})
			if n := len(w.packets()); n != 14 {
				t.Fatal("answered a NACK for a packet never sent")
			}
		})
	}
}

func TestSwitchKeepsVP8PictureIDsContinuous(t *testing.T) {
	f := newFixture(t, vp8Codec, KindVideo, nil)
	pub, _ := f.sfu.Join("c", ParticipantInfo{})
	up, _ := pub.Publish(TrackInfo{Kind: KindVideo, Codec: vp8Codec, Layers: []string{"q", "f"}}, &rtcpRecorder{})
	d, w, _ := f.subscriber(t, up, nil)
	pics := [2]uint16{100, 32760} // layer 1 wraps its 15-bit picture ID
	seqs := [2]uint16{10, 5000}
	tl0 := [2]uint8{7, 250}
	send := func(i int, key bool) {
		t.Helper()
		if err := up.HandleRTP(i, packet(t, uint32(0x10+i), seqs[i], uint32(seqs[i])*3000, vp8Frame(key, pics[i], tl0[i], 0, false), nil)); err != nil {
			t.Fatal(err)
		}
		pics[i] = (pics[i] + 1) & 0x7fff
		seqs[i]++
		tl0[i]++
	}
	send(1, true)
	for i := 0; i < 12; i++ { // across layer 1's wrap
		send(0, false)
		send(1, false)
	}
	d.SetMaxLayer(0)
	f.sfu.control(f.clock.Now())
	send(1, false)
	send(0, true) // the switch
	send(0, false)
	ps := w.packets()
	if len(ps) != 16 {
		t.Fatalf("forwarded %d packets, want 16", len(ps))
	}
	seqContinuous(t, ps)
	prev := descriptorOf(t, ps[0])
	for i := 1; i < len(ps); i++ {
		cur := descriptorOf(t, ps[i])
		if cur.PictureID != (prev.PictureID+1)&0x7fff || cur.TL0PICIDX != prev.TL0PICIDX+1 {
			t.Fatalf("packet %d: picture ID %d TL0PICIDX %d after %d/%d", i, cur.PictureID, cur.TL0PICIDX, prev.PictureID, prev.TL0PICIDX)
		}
		prev = cur
	}
	if up.LayerSize(0) != (Size{640, 480}) {
		t.Errorf("layer 0 size %v, want 640x480 from its keyframe", up.LayerSize(0))
	}
}

func TestTemporalLayersDropped(t *testing.T) {
	f := newFixture(t, vp8Codec, KindVideo, nil)
	d, w, _ := f.subscriber(t, f.up, nil)
	seq, pic, tl0 := uint16(1), uint16(1), uint8(0)
	send := func(key bool, tid uint8, y bool) {
		t.Helper()
		if tid == 0 {
			tl0++
		}
		if err := f.up.HandleRTP(0, packet(t, 0x42, seq, uint32(seq)*3000, vp8Frame(key, pic, tl0, tid, y), nil)); err != nil {
			t.Fatal(err)
		}
		seq++
		pic++
	}
	d.apply(allocator.Decision{Layer: 0, Temporal: 0}, f.up)
	send(true, 0, false)
	send(false, 2, false)
	send(false, 1, false)
	send(false, 2, false)
	send(false, 0, false)
	ps := w.packets()
	if len(ps) != 2 {
		t.Fatalf("forwarded %d packets, want the 2 of temporal layer 0", len(ps))
	}
	seqContinuous(t, ps)
	if a, b := descriptorOf(t, ps[0]), descriptorOf(t, ps[1]); b.PictureID != a.PictureID+1 {
		t.Fatalf("picture IDs %d then %d: the dropped frames left a gap", a.PictureID, b.PictureID)
	}

	// Raising the cap waits for a frame upper layers can start at.
	d.apply(allocator.Decision{Layer: 0, Temporal: -1}, f.up)
	send(false, 2, false)
	if len(w.packets()) != 2 {
		t.Fatal("forwarded an upper-layer frame before a layer sync point")
	}
	send(false, 1, true)
	send(false, 2, false)
	ps = w.packets()
	if len(ps) != 4 {
		t.Fatalf("forwarded %d packets after the sync frame, want 4", len(ps))
	}
	seqContinuous(t, ps)
}

func TestPaddingNotForwarded(t *testing.T) {
	f := newFixture(t, vp8Codec, KindVideo, nil)
	_, w, _ := f.subscriber(t, f.up, nil)
	if err := f.up.HandleRTP(0, packet(t, 0x42, 1, 0, vp8Frame(true, 1, 0, 0, false), nil)); err != nil {
		t.Fatal(err)
	}
	hdr := rtp.Header{Version: 2, Padding: true, PayloadType: 96, SequenceNumber: 2, SSRC: 0x42}
	b, err := hdr.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	b = append(b, make([]byte, 200)...)
	b[len(b)-1] = 200 // the padding counts itself
	if err := f.up.HandleRTP(0, b); err != nil {
		t.Fatal(err)
	}
	if err := f.up.HandleRTP(0, packet(t, 0x42, 3, 3000, vp8Frame(false, 2, 0, 0, false), nil)); err != nil {
		t.Fatal(err)
	}
	ps := w.packets()
	if len(ps) != 2 {
		t.Fatalf("forwarded %d packets, want the 2 media packets", len(ps))
	}
	seqContinuous(t, ps)
}

type fixedEstimate struct{ bps atomic.Uint64 }

func (e *fixedEstimate) TargetBitrate() uint64 { return e.bps.Load() }

// simulcast publishes a three-layer track and feeds it at 150 kbit/s,
// 500 kbit/s and 1.5 Mbit/s in 5 ms steps, running the control loop
// every 100 ms, as the SFU's own loop does.
type simulcast struct {
	t     *testing.T
	f     *fixture
	up    *UpTrack
	seq   [3]uint16
	pic   [3]uint16
	rates [3]int // bytes per 5 ms step; 0 is silent
	steps int
}

func newSimulcast(t *testing.T, f *fixture) *simulcast {
	pub, _ := f.sfu.Join("c", ParticipantInfo{Identity: "simulcast"})
	up, err := pub.Publish(TrackInfo{Kind: KindVideo, Codec: vp8Codec, Layers: []string{"q", "h", "f"}}, &rtcpRecorder{})
	if err != nil {
		t.Fatal(err)
	}
	return &simulcast{t: t, f: f, up: up, rates: [3]int{94, 312, 937}}
}

func (s *simulcast) run(d time.Duration, each func()) {
	for el := time.Duration(0); el < d; el += 5 * time.Millisecond {
		for i, n := range s.rates {
			if n == 0 {
				continue
			}
			key := s.steps%100 == 0 // a keyframe a second per layer
			buf := packet(s.t, uint32(0x100+i), s.seq[i], uint32(s.steps)*450, vp8Frame(key, s.pic[i], 0, 0, false, make([]byte, n)...), nil)
			if err := s.up.HandleRTP(i, buf); err != nil {
				s.t.Fatal(err)
			}
			s.seq[i]++
			s.pic[i]++
		}
		s.steps++
		s.f.clock.Advance(5 * time.Millisecond)
		if s.steps%20 == 0 {
			s.f.sfu.control(s.f.clock.Now())
			if each != nil {
				each()
			}
		}
	}
}

func TestAllocationFollowsBandwidth(t *testing.T) {
	f := newFixture(t, vp8Codec, KindVideo, nil)
	var paused []bool
	f.sfu.OnEvent(func(ev Event) {
		if e, ok := ev.(SubscriptionPaused); ok {
			paused = append(paused, e.Paused)
		}
	})
	s := newSimulcast(t, f)
	d, w, _ := f.subscriber(t, s.up, nil)
	est := &fixedEstimate{}
	est.bps.Store(400_000)
	d.Subscriber().SetBandwidthEstimator(est)

	s.run(2*time.Second, nil)
	if d.Layer() != 0 {
		t.Fatalf("at 400 kbit/s forwarding layer %d, want 0", d.Layer())
	}
	est.bps.Store(5_000_000)
	s.run(2*time.Second, nil)
	if d.Layer() != 2 {
		t.Fatalf("at 5 Mbit/s forwarding layer %d, want 2", d.Layer())
	}

	// The top layer stalls: its subscriber moves down after the stall
	// timeout, not before, and within 2 s.
	s.rates[2] = 0
	var movedAfter time.Duration
	start := f.clock.Now()
	s.run(3*time.Second, func() {
		if movedAfter == 0 && d.Layer() != 2 {
			movedAfter = f.clock.Now().Sub(start)
		}
	})
	if d.Layer() != 1 || movedAfter < stallTimeout || movedAfter > 2*time.Second {
		t.Fatalf("stalled top layer: on layer %d, moved after %v", d.Layer(), movedAfter)
	}

	// A muted track sends nothing and is not stalled.
	s.rates = [3]int{94, 312, 937}
	s.run(2*time.Second, nil)
	before := d.Layer()
	s.up.SetMuted(true)
	s.rates = [3]int{}
	s.run(3*time.Second, nil)
	if d.Layer() != before {
		t.Fatalf("muted track moved its subscriber from layer %d to %d", before, d.Layer())
	}
	s.up.SetMuted(false)
	s.rates = [3]int{94, 312, 937}

	// Too little for even the lowest layer: paused for bandwidth, then
	// resumed.
	est.bps.Store(50_000)
	s.run(time.Second, nil)
	if !d.PausedForBandwidth() {
		t.Fatal("not paused at 50 kbit/s")
	}
	n := len(w.packets())
	s.run(time.Second, nil)
	if len(w.packets()) != n {
		t.Fatal("forwarded while paused for bandwidth")
	}
	est.bps.Store(5_000_000)
	s.run(2*time.Second, nil)
	if d.PausedForBandwidth() || len(w.packets()) == n {
		t.Fatal("did not resume when bandwidth came back")
	}
	if len(paused) != 2 || !paused[0] || paused[1] {
		t.Fatalf("SubscriptionPaused events %v, want [true false]", paused)
	}
	seqContinuous(t, w.packets())
}

func TestSpeakersAndLoudestAudio(t *testing.T) {
	clock := newFakeClock()
	s := New(Options{Now: clock.Now, MaxAudioForwarded: 1})
	var changes [][]Speaker
	s.OnEvent(func(ev Event) {
		if e, ok := ev.(SpeakersChanged); ok {
			changes = append(changes, e.Speakers)
		}
	})
	exts := []HeaderExtension{{ID: 1, URI: extAudioLevel}}
	var ups []*UpTrack
	for _, name := range []string{"loud", "quiet"} {
		p, _ := s.Join("c", ParticipantInfo{Identity: name})
		up, err := p.Publish(TrackInfo{Kind: KindAudio, Codec: opus, Extensions: exts}, nil)
		if err != nil {
			t.Fatal(err)
		}
		ups = append(ups, up)
	}
	// A listener, and a cascade relay to another focus, which ranks the
	// speakers there among all of them and so takes every audio track.
	sub, _ := s.Join("c", ParticipantInfo{Identity: "listener"})
	relay, _ := s.Join("c", ParticipantInfo{Identity: "focus:b", Role: RoleViewer, Origin: "b"})
	var recs, relayed []*rtpRecorder
	for i, up := range ups {
		for _, r := range []struct {
			p    *Participant
			recs *[]*rtpRecorder
		}{{sub, &recs}, {relay, &relayed}} {
			d, err := r.p.Subscribe(up)
			if err != nil {
				t.Fatal(err)
			}
			w := &rtpRecorder{}
			d.Bind(Binding{SSRC: uint32(i + 1), PayloadType: 111, Writer: w})
			*r.recs = append(*r.recs, w)
		}
	}
	levels := []byte{20, 127} // -20 dBov and silence
	for step := 0; step < 100; step++ {
		for i, up := range ups {
			buf := packet(t, uint32(0x200+i), uint16(step), uint32(step*960), []byte{0xfc, 1, 2}, map[uint8][]byte{1: {levels[i]}})
			if err := up.HandleRTP(0, buf); err != nil {
				t.Fatal(err)
			}
		}
		clock.Advance(20 * time.Millisecond)
		if step%5 == 4 {
			s.control(clock.Now())
		}
	}
	if len(changes) == 0 {
		t.Fatal("no SpeakersChanged")
	}
	last := changes[len(changes)-1]
	if len(last) != 1 || last[0].Track != ups[0] || last[0].Participant.Info().Identity != "loud" || last[0].Level <= 0 {
		t.Fatalf("speakers %+v, want the loud track alone", last)
	}
	if got := s.Conference("c").Speakers(); len(got) != 1 || got[0].Track != ups[0] {
		t.Fatalf("Conference.Speakers %+v", got)
	}
	loud, quiet := len(recs[0].packets()), len(recs[1].packets())
	if loud < 90 || quiet > 10 {
		t.Fatalf("with MaxAudioForwarded 1: %d loud and %d quiet packets forwarded", loud, quiet)
	}
	if loud, quiet := len(relayed[0].packets()), len(relayed[1].packets()); loud < 90 || quiet < 90 {
		t.Fatalf("the relay got %d loud and %d quiet packets, want all of both", loud, quiet)
	}
}

// Caps set right after subscribing apply at once, before the control
// loop runs, so a new viewer starts on its layer at one keyframe.
func TestCapsApplyAtOnce(t *testing.T) {
	f := newFixture(t, vp8Codec, KindVideo, nil)
	s := newSimulcast(t, f)
	s.run(50*time.Millisecond, nil) // keyframes on every layer: sizes known
	d, _, _ := f.subscriber(t, s.up, nil)
	if d.Layer() != 2 {
		t.Fatalf("uncapped subscriber starts on layer %d, want 2", d.Layer())
	}
	d.SetMaxSize(320, 180)
	if d.Layer() != 0 {
		t.Fatalf("after a size cap on layer %d, want 0", d.Layer())
	}
	d.SetMaxSize(0, 0)
	d.SetMaxLayer(1)
	if d.Layer() != 0 {
		t.Fatal("a higher cap moved the subscriber before the allocator")
	}

	// With an estimate, a new subscription starts where it fits.
	p, _ := f.sfu.Join("c", ParticipantInfo{})
	est := &fixedEstimate{}
	est.bps.Store(700_000)
	p.SetBandwidthEstimator(est)
	d2, err := p.Subscribe(s.up)
	if err != nil {
		t.Fatal(err)
	}
	if d2.Layer() != 1 {
		t.Fatalf("at 700 kbit/s a subscription starts on layer %d, want 1", d2.Layer())
	}
}

// A keyframe request that the publisher ignores is repeated while the
// subscriber waits, spaced by the keyframer.
func TestUnansweredKeyframeRequestRepeated(t *testing.T) {
	f := newFixture(t, vp8Codec, KindVideo, nil)
	if err := f.up.HandleRTP(0, packet(t, 0x42, 1, 0, vp8Frame(false, 1, 0, 0, false), nil)); err != nil {
		t.Fatal(err)
	}
	f.subscriber(t, f.up, nil) // bound, waiting for a first keyframe
	first := f.upRTC.plis()
	if first == 0 {
		t.Fatal("binding asked for no keyframe")
	}
	for i := 0; i < 5; i++ { // 500 ms: the request is still in flight
		f.clock.Advance(controlInterval)
		f.sfu.control(f.clock.Now())
	}
	if f.upRTC.plis() != first {
		t.Fatalf("%d requests within 500 ms, want %d", f.upRTC.plis(), first)
	}
	for i := 0; i < 6; i++ {
		f.clock.Advance(controlInterval)
		f.sfu.control(f.clock.Now())
	}
	if f.upRTC.plis() <= first {
		t.Fatal("an unanswered keyframe request was never repeated")
	}
}

// A keyframe asked for before the publisher sent anything is asked for
// at its first packet.
func TestKeyframeRequestBeforeFirstPacket(t *testing.T) {
	f := newFixture(t, vp8Codec, KindVideo, nil)
	f.subscriber(t, f.up, nil)
	if err := f.up.HandleRTP(0, packet(t, 0x42, 1, 0, vp8Frame(false, 1, 0, 0, false), nil)); err != nil {
		t.Fatal(err)
	}
	if f.upRTC.plis() != 1 {
		t.Fatalf("%d keyframe requests at the first packet, want 1", f.upRTC.plis())
	}
}

// The control loop runs beside packets, subscriptions and caps from
// other goroutines; under -race this finds unguarded state.
func TestControlLoopConcurrency(t *testing.T) {
	s := New(Options{MaxAudioForwarded: 1})
	defer s.Close()
	pub, _ := s.Join("c", ParticipantInfo{})
	up, err := pub.Publish(TrackInfo{Kind: KindVideo, Codec: vp8Codec, Layers: []string{"q", "h", "f"}}, &rtcpRecorder{})
	if err != nil {
		t.Fatal(err)
	}
	audio, _ := pub.Publish(TrackInfo{Kind: KindAudio, Codec: opus, Extensions: []HeaderExtension{{ID: 1, URI: extAudioLevel}}}, nil)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			for l := 0; l < 3; l++ {
				_ = up.HandleRTP(l, packet(t, uint32(0x100+l), uint16(i), uint32(i)*3000, vp8Frame(i%50 == 0, uint16(i), 0, uint8(i%2), i%2 == 0, make([]byte, 200)...), nil))
			}
			_ = audio.HandleRTP(0, packet(t, 0x300, uint16(i), uint32(i)*960, []byte{1, 2}, map[uint8][]byte{1: {30}}))
			time.Sleep(time.Millisecond)
		}
	}()
	deadline := time.Now().Add(400 * time.Millisecond)
	for time.Now().Before(deadline) {
		p, _ := s.Join("c", ParticipantInfo{})
		est := &fixedEstimate{}
		est.bps.Store(600_000)
		p.SetBandwidthEstimator(est)
		d, err := p.Subscribe(up)
		if err != nil {
			t.Fatal(err)
		}
		d.Bind(Binding{SSRC: 7, PayloadType: 96, RTXSSRC: 8, RTXPayloadType: 97, Writer: &discardWriter{}})
		d.SetMaxSize(320, 180)
		d.HandleRTCP([]rtcp.Packet{&rtcp.TransportLayerNack{Nacks: []rtcp.NackPair{{PacketID: 1, LostPackets: 0xffff}}}})
		if _, err := p.Subscribe(audio); err != nil {
			t.Fatal(err)
		}
		up.SetMuted(true)
		up.SetMuted(false)
		time.Sleep(20 * time.Millisecond)
		_ = s.Conference("c").Speakers()
		p.Leave()
	}
	close(stop)
	<-done
}

// A publisher's retransmission of a packet that arrived after all is not
// forwarded twice.
func TestDuplicateNotForwarded(t *testing.T) {
	f := newFixture(t, vp8Codec, KindVideo, nil)
	_, w, _ := f.subscriber(t, f.up, nil)
	for _, seq := range []uint16{1, 3, 2, 2, 3, 4} {
		if err := f.up.HandleRTP(0, packet(t, 0x42, seq, uint32(seq)*3000, vp8Frame(seq == 1, seq, 0, 0, false), nil)); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(w.packets()); n != 4 {
		t.Fatalf("forwarded %d packets of 4 distinct ones", n)
	}
}
