package focus

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

func TestForwardStartsAtKeyframeAndRewrites(t *testing.T) {
	f := newFixture(t, vp8Codec, KindVideo, nil)
	_, w, _ := f.subscriber(t, f.up, nil)

	seq, ts := uint16(65530), uint32(1000)
	send := func(key bool) {
		if err := f.up.HandleRTP(0, packet(t, 0x1234, seq, ts, vp8Payload(key, byte(seq)), nil)); err != nil {
			t.Fatal(err)
		}
		seq++
		ts += 3000
	}
	send(false)
	send(false)
	if n := len(w.packets()); n != 0 {
		t.Fatalf("forwarded %d packets before a keyframe", n)
	}
	send(true)
	for i := 0; i < 10; i++ { // crosses the sequence wrap
		send(false)
	}
	got := w.packets()
	if len(got) != 11 {
		t.Fatalf("got %d packets, want 11", len(got))
	}
	if !isVP8Keyframe(got[0].Payload) {
		t.Fatal("first forwarded packet is not a keyframe")
	}
	for i, p := range got {
		if p.SSRC != 0xdddd0001 || p.PayloadType != 100 {
			t.Fatalf("packet %d: ssrc %x pt %d, want the subscriber's", i, p.SSRC, p.PayloadType)
		}
		if i > 0 {
			if p.SequenceNumber != got[i-1].SequenceNumber+1 {
				t.Fatalf("packet %d: seq %d after %d", i, p.SequenceNumber, got[i-1].SequenceNumber)
			}
			if p.Timestamp-got[i-1].Timestamp != 3000 {
				t.Fatalf("packet %d: timestamp step %d", i, p.Timestamp-got[i-1].Timestamp)
			}
		}
		if want := vp8Payload(i == 0, byte(65532+i)); !bytes.Equal(p.Payload, want) {
			t.Fatalf("packet %d: payload %x, want %x", i, p.Payload, want)
		}
	}
}

func TestAudioForwardsAtOnce(t *testing.T) {
	f := newFixture(t, opus, KindAudio, nil)
	_, w, _ := f.subscriber(t, f.up, nil)
	for i := 0; i < 5; i++ {
		if err := f.up.HandleRTP(0, packet(t, 7, uint16(i), uint32(i*960), []byte{0xfc, byte(i)}, nil)); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(w.packets()); n != 5 {
		t.Fatalf("got %d audio packets, want 5", n)
	}
	if f.upRTC.plis() != 0 {
		t.Fatal("audio track was asked for a keyframe")
	}
}

func TestKeyframeBurstCostsOneRequest(t *testing.T) {
	f := newFixture(t, vp8Codec, KindVideo, nil)
	// The publisher's SSRC is known once a packet has arrived.
	if err := f.up.HandleRTP(0, packet(t, 0x1234, 1, 0, vp8Payload(false), nil)); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100; i++ {
		f.subscriber(t, f.up, nil)
		f.clock.Advance(4 * time.Millisecond)
	}
	if n := f.upRTC.plis(); n != 1 {
		t.Fatalf("100 new subscribers within 400 ms sent %d PLIs, want 1", n)
	}
	// The keyframe arrives and serves them all.
	if err := f.up.HandleRTP(0, packet(t, 0x1234, 2, 3000, vp8Payload(true), nil)); err != nil {
		t.Fatal(err)
	}
	for _, p := range f.up.Owner().Conference().Participants() {
		for _, d := range p.DownTracks() {
			d.mu.Lock()
			started := d.munger.started
			d.mu.Unlock()
			if !started {
				t.Fatal("a subscriber did not start at the shared keyframe")
			}
		}
	}
	// Later joiners are served at once from the burst budget, one
	// keyframe each, until the budget is spent ...
	seq, ts := uint16(3), uint32(6000)
	keyframe := func() {
		if err := f.up.HandleRTP(0, packet(t, 0x1234, seq, ts, vp8Payload(true), nil)); err != nil {
			t.Fatal(err)
		}
		seq, ts = seq+1, ts+3000
	}
	var d *DownTrack
	immediate := 1
	for ; immediate < 20; immediate++ {
		f.clock.Advance(keyframeSpacing)
		d, _, _ = f.subscriber(t, f.up, nil)
		if f.upRTC.plis() == immediate {
			break // held back
		}
		keyframe()
	}
	if immediate < keyframeBurst {
		t.Fatalf("only %d joiners in a row were served at once, want at least the burst of %d", immediate, keyframeBurst)
	}
	// ... and the next waits for it to refill.
	f.clock.Advance(f.sfu.opts.KeyframeInterval)
	if err := f.up.HandleRTP(0, packet(t, 0x1234, seq, ts, vp8Payload(false), nil)); err != nil {
		t.Fatal(err)
	}
	if n := f.upRTC.plis(); n != immediate+1 {
		t.Fatalf("pending request was not sent after the budget refilled: %d PLIs, want %d", n, immediate+1)
	}
	keyframe()
	pli := f.upRTC.plis()
	// A subscriber's own PLI goes upstream, rate-limited.
	f.clock.Advance(time.Second)
	d.HandleRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{}})
	d.HandleRTCP([]rtcp.Packet{&rtcp.FullIntraRequest{}})
	if n := f.upRTC.plis(); n != pli+1 {
		t.Fatalf("subscriber PLI+FIR gave %d PLIs, want 1", n-pli)
	}
}

