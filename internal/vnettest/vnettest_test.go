package vnettest

import (
	"context"
	"maps"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/rs/zerolog"

	"github.com/focus-sfu/focus/focus"
	"github.com/focus-sfu/focus/internal/testclient"
	"github.com/focus-sfu/focus/rtc"
)

// setup builds the network, the engine on it and a client API; all are
// closed when the test ends.
func setup(t *testing.T, o Options) (*Network, *rtc.Engine, *webrtc.API) {
	t.Helper()
	nw, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	e, err := nw.Engine(zerolog.Nop())
	if err != nil {
		_ = nw.Close()
		t.Fatal(err)
	}
	api, err := nw.ClientAPI()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = e.Close()
		_ = nw.Close()
	})
	return nw, e, api
}

// negotiate has offerer offer and answerer answer, without trickle.
// prepare runs on the answerer between the offer and the answer.
func negotiate(t *testing.T, offerer, answerer *webrtc.PeerConnection, prepare func()) {
	t.Helper()
	offer, err := offerer.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	g := webrtc.GatheringCompletePromise(offerer)
	if err := offerer.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	<-g
	if err := answerer.SetRemoteDescription(*offerer.LocalDescription()); err != nil {
		t.Fatal(err)
	}
	if prepare != nil {
		prepare()
	}
	answer, err := answerer.CreateAnswer(nil)
	if err != nil {
		t.Fatal(err)
	}
	g = webrtc.GatheringCompletePromise(answerer)
	if err := answerer.SetLocalDescription(answer); err != nil {
		t.Fatal(err)
	}
	<-g
	if err := offerer.SetRemoteDescription(*answerer.LocalDescription()); err != nil {
		t.Fatal(err)
	}
}

// pace writes 1000-byte VP8 packets on track at rate() bits per second
// until ctx ends.
func pace(ctx context.Context, track *webrtc.TrackLocalStaticRTP, rate func() int) {
	const size = 1000
	payload := make([]byte, size)
	payload[0] = 0x10 // VP8 descriptor: start of partition
	pkt := &rtp.Packet{Header: rtp.Header{Version: 2}, Payload: payload}
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	last := time.Now()
	var credit float64 // bytes
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			credit += float64(rate()) / 8 * now.Sub(last).Seconds()
			last = now
			for ; credit >= size; credit -= size {
				pkt.SequenceNumber++
				pkt.Timestamp += 900
				if err := track.WriteRTP(pkt); err != nil {
					return
				}
			}
		}
	}
}

// subscriber connects a receive-only client to a focus connection that
// sends track; it returns the focus side and a counter of the RTP bytes
// the client reads.
func subscriber(t *testing.T, e *rtc.Engine, api *webrtc.API, track webrtc.TrackLocal) (*rtc.Peer, *atomic.Int64) {
	t.Helper()
	client, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close() })
	if _, err := client.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
		t.Fatal(err)
	}
	var got atomic.Int64
	client.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		buf := make([]byte, 1500)
		for {
			n, _, err := tr.Read(buf)
			if err != nil {
				return
			}
			got.Add(int64(n))
		}
	})
	peer, err := e.NewPeerConnection()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = peer.Close() })
	negotiate(t, client, peer.PeerConnection, func() {
		sender, err := peer.AddTrack(track)
		if err != nil {
			t.Fatal(err)
		}
		go func() { // the sender's RTCP carries the client's feedback to the estimator
			buf := make([]byte, 1500)
			for {
				if _, _, err := sender.Read(buf); err != nil {
					return
				}
			}
		}()
	})
	waitConnected(t, peer.PeerConnection)
	return peer, &got
}

func waitConnected(t *testing.T, pc *webrtc.PeerConnection) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for pc.ConnectionState() != webrtc.PeerConnectionStateConnected {
		if time.Now().After(deadline) {
			t.Fatalf("not connected: %s", pc.ConnectionState())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestCapIsRespected sends 3 Mbit/s to a client behind a 1 Mbit/s cap:
// media flows, no more than the cap arrives, and the connection's
// estimate falls to what the path carries.
func TestCapIsRespected(t *testing.T) {
	if testing.Short() {
		t.Skip("seconds of real-time media")
	}
	const capRate = 1_000_000
	_, e, api := setup(t, Options{Rate: capRate, Delay: 10 * time.Millisecond, Seed: 1})
	track, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8}, "video", "focus")
	if err != nil {
		t.Fatal(err)
	}
	peer, got := subscriber(t, e, api, track)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go pace(ctx, track, func() int { return 3_000_000 })
	time.Sleep(time.Second) // fill the queue; gcc sees loss and delay
	start := got.Load()
	const window = 3 * time.Second
	time.Sleep(window)
	rate := float64(got.Load()-start) * 8 / window.Seconds()
	est := peer.Estimator().TargetBitrate()
	loss, overusing := peer.Congestion()
	t.Logf("received %.0f bit/s behind a %d bit/s cap; estimate %d, loss %.2f, overusing %v", rate, capRate, est, loss, overusing)
	if rate < 0.5*capRate || rate > 1.05*capRate {
		t.Fatalf("received %.0f bit/s behind a %d bit/s cap", rate, capRate)
	}
	if est >= 1_500_000 {
		t.Fatalf("estimate %d bit/s when the path carries %d", est, capRate)
	}
	if _, ok := peer.Estimator().(focus.CongestionReporter); !ok {
		t.Fatal("the estimator reports no congestion state")
	}
	if loss < 0.02 && !overusing {
		t.Fatalf("sending three times the cap, congestion reads loss %.2f, overusing %v", loss, overusing)
	}
}

