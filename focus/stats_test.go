package focus

import (
	"sync"
	"testing"

	"github.com/pion/rtcp"
)

// marshaledSize is what the packets a recorder got would weigh on the
// wire before SRTP.
func marshaledSize(t *testing.T, w *rtpRecorder) uint64 {
	t.Helper()
	n := uint64(0)
	for _, p := range w.packets() {
		b, err := p.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		n += uint64(len(b))
	}
	return n
}

// Stats counts what the media plane did, per kind, and keeps the counts
// of tracks that ended once their participants left.
func TestStatsCountsForwardingAndOutlivesTracks(t *testing.T) {
	upExts := []HeaderExtension{{1, extOrient}, {2, extTWCC}}
	downExts := []HeaderExtension{{3, extOrient}, {4, extTWCC}}
	f := newFixture(t, vp8Codec, KindVideo, upExts)
	d1, w1, _ := f.subscriber(t, f.up, downExts)
	_, w2, _ := f.subscriber(t, f.up, nil)
	est := &fixedEstimate{}
	est.bps.Store(1_500_000)
	d1.Subscriber().SetBandwidthEstimator(est)

	audioPub, err := f.sfu.Join("c", ParticipantInfo{Identity: "mic"})
	if err != nil {
		t.Fatal(err)
	}
	mic, err := audioPub.Publish(TrackInfo{Kind: KindAudio, Codec: opus}, &rtcpRecorder{})
	if err != nil {
		t.Fatal(err)
	}
	_, wa, _ := f.subscriber(t, mic, nil)

	var videoIn, audioIn uint64
	for i := 0; i < 20; i++ {
		buf := packet(t, 0x42, uint16(1000+i), uint32(i)*3000, vp8Frame(i == 0, uint16(i), 0, 0, false, make([]byte, 100+i)...), map[uint8][]byte{1: {0x01}, 2: {0, byte(i)}})
		videoIn += uint64(len(buf))
		if err := f.up.HandleRTP(0, buf); err != nil {
			t.Fatal(err)
		}
		buf = packet(t, 7, uint16(i), uint32(i)*960, []byte{0xfc, byte(i), 3}, nil)
		audioIn += uint64(len(buf))
		if err := mic.HandleRTP(0, buf); err != nil {
			t.Fatal(err)
		}
	}
	// A NACK for two packets, answered from the cache; a PLI, passed on.
	sent := w1.packets()
	d1.HandleRTCP([]rtcp.Packet{
		&rtcp.TransportLayerNack{Nacks: []rtcp.NackPair{{PacketID: sent[3].SequenceNumber, LostPackets: 1}}},
	})
	plisBefore := f.upRTC.plis()
	d1.HandleRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{}})

	s := f.sfu.Stats()
	if s.Conferences != 1 || s.Participants != 5 {
		t.Errorf("conferences %d participants %d, want 1 and 5", s.Conferences, s.Participants)
	}
	wantVideo := MediaStats{
		Published: 1, Subscribed: 2,
		PacketsIn: 20, BytesIn: videoIn,
		PacketsOut: 40, BytesOut: marshaledSize(t, w1) - sizeAfter(t, w1, 20) + marshaledSize(t, w2),
	}
	if s.Video != wantVideo {
		t.Errorf("video %+v, want %+v", s.Video, wantVideo)
	}
	wantAudio := MediaStats{Published: 1, Subscribed: 1, PacketsIn: 20, BytesIn: audioIn, PacketsOut: 20, BytesOut: marshaledSize(t, wa)}
	if s.Audio != wantAudio {
		t.Errorf("audio %+v, want %+v", s.Audio, wantAudio)
	}
	if s.NACKs != 1 || s.NACKedPackets != 2 || s.Retransmitted != 2 {
		t.Errorf("NACKs %d for %d packets, %d retransmitted; want 1, 2, 2", s.NACKs, s.NACKedPackets, s.Retransmitted)
	}
	if s.PLIsReceived != 1 {
		t.Errorf("PLIs received %d, want 1", s.PLIsReceived)
	}
	if want := uint64(f.upRTC.plis()); s.PLIsSent != want || want <= uint64(plisBefore) {
		t.Errorf("PLIs sent %d, the publisher got %d (before the subscriber's PLI: %d)", s.PLIsSent, want, plisBefore)
	}
	if len(s.Estimates) != 1 || s.Estimates[0] != 1_500_000 {
		t.Errorf("estimates %v, want [1500000]", s.Estimates)
	}

	// Everyone leaves: the gauges drop, the counters stay.
	for _, p := range f.sfu.Conference("c").Participants() {
		p.Leave()
	}
	after := f.sfu.Stats()
	if after.Conferences != 0 || after.Participants != 0 || after.Video.Published != 0 || after.Video.Subscribed != 0 ||
		after.Audio.Published != 0 || after.Audio.Subscribed != 0 || len(after.Estimates) != 0 {
		t.Errorf("gauges after everyone left: %+v", after)
	}
	s.Video.Published, s.Video.Subscribed, s.Audio.Published, s.Audio.Subscribed = 0, 0, 0, 0
	s.Conferences, s.Participants, s.Estimates = 0, 0, nil
	if after.Video != s.Video || after.Audio != s.Audio || after.NACKs != s.NACKs || after.Retransmitted != s.Retransmitted ||
		after.PLIsReceived != s.PLIsReceived || after.PLIsSent != s.PLIsSent {
		t.Errorf("counters after everyone left %+v, want those of before %+v", after, s)
	}
}