func TestSourceSwitchKeepsStreamContinuous(t *testing.T) {
	f := newFixture(t, vp8Codec, KindVideo, nil)
	d, w, _ := f.subscriber(t, f.up, nil)
	for i := 0; i < 5; i++ {
		if err := f.up.HandleRTP(0, packet(t, 0xaaaa, uint16(100+i), uint32(9000+i*3000), vp8Payload(i == 0), nil)); err != nil {
			t.Fatal(err)
		}
		f.clock.Advance(33 * time.Millisecond)
	}
	f.pub.Leave() // the publisher goes
	if d.Source() != nil {
		t.Fatal("down track kept a closed source")
	}
	pub2, err := f.sfu.Join("c", ParticipantInfo{})
	if err != nil {
		t.Fatal(err)
	}
	up2, err := pub2.Publish(TrackInfo{Kind: KindVideo, Codec: vp8Codec}, &rtcpRecorder{})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.SetSource(up2); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(time.Second)
	// The new source starts mid-GOP: nothing goes out until its keyframe.
	for i := 0; i < 3; i++ {
		if err := up2.HandleRTP(0, packet(t, 0xbbbb, uint16(40000+i), uint32(777777+i*3000), vp8Payload(i == 2), nil)); err != nil {
			t.Fatal(err)
		}
	}
	if err := up2.HandleRTP(0, packet(t, 0xbbbb, 40003, 780777, vp8Payload(false), nil)); err != nil {
		t.Fatal(err)
	}
	got := w.packets()
	if len(got) != 7 {
		t.Fatalf("got %d packets, want 5 + 2", len(got))
	}
	before, after := got[4], got[5]
	if after.SSRC != before.SSRC {
		t.Fatal("SSRC changed across the source switch")
	}
	if after.SequenceNumber != before.SequenceNumber+1 || got[6].SequenceNumber != after.SequenceNumber+1 {
		t.Fatalf("sequence jumps across the switch: %d → %d → %d", before.SequenceNumber, after.SequenceNumber, got[6].SequenceNumber)
	}
	// 1 s + 33 ms of wall clock passed: the timestamp advances by as much.
	if step := after.Timestamp - before.Timestamp; step < 90000 || step > 96000 {
		t.Fatalf("timestamp step across the switch is %d, want about 93000", step)
	}
	if !isVP8Keyframe(after.Payload) {
		t.Fatal("first packet of the new source is not a keyframe")
	}
}