// TestEstimateFollowsThePath sends what the estimate allows, the way the
// allocator spends it, and moves the cap: the estimate climbs under a
// high cap, falls when the cap drops, and the media keeps flowing.
func TestEstimateFollowsThePath(t *testing.T) {
	if testing.Short() {
		t.Skip("seconds of real-time media")
	}
	nw, e, api := setup(t, Options{Rate: 3_000_000, Delay: 20 * time.Millisecond, Seed: 2})
	track, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8}, "video", "focus")
	if err != nil {
		t.Fatal(err)
	}
	peer, got := subscriber(t, e, api, track)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go pace(ctx, track, func() int { return int(peer.Estimator().TargetBitrate()) })

	sample := func(d time.Duration) (estimate uint64, received float64) {
		start := got.Load()
		time.Sleep(d)
		return peer.Estimator().TargetBitrate(), float64(got.Load()-start) * 8 / d.Seconds()
	}
	var up []uint64
	for i := 0; i < 6; i++ {
		est, rate := sample(time.Second)
		up = append(up, est)
		t.Logf("cap 3 Mbit/s, t=%ds: estimate %d, received %.0f", i+1, est, rate)
	}
	if up[len(up)-1] <= 1_000_000 {
		t.Fatalf("estimate never rose above its start under a 3 Mbit/s cap: %v", up)
	}
	nw.SetRate(600_000)
	var down uint64
	var rate float64
	for i := 0; i < 4; i++ {
		down, rate = sample(time.Second)
		t.Logf("cap 600 kbit/s, t=%ds: estimate %d, received %.0f", i+1, down, rate)
	}
	if down > 900_000 {
		t.Fatalf("estimate %d after the cap fell to 600 kbit/s", down)
	}
	if rate < 200_000 {
		t.Fatalf("media stalled under the lower cap: %.0f bit/s", rate)
	}
}

// TestPublisherLossRepairedByRTX publishes through a lossy uplink with a
// browser-like client, which answers NACKs with RTX: the focus's track
// reads every packet, some of them unwrapped from RTX by pion.
func TestPublisherLossRepairedByRTX(t *testing.T) {
	if testing.Short() {
		t.Skip("seconds of real-time media")
	}
	nw, e, api := setup(t, Options{Delay: 10 * time.Millisecond, Seed: 3})
	client, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	track, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "video", "pub")
	if err != nil {
		t.Fatal(err)
	}
	var nacked atomic.Int64
	tr, err := client.AddTransceiverFromTrack(track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
	if err != nil {
		t.Fatal(err)
	}
	go func() { // NACKs reach pion's responder only when the sender's RTCP is read
		buf := make([]byte, 1500)
		for {
			n, _, err := tr.Sender().Read(buf)
			if err != nil {
				return
			}
			pkts, _ := rtcp.Unmarshal(buf[:n])
			for _, p := range pkts {
				if nack, ok := p.(*rtcp.TransportLayerNack); ok {
					for _, pair := range nack.Nacks {
						nacked.Add(int64(len(pair.PacketList())))
					}
				}
			}
		}
	}()
	peer, err := e.NewPeerConnection()
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()

	arrivals := recordArrivals(peer.PeerConnection)
	negotiate(t, client, peer.PeerConnection, nil)
	waitConnected(t, peer.PeerConnection)
	waitConnected(t, client) // until then pion drops what the track writes
	nw.SetUplinkLoss(0.05)

	const packets = 1000
	payload := make([]byte, 800)
	payload[0] = 0x10
	pkt := &rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: 1000}, Payload: payload}
	first := pkt.SequenceNumber + 1
	for i := 0; i < packets; i++ {
		pkt.SequenceNumber++
		pkt.Timestamp += 900
		if err := track.WriteRTP(pkt); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Millisecond)
	}
	nw.SetUplinkLoss(0)
	time.Sleep(time.Second) // the last NACKs and their answers

	seen, viaRTX := arrivals.get()
	missing := 0
	for i := 0; i < packets; i++ {
		if !seen[first+uint16(i)] {
			missing++
		}
	}
	t.Logf("%d packets through 5 %% uplink loss: %d missing, %d repaired by RTX, %d NACKed", packets, missing, viaRTX, nacked.Load())
	if viaRTX == 0 {
		t.Fatal("no packet arrived by RTX")
	}
	// Without repair 50 would be missing; what stays missing is a
	// retransmission lost in turn.
	if missing > packets/100 {
		t.Fatalf("%d of %d packets missing after repair", missing, packets)
	}
	// A repaired packet is NACKed at most three times (about 50 lost: 150);
	// unbounded, it was NACKed some 13 times.
	if n := nacked.Load(); n > 240 {
		t.Fatalf("%d packets NACKed for about %d lost", n, packets/20)
	}
}