// sizeAfter is the marshaled size of the packets w got after its first n.
func sizeAfter(t *testing.T, w *rtpRecorder, n int) uint64 {
	t.Helper()
	rest := &rtpRecorder{pkts: w.packets()[n:]}
	return marshaledSize(t, rest)
}

// A subscription that moves between the layers of a simulcast track
// counts a switch each time, not its first start.
func TestStatsCountsLayerSwitches(t *testing.T) {
	f := newFixture(t, vp8Codec, KindVideo, nil)
	pub, err := f.sfu.Join("c", ParticipantInfo{Identity: "simulcast"})
	if err != nil {
		t.Fatal(err)
	}
	up, err := pub.Publish(TrackInfo{Kind: KindVideo, Codec: vp8Codec, Layers: []string{"q", "f"}}, &rtcpRecorder{})
	if err != nil {
		t.Fatal(err)
	}
	d, _, _ := f.subscriber(t, up, nil)
	seq := [2]uint16{100, 200}
	keyframes := func() {
		for i := range seq {
			if err := up.HandleRTP(i, packet(t, uint32(0x100+i), seq[i], uint32(seq[i])*3000, vp8Payload(true, byte(i)), nil)); err != nil {
				t.Fatal(err)
			}
			seq[i]++
		}
	}
	keyframes()
	if n := f.sfu.Stats().LayerSwitches; n != 0 {
		t.Fatalf("%d layer switches at the start, want 0", n)
	}
	d.SetMaxLayer(0)
	keyframes()
	d.SetMaxLayer(1)
	f.sfu.control(f.clock.Now())
	keyframes()
	if d.Layer() != 1 {
		t.Fatalf("on layer %d, want 1", d.Layer())
	}
	if n := f.sfu.Stats().LayerSwitches; n != 2 {
		t.Fatalf("%d layer switches, want 2 (down and up again)", n)
	}
}

// Padding sent to probe a subscriber's link is counted apart from media.
func TestStatsCountsPadding(t *testing.T) {
	f := newFixture(t, vp8Codec, KindVideo, nil)
	d, w, _ := f.subscriber(t, f.up, nil)
	d.Bind(Binding{SSRC: 1, PayloadType: 100, RTXSSRC: 2, RTXPayloadType: 101, Writer: w})
	if err := f.up.HandleRTP(0, packet(t, 0x42, 1, 0, vp8Payload(true), nil)); err != nil {
		t.Fatal(err)
	}
	sent := d.writePadding(600)
	s := f.sfu.Stats()
	padding := uint64(len(w.packets()) - 1) // after the keyframe
	if sent == 0 || s.PaddingPackets != padding || s.PaddingBytes != padding*(12+255) {
		t.Fatalf("padding %d packets %d bytes; the subscriber got %d packets of 12+255 bytes", s.PaddingPackets, s.PaddingBytes, padding)
	}
	if s.Video.PacketsOut != 1 {
		t.Fatalf("padding counted as media: %d packets out", s.Video.PacketsOut)
	}
}

// Counters never go back while tracks come and go under a scrape: each
// track's counts are either still on the live track or already kept,
// never missing for a moment nor counted twice.
func TestStatsMonotonicUnderChurn(t *testing.T) {
	f := newFixture(t, vp8Codec, KindVideo, nil)
	done := make(chan struct{})
	video := packet(t, 0x42, 0, 0, vp8Payload(true, 1), nil)
	audio := packet(t, 7, 0, 0, []byte{1, 2, 3}, nil)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { // the one feeder of the long-lived video track
		defer wg.Done()
		for seq := uint16(0); ; {
			select {
			case <-done:
				return
			default:
			}
			nextSeq(video, &seq)
			_ = f.up.HandleRTP(0, video)
		}
	}()
	go func() { // subscribers and audio publishers that join and leave
		defer wg.Done()
		defer close(done)
		for i := 0; i < 300; i++ {
			p, err := f.sfu.Join("c", ParticipantInfo{})
			if err != nil {
				t.Error(err)
				return
			}
			d, err := p.Subscribe(f.up)
			if err != nil {
				t.Error(err)
				return
			}
			d.Bind(Binding{SSRC: 1, PayloadType: 100, Writer: &rtpRecorder{}})
			mic, err := p.Publish(TrackInfo{Kind: KindAudio, Codec: opus}, nil)
			if err != nil {
				t.Error(err)
				return
			}
			for seq := uint16(0); seq < 5; {
				nextSeq(audio, &seq)
				_ = mic.HandleRTP(0, audio)
			}
			d.HandleRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{}})
			p.Leave()
		}
	}()
	var prev Stats
	counters := func(s Stats) []uint64 {
		return []uint64{s.Video.PacketsIn, s.Video.BytesIn, s.Video.PacketsOut, s.Video.BytesOut,
			s.Audio.PacketsIn, s.Audio.BytesIn, s.PLIsReceived, s.PLIsSent}
	}
	scrapes := 0
	for running := true; running; scrapes++ {
		select {
		case <-done:
			running = false
		default:
		}
		s := f.sfu.Stats()
		now, before := counters(s), counters(prev)
		for i := range now {
			if now[i] < before[i] {
				t.Fatalf("scrape %d: counter %d went back from %d to %d", scrapes, i, before[i], now[i])
			}
		}
		prev = s
	}
	wg.Wait()
	if s := f.sfu.Stats(); s.Audio.PacketsIn != 300*5 || s.PLIsReceived != 300 {
		t.Fatalf("after the churn: %d audio packets in, %d PLIs received; want 1500 and 300", s.Audio.PacketsIn, s.PLIsReceived)
	}
}