func TestHeaderExtensionsRemapped(t *testing.T) {
	up := []HeaderExtension{{1, extAudioLevel}, {3, extTWCC}, {4, extMid}}
	down := []HeaderExtension{{5, extAudioLevel}, {2, extTWCC}, {9, extMid}}
	f := newFixture(t, opus, KindAudio, up)
	_, w, _ := f.subscriber(t, f.up, down)
	exts := map[uint8][]byte{1: {0x85}, 3: {0x00, 0x07}, 4: []byte("0")}
	if err := f.up.HandleRTP(0, packet(t, 1, 1, 1, []byte{1}, exts)); err != nil {
		t.Fatal(err)
	}
	got := w.packets()
	if len(got) != 1 {
		t.Fatalf("got %d packets", len(got))
	}
	h := got[0].Header
	if p := h.GetExtension(5); !bytes.Equal(p, []byte{0x85}) {
		t.Fatalf("audio level not remapped to id 5: %x", p)
	}
	for _, id := range []uint8{1, 2, 3, 4, 9} {
		if h.GetExtension(id) != nil {
			t.Fatalf("extension id %d forwarded; the publisher's connection extensions must be dropped", id)
		}
	}
}

func TestSenderReportTranslated(t *testing.T) {
	f := newFixture(t, opus, KindAudio, nil)
	_, _, sub := f.subscriber(t, f.up, nil)
	if err := f.up.HandleRTP(0, packet(t, 42, 1, 5000, []byte{1}, nil)); err != nil {
		t.Fatal(err)
	}
	f.up.HandleRTCP([]rtcp.Packet{&rtcp.SenderReport{SSRC: 42, NTPTime: 0xabcdef, RTPTime: 5960}})
	f.up.HandleRTCP([]rtcp.Packet{&rtcp.SenderReport{SSRC: 99, NTPTime: 1, RTPTime: 1}}) // not ours
	srs := sub.senderReports()
	if len(srs) != 1 {
		t.Fatalf("got %d sender reports, want 1", len(srs))
	}
	sr := srs[0]
	if sr.SSRC != 0xdddd0001 || sr.NTPTime != 0xabcdef || sr.RTPTime != 5960 || sr.PacketCount != 1 || sr.OctetCount != 1 {
		t.Fatalf("sender report %+v", sr)
	}
}

func TestPublisherLeaveEndsSubscriptions(t *testing.T) {
	f := newFixture(t, vp8Codec, KindVideo, nil)
	d, _, _ := f.subscriber(t, f.up, nil)
	if f.up.Subscribers() != 1 {
		t.Fatal("subscriber not attached")
	}
	var events []string
	f.sfu.OnEvent(func(ev Event) {
		switch ev.(type) {
		case TrackUnpublished:
			events = append(events, "unpublished")
		case ParticipantLeft:
			events = append(events, "left")
		}
	})
	f.pub.Leave()
	f.pub.Leave() // twice is fine
	if d.Source() != nil || f.up.Subscribers() != 0 || !f.up.Closed() {
		t.Fatal("subscription survived its publisher")
	}
	if len(events) != 2 || events[0] != "unpublished" || events[1] != "left" {
		t.Fatalf("events %v", events)
	}
	if err := d.SetSource(f.up); err != ErrClosed {
		t.Fatalf("SetSource on a closed track: %v", err)
	}
}