// TestSubscriberLossRepairedByRTX forwards a core track to a client
// behind a lossy downlink: the client's NACKs are answered from the
// core's cache on the RTX stream that Bind negotiated, and the client
// ends up with every packet.
func TestSubscriberLossRepairedByRTX(t *testing.T) {
	if testing.Short() {
		t.Skip("seconds of real-time media")
	}
	nw, e, api := setup(t, Options{Delay: 10 * time.Millisecond, Seed: 4})
	sfu := focus.New(focus.Options{})
	defer sfu.Close()
	pub, err := sfu.Join("c", focus.ParticipantInfo{})
	if err != nil {
		t.Fatal(err)
	}
	up, err := pub.Publish(focus.TrackInfo{Kind: focus.KindVideo, Codec: focus.Codec{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	sub, err := sfu.Join("c", focus.ParticipantInfo{})
	if err != nil {
		t.Fatal(err)
	}
	d, err := sub.Subscribe(up)
	if err != nil {
		t.Fatal(err)
	}

	client, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	if _, err := client.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
		t.Fatal(err)
	}
	arrivals := recordArrivals(client)
	peer, err := e.NewPeerConnection()
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	// No estimator: 3 Mbit/s of one layer is above the 1 Mbit/s a new
	// connection's estimate starts at, and this test is about repair.
	lt := rtc.NewLocalTrack(d, "video", "focus", peer, zerolog.Nop())
	negotiate(t, client, peer.PeerConnection, func() {
		if _, err := peer.AddTrack(lt); err != nil {
			t.Fatal(err)
		}
	})
	waitConnected(t, peer.PeerConnection)
	waitConnected(t, client)

	const packets = 1000
	var buf []byte
	for i := 0; i < packets; i++ {
		if i == 20 {
			nw.SetLoss(0.05) // once the subscriber has started on the keyframe
		}
		p := rtp.Packet{
			Header:  rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: uint16(5000 + i), Timestamp: uint32(i * 3000), SSRC: 42, Marker: true},
			Payload: testclient.AppendVP8(nil, true, i%100 == 0, 800, testclient.Marker{Counter: uint32(i)}),
		}
		buf, _ = p.Marshal()
		if err := up.HandleRTP(0, buf); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Millisecond)
	}
	nw.SetLoss(0)
	time.Sleep(time.Second)

	seen, viaRTX := arrivals.get()
	if len(seen) == 0 {
		t.Fatal("the client received nothing")
	}
	lo, hi := uint16(0), uint16(0)
	for s := range seen {
		if lo == 0 || int16(s-lo) < 0 {
			lo = s
		}
		if hi == 0 || int16(s-hi) > 0 {
			hi = s
		}
	}
	missing := int(hi-lo) + 1 - len(seen)
	t.Logf("%d packets through 5 %% downlink loss: %d received, %d missing, %d repaired by RTX", packets, len(seen), missing, viaRTX)
	if viaRTX == 0 {
		t.Fatal("no packet arrived by RTX")
	}
	if missing > packets/100 || len(seen) < packets*99/100 {
		t.Fatalf("%d received, %d missing after repair", len(seen), missing)
	}
}

// arrivals records the sequence numbers a connection's tracks receive,
// and how many came repaired on an RTX stream.
type arrivals struct {
	mu     sync.Mutex
	seen   map[uint16]bool
	viaRTX int
}

func recordArrivals(pc *webrtc.PeerConnection) *arrivals {
	a := &arrivals{seen: map[uint16]bool{}}
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		for {
			p, attr, err := tr.ReadRTP()
			if err != nil {
				return
			}
			a.mu.Lock()
			a.seen[p.SequenceNumber] = true
			if attr != nil && attr.Get(webrtc.AttributeRtxSequenceNumber) != nil {
				a.viaRTX++
			}
			a.mu.Unlock()
		}
	})
	return a
}

// get returns a copy of what was recorded so far.
func (a *arrivals) get() (map[uint16]bool, int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return maps.Clone(a.seen), a.viaRTX
}