// Demand follows the subscribers of video and audio tracks alike: the
// cascade pulls a remote track of either kind on it.
func TestEventsAndDemand(t *testing.T) {
	for _, info := range []TrackInfo{{Kind: KindVideo, Codec: vp8Codec}, {Kind: KindAudio, Codec: opus}} {
		t.Run(info.Kind.String(), func(t *testing.T) {
			clock := newFakeClock()
			s := New(Options{Now: clock.Now})
			var got []string
			cancel := s.OnEvent(func(ev Event) {
				switch e := ev.(type) {
				case ParticipantJoined:
					got = append(got, "joined")
				case TrackPublished:
					got = append(got, "published")
				case DemandChanged:
					if e.Wanted[0] {
						got = append(got, "wanted")
					} else {
						got = append(got, "unwanted")
					}
				}
			})
			control := func() {
				clock.Advance(controlInterval)
				s.control(clock.Now())
			}
			p, _ := s.Join("c", ParticipantInfo{})
			up, _ := p.Publish(info, nil)
			control() // nobody watches: the publisher may stop
			q, _ := s.Join("c", ParticipantInfo{})
			d1, _ := q.Subscribe(up)
			d2, _ := q.Subscribe(up)
			control()
			d1.Close()
			control() // d2 still watches
			d2.Close()
			control()
			cancel()
			_, _ = s.Join("c", ParticipantInfo{})
			want := []string{"joined", "published", "unwanted", "joined", "wanted", "unwanted"}
			if !slices.Equal(got, want) {
				t.Fatalf("events %v, want %v", got, want)
			}
		})
	}
}

// KeepUnwatched keeps the lowest layer of an unwatched track in demand.
func TestKeepUnwatched(t *testing.T) {
	clock := newFakeClock()
	s := New(Options{Now: clock.Now, KeepUnwatched: func(*UpTrack) bool { return true }})
	var wanted [][]bool
	s.OnEvent(func(ev Event) {
		if e, ok := ev.(DemandChanged); ok {
			wanted = append(wanted, e.Wanted)
		}
	})
	p, _ := s.Join("c", ParticipantInfo{})
	if _, err := p.Publish(TrackInfo{Kind: KindVideo, Codec: vp8Codec, Layers: []string{"q", "h", "f"}}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Publish(TrackInfo{Kind: KindAudio, Codec: opus}, nil); err != nil {
		t.Fatal(err)
	}
	// A cascade proxy's video is not kept either: it is pulled from its
	// focus only while watched here.
	proxy, _ := s.Join("c", ParticipantInfo{Origin: "b"})
	if _, err := proxy.Publish(TrackInfo{Kind: KindVideo, Codec: vp8Codec, Layers: []string{"q", "h", "f"}}, nil); err != nil {
		t.Fatal(err)
	}
	s.control(clock.Now())
	// The video keeps its lowest layer; the audio, which KeepUnwatched
	// does not cover, is unwanted.
	if len(wanted) != 3 || !slices.Equal(wanted[0], []bool{true, false, false}) || !slices.Equal(wanted[1], []bool{false}) ||
		!slices.Equal(wanted[2], []bool{false, false, false}) {
		t.Fatalf("demand %v, want only the local video's lowest layer", wanted)
	}
}

// The limits count participants connected here: a cascade's proxies and
// relays (with an Origin) neither count nor are refused.
func TestLimitsCountLocalParticipants(t *testing.T) {
	s := New(Options{MaxParticipantsPerConference: 1, MaxParticipants: 1})
	defer s.Close()
	if _, err := s.Join("a", ParticipantInfo{Origin: "b"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Join("a", ParticipantInfo{}); err != nil {
		t.Fatalf("first local participant beside a proxy: %v", err)
	}
	if _, err := s.Join("a", ParticipantInfo{Origin: "c", Role: RoleViewer}); err != nil {
		t.Fatalf("a relay in a full conference: %v", err)
	}
	if _, err := s.Join("a", ParticipantInfo{}); err != ErrServerFull {
		t.Fatalf("second local participant: %v", err)
	}
	if n := s.Participants(); n != 1 {
		t.Fatalf("Participants() = %d, want 1", n)
	}
}

func TestLimits(t *testing.T) {
	s := New(Options{MaxParticipantsPerConference: 2, MaxParticipants: 3})
	defer s.Close()
	a, _ := s.Join("a", ParticipantInfo{})
	if _, err := s.Join("a", ParticipantInfo{}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Join("a", ParticipantInfo{}); err != ErrConferenceFull {
		t.Fatalf("third in a conference of 2: %v", err)
	}
	if _, err := s.Join("b", ParticipantInfo{}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Join("c", ParticipantInfo{}); err != ErrServerFull {
		t.Fatalf("fourth on a server of 3: %v", err)
	}
	a.Leave()
	if _, err := s.Join("c", ParticipantInfo{}); err != nil {
		t.Fatalf("after a leave: %v", err)
	}
	s.Close()
	if s.Participants() != 0 || len(s.Conferences()) != 0 {
		t.Fatal("Close left participants behind")
	}
	if _, err := s.Join("d", ParticipantInfo{}); err != ErrClosed {
		t.Fatalf("join after close: %v", err)
	}
}

func TestMalformedPacketIsAnError(t *testing.T) {
	f := newFixture(t, vp8Codec, KindVideo, nil)
	for _, b := range [][]byte{nil, {0x80}, {0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0}} {
		if err := f.up.HandleRTP(0, b); err == nil {
			t.Fatalf("HandleRTP(%x) accepted a malformed packet", b)
		}
	}
}

func TestMungerWraps(t *testing.T) {
	var m rtpMunger
	now := time.Unix(0, 0)
	m.switchSource(65000, 100, now, 90000)
	for i := 0; i < 70000; i++ {
		seq := uint16(65000 + i)
		out, _, ok := m.rewrite(seq, 100, now)
		if !ok || out != seq {
			t.Fatalf("packet %d (seq %d) mapped to %d ok=%v", i, seq, out, ok)
		}
	}
	// A packet from before the segment is refused, a late one inside it is not.
	m2 := rtpMunger{}
	m2.switchSource(10, 0, now, 90000)
	if _, _, ok := m2.rewrite(9, 0, now); ok {
		t.Fatal("packet from before the switch accepted")
	}
	m2.rewrite(12, 0, now)
	if out, _, ok := m2.rewrite(11, 0, now); !ok || out != 11 {
		t.Fatal("reordered packet refused")
	}
}

// discardWriter counts packets and keeps nothing.
type discardWriter struct{ n int }

func (w *discardWriter) WriteRTP(h *rtp.Header, payload []byte) (int, error) {
	w.n++
	return len(payload), nil
}

func TestForwardingAllocatesNothing(t *testing.T) {
	up := []HeaderExtension{{1, extAudioLevel}, {2, extOrient}, {3, extTWCC}}
	down := []HeaderExtension{{4, extAudioLevel}, {5, extOrient}, {6, extTWCC}}
	up0, bufs := benchSetup(t, 20, up, down)
	seq := uint16(len(bufs))
	allocs := testing.AllocsPerRun(1000, func() {
		for _, b := range bufs {
			nextSeq(b, &seq)
			_ = up0.HandleRTP(0, b)
		}
	})
	if allocs != 0 {
		t.Fatalf("forwarding to 20 subscribers allocates %.1f times per packet", allocs)
	}
}

// benchSetup builds a video track with n bound subscribers and a ring of
// packets to feed it, starting with a keyframe.
func benchSetup(tb testing.TB, n int, up, down []HeaderExtension) (*UpTrack, [][]byte) {
	// An injected clock keeps the control loop, which allocates, from
	// running behind AllocsPerRun's back.
	s := New(Options{Now: newFakeClock().Now})
	p, _ := s.Join("bench", ParticipantInfo{})
	t, _ := p.Publish(TrackInfo{Kind: KindVideo, Codec: vp8Codec, Extensions: up}, nil)
	for i := 0; i < n; i++ {
		q, _ := s.Join("bench", ParticipantInfo{})
		d, _ := q.Subscribe(t)
		d.Bind(Binding{SSRC: uint32(i + 1), PayloadType: 96, Extensions: down, Writer: &discardWriter{}})
	}
	exts := map[uint8][]byte{}
	for _, e := range up {
		exts[e.ID] = []byte{0x12, 0x34}
	}
	bufs := make([][]byte, 64)
	for i := range bufs {
		bufs[i] = packet(tb, 0x5555, uint16(i), uint32(i*3000), vp8Payload(i == 0, make([]byte, 1000)...), exts)
	}
	if err := t.HandleRTP(0, bufs[0]); err != nil { // start every subscriber
		tb.Fatal(err)
	}
	return t, bufs
}

// nextSeq gives a reused packet the next sequence number: the core drops
// a sequence number it has seen as a duplicate.
func nextSeq(buf []byte, seq *uint16) {
	binary.BigEndian.PutUint16(buf[2:4], *seq)
	*seq++
}

func BenchmarkForward(b *testing.B) {
	up := []HeaderExtension{{1, extAudioLevel}, {2, extOrient}, {3, extTWCC}}
	down := []HeaderExtension{{4, extAudioLevel}, {5, extOrient}, {6, extTWCC}}
	for _, n := range []int{1, 10, 100} {
		b.Run(benchName(n), func(b *testing.B) {
			t, bufs := benchSetup(b, n, up, down)
			b.ReportAllocs()
			b.SetBytes(int64(len(bufs[1]) * n))
			b.ResetTimer()
			seq := uint16(len(bufs))
			for i := 0; i < b.N; i++ {
				buf := bufs[1+i%63]
				nextSeq(buf, &seq)
				_ = t.HandleRTP(0, buf)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/forwarded")
		})
	}
}

func benchName(n int) string {
	switch n {
	case 1:
		return "subscribers=1"
	case 10:
		return "subscribers=10"
	}
	return "subscribers=100"
}

// notReadyWriter drops writes, as pion does before SRTP is ready, until
// ready is set.
type notReadyWriter struct {
	rtpRecorder
	ready bool
}

func (w *notReadyWriter) WriteRTP(h *rtp.Header, payload []byte) (int, error) {
	if !w.ready {
		return 0, nil
	}
	return w.rtpRecorder.WriteRTP(h, payload)
}

func TestUndeliveredKeyframeDoesNotStartSubscriber(t *testing.T) {
	f := newFixture(t, vp8Codec, KindVideo, nil)
	p, _ := f.sfu.Join("c", ParticipantInfo{})
	d, _ := p.Subscribe(f.up)
	w := &notReadyWriter{}
	d.Bind(Binding{SSRC: 9, PayloadType: 96, Writer: w})
	seq := uint16(0)
	send := func(key bool) {
		if err := f.up.HandleRTP(0, packet(t, 0x77, seq, uint32(seq)*3000, vp8Payload(key), nil)); err != nil {
			t.Fatal(err)
		}
		seq++
	}
	plis := f.upRTC.plis()
	send(true) // lost: the connection is not ready
	w.ready = true
	if f.upRTC.plis() <= plis {
		t.Fatal("no new keyframe request after the undelivered keyframe")
	}
	send(false)
	send(false)
	if n := len(w.packets()); n != 0 {
		t.Fatalf("%d interframes forwarded after an undelivered keyframe", n)
	}
	send(true)
	send(false)
	got := w.packets()
	if len(got) != 2 || !isVP8Keyframe(got[0].Payload) || got[1].SequenceNumber != got[0].SequenceNumber+1 {
		t.Fatalf("subscriber did not start cleanly at the next keyframe: %d packets", len(got))
	}
}

// The probe loop runs every probeSlot over every participant; it walks
// them without allocating.
func TestProbeLoopAllocatesNothing(t *testing.T) {
	s := New(Options{Now: newFakeClock().Now})
	for c := range 3 {
		for range 10 {
			if _, err := s.Join(ConferenceID(fmt.Sprint("c", c)), ParticipantInfo{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	now := s.now()
	s.probe(now) // grows the loop's buffers
	if allocs := testing.AllocsPerRun(100, func() { s.probe(now) }); allocs != 0 {
		t.Fatalf("a probe round over 30 participants allocates %.1f times", allocs)
	}
}
