package livekit

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/livekit/protocol/auth"
	"github.com/livekit/protocol/livekit"
	protoLogger "github.com/livekit/protocol/logger"
	lksdk "github.com/livekit/server-sdk-go/v2"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"
	"google.golang.org/protobuf/proto"

	"github.com/focus-sfu/focus/focus"
)

var quietSDK sync.Once

// lkClient is a LiveKit Go SDK participant with what it received.
type lkClient struct {
	t    *testing.T
	name string
	room *lksdk.Room

	mu          sync.Mutex
	packets     map[string]*atomic.Int64 // "publisher/kind" → RTP packets received
	lastByte    map[string]*atomic.Int32 // "publisher/kind" → last byte of the last payload
	tracks      map[string]*webrtc.TrackRemote
	infos       map[string]*livekit.TrackInfo // by track sid
	muted       map[string]bool               // by track sid, as last announced
	joined      map[string]bool               // identity → connected (false once disconnected)
	unpublished map[string]bool
	data        []lksdk.DataReceiveParams
	reconnected atomic.Int32
	wg          sync.WaitGroup
}

func (e *sigEnv) connect(identity, room string, opts ...lksdk.ConnectOption) *lkClient {
	e.t.Helper()
	quietSDK.Do(func() {
		if os.Getenv("FOCUS_TEST_LOG") == "" {
			// A zap logger at fatal, not the discard logger: the SDK hands
			// its logger to pion, and any non-zap logger formats every
			// pion debug message, one of which reads a receiver pion is
			// still writing (a data race under -race).
			l, err := protoLogger.NewZapLogger(&protoLogger.Config{Level: "fatal"})
			if err != nil {
				panic(err)
			}
			lksdk.SetLogger(l)
		}
	})
	c := &lkClient{
		t: e.t, name: identity,
		packets: map[string]*atomic.Int64{}, lastByte: map[string]*atomic.Int32{}, tracks: map[string]*webrtc.TrackRemote{},
		infos: map[string]*livekit.TrackInfo{}, muted: map[string]bool{}, joined: map[string]bool{},
		unpublished: map[string]bool{},
	}
	cb := lksdk.NewRoomCallback()
	cb.OnTrackSubscribed = c.onTrack
	cb.OnTrackMuted = func(pub lksdk.TrackPublication, _ lksdk.Participant) { c.setMuted(pub.SID(), true) }
	cb.OnTrackUnmuted = func(pub lksdk.TrackPublication, _ lksdk.Participant) { c.setMuted(pub.SID(), false) }
	cb.OnParticipantConnected = func(rp *lksdk.RemoteParticipant) { c.setJoined(rp.Identity(), true) }
	cb.OnParticipantDisconnected = func(rp *lksdk.RemoteParticipant) { c.setJoined(rp.Identity(), false) }
	cb.OnTrackUnpublished = func(pub *lksdk.RemoteTrackPublication, _ *lksdk.RemoteParticipant) {
		c.mu.Lock()
		c.unpublished[pub.SID()] = true
		c.mu.Unlock()
	}
	cb.OnReconnected = func() { c.reconnected.Add(1) }
	cb.OnDataPacket = func(_ lksdk.DataPacket, params lksdk.DataReceiveParams) {
		c.mu.Lock()
		c.data = append(c.data, params)
		c.mu.Unlock()
	}
	tok := sigToken(e.t, identity, room, time.Hour, func(g *auth.VideoGrant) { g.SetCanUpdateOwnMetadata(true) })
	r, err := lksdk.ConnectToRoomWithToken(e.wsURL, tok, cb, opts...)
	if err != nil {
		e.t.Fatalf("%s: connect: %v", identity, err)
	}
	c.room = r
	for _, rp := range r.GetRemoteParticipants() {
		c.setJoined(rp.Identity(), true)
	}
	e.t.Cleanup(c.disconnect)
	return c
}

// presence reports whether c has seen identity (known) and whether it is
// still connected (in).
func (c *lkClient) presence(identity string) (in, known bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	in, known = c.joined[identity]
	return in, known
}

func (c *lkClient) disconnect() {
	c.room.Disconnect()
	c.wg.Wait()
}

func (c *lkClient) onTrack(track *webrtc.TrackRemote, pub *lksdk.RemoteTrackPublication, rp *lksdk.RemoteParticipant) {
	key := rp.Identity() + "/" + track.Kind().String()
	c.mu.Lock()
	n, last := c.packets[key], c.lastByte[key]
	if n == nil {
		n, last = &atomic.Int64{}, &atomic.Int32{}
		c.packets[key], c.lastByte[key] = n, last
	}
	c.tracks[key] = track
	c.infos[pub.SID()] = pub.TrackInfo()
	c.mu.Unlock()
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		for {
			pkt, _, err := track.ReadRTP()
			if err != nil {
				return
			}
			if len(pkt.Payload) > 0 {
				last.Store(int32(pkt.Payload[len(pkt.Payload)-1]))
			}
			n.Add(1)
		}
	}()
}

func (c *lkClient) setMuted(sid string, muted bool) {
	c.mu.Lock()
	c.muted[sid] = muted
	c.mu.Unlock()
}

func (c *lkClient) setJoined(identity string, in bool) {
	c.mu.Lock()
	c.joined[identity] = in
	c.mu.Unlock()
}

// received returns how many packets of kind from publisher arrived.
func (c *lkClient) received(publisher, kind string) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n := c.packets[publisher+"/"+kind]; n != nil {
		return n.Load()
	}
	return 0
}

// lastLayer returns the last byte of the last payload of kind from
// publisher: the simulcast layer, for simulcast publishers.
func (c *lkClient) lastLayer(publisher, kind string) int32 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if b := c.lastByte[publisher+"/"+kind]; b != nil {
		return b.Load()
	}
	return -1
}

func (c *lkClient) track(publisher, kind string) *webrtc.TrackRemote {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.tracks[publisher+"/"+kind]
}

// eventually waits for cond, failing with what after timeout.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// synthetic publishes a VP8 camera (a keyframe every 30 frames, marked
// encrypted as Element Call's are) and an Opus microphone, and writes
// samples until stop.
type synthetic struct {
	video, audio *lksdk.LocalTrackPublication
	stop         chan struct{}
	done         sync.WaitGroup
}

func (c *lkClient) publish() *synthetic {
	c.t.Helper()
	vt, err := lksdk.NewLocalSampleTrack(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000})
	if err != nil {
		c.t.Fatal(err)
	}
	at, err := lksdk.NewLocalSampleTrack(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2})
	if err != nil {
		c.t.Fatal(err)
	}
	s := &synthetic{stop: make(chan struct{})}
	s.video, err = c.room.LocalParticipant.PublishTrack(vt, &lksdk.TrackPublicationOptions{
		Name: "camera", Source: livekit.TrackSource_CAMERA, VideoWidth: 640, VideoHeight: 360,
		Encryption: livekit.Encryption_GCM,
	})
	if err != nil {
		c.t.Fatalf("%s: publish video: %v", c.name, err)
	}
	s.audio, err = c.room.LocalParticipant.PublishTrack(at, &lksdk.TrackPublicationOptions{Name: "mic", Source: livekit.TrackSource_MICROPHONE})
	if err != nil {
		c.t.Fatalf("%s: publish audio: %v", c.name, err)
	}
	s.done.Add(1)
	go func() {
		defer s.done.Done()
		frame := make([]byte, 900)
		voice := make([]byte, 80)
		vtick := time.NewTicker(33 * time.Millisecond)
		atick := time.NewTicker(20 * time.Millisecond)
		defer vtick.Stop()
		defer atick.Stop()
		for i := 0; ; {
			select {
			case <-s.stop:
				return
			case <-vtick.C:
				frame[0] = 0x01 // VP8 payload header: inverse key frame flag set
				if i%30 == 0 {
					frame[0] = 0x00
				}
				i++
				_ = vt.WriteSample(media.Sample{Data: frame, Duration: 33 * time.Millisecond}, nil)
			case <-atick.C:
				_ = at.WriteSample(media.Sample{Data: voice, Duration: 20 * time.Millisecond}, nil)
			}
		}
	}()
	c.t.Cleanup(s.close)
	return s
}

func (s *synthetic) close() {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	s.done.Wait()
}

// flowing waits until c has received n more packets of each kind from
// publisher than it had.
func (c *lkClient) flowing(publisher string, n int64) {
	c.t.Helper()
	v0, a0 := c.received(publisher, "video"), c.received(publisher, "audio")
	eventually(c.t, 20*time.Second, fmt.Sprintf("%s receives %s's media", c.name, publisher), func() bool {
		return c.received(publisher, "video") >= v0+n && c.received(publisher, "audio") >= a0+n
	})
}

// TestTwoParticipants: two Go SDK clients join, publish VP8 and Opus,
// and each receives the other's media; mute and unmute reach the other;
// a data packet reaches its destination; leaving is seen.
func TestTwoParticipants(t *testing.T) {
	e := newSigEnv(t, nil)
	alice := e.connect("alice", "room")
	bob := e.connect("bob", "room")
	eventually(t, 5*time.Second, "alice sees bob", func() bool {
		in, _ := alice.presence("bob")
		return in
	})
	aliceMedia := alice.publish()
	bob.publish()
	bob.flowing("alice", 30)
	alice.flowing("bob", 30)

	// What bob's client got: the stream and track IDs the client finds
	// the publication with, and the track info echoed from add_track.
	vsid := aliceMedia.video.SID()
	vt := bob.track("alice", "video")
	if want := alice.room.LocalParticipant.SID() + "|" + vsid; vt.StreamID() != want || vt.ID() != vsid {
		t.Errorf("stream %q track %q, want %q and %q", vt.StreamID(), vt.ID(), want, vsid)
	}
	bob.mu.Lock()
	info := bob.infos[vsid]
	bob.mu.Unlock()
	if info.GetSource() != livekit.TrackSource_CAMERA || info.GetEncryption() != livekit.Encryption_GCM ||
		info.GetType() != livekit.TrackType_VIDEO || !strings.EqualFold(info.GetMimeType(), "video/vp8") || info.GetWidth() != 640 {
		t.Errorf("track info %v", info)
	}

	// Mute and unmute.
	aliceMedia.video.SetMuted(true)
	eventually(t, 5*time.Second, "bob sees alice's camera muted", func() bool {
		bob.mu.Lock()
		defer bob.mu.Unlock()
		m, ok := bob.muted[vsid]
		return ok && m
	})
	aliceMedia.video.SetMuted(false)
	eventually(t, 5*time.Second, "bob sees alice's camera unmuted", func() bool {
		bob.mu.Lock()
		defer bob.mu.Unlock()
		return !bob.muted[vsid]
	})

	// Data to a destination.
	if err := alice.room.LocalParticipant.PublishDataPacket(lksdk.UserData([]byte("hello")),
		lksdk.WithDataPublishReliable(true), lksdk.WithDataPublishDestination([]string{"bob"})); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "bob receives alice's data", func() bool {
		bob.mu.Lock()
		defer bob.mu.Unlock()
		return len(bob.data) > 0 && bob.data[0].SenderIdentity == "alice"
	})

	// Alice unpublishes her camera: bob hears of it, the audio goes on.
	if err := alice.room.LocalParticipant.UnpublishTrack(vsid); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "bob sees alice's camera unpublished", func() bool {
		bob.mu.Lock()
		defer bob.mu.Unlock()
		return bob.unpublished[vsid]
	})

	// Alice leaves.
	alice.disconnect()
	eventually(t, 5*time.Second, "bob sees alice leave", func() bool {
		in, known := bob.presence("alice")
		return known && !in
	})
	eventually(t, 5*time.Second, "the room keeps bob alone", func() bool {
		return len(e.srv.members(e.srv.rooms["room"])) == 1
	})
}

// TestResume: alice's websocket drops; she resumes the same session and
// media flows both ways again, without bob seeing her leave.
func TestResume(t *testing.T) {
	e := newSigEnv(t, nil)
	alice := e.connect("alice", "room")
	bob := e.connect("bob", "room")
	alice.publish()
	bob.publish()
	bob.flowing("alice", 20)
	alice.flowing("bob", 20)
	sid := alice.room.LocalParticipant.SID()

	alice.room.Simulate(lksdk.SimulateSignalReconnect)
	eventually(t, 20*time.Second, "alice resumes", func() bool { return alice.reconnected.Load() > 0 })
	if got := alice.room.LocalParticipant.SID(); got != sid {
		t.Errorf("sid %s after resume, want %s", got, sid)
	}
	bob.flowing("alice", 30)
	alice.flowing("bob", 30)
	if in, _ := bob.presence("alice"); !in {
		t.Error("bob saw alice leave during her resume")
	}
}

// TestExplicitSubscription: without auto_subscribe nothing arrives until
// the client subscribes; unsubscribing stops it.
func TestExplicitSubscription(t *testing.T) {
	e := newSigEnv(t, nil)
	alice := e.connect("alice", "room")
	media := alice.publish()
	var pub *lksdk.RemoteTrackPublication
	bob := e.connect("bob", "room", lksdk.WithAutoSubscribe(false))
	eventually(t, 5*time.Second, "bob sees alice's camera", func() bool {
		rp := bob.room.GetParticipantByIdentity("alice")
		if rp == nil {
			return false
		}
		if tp, ok := rp.GetTrackPublication(livekit.TrackSource_CAMERA).(*lksdk.RemoteTrackPublication); ok && tp != nil {
			pub = tp
			return pub.SID() == media.video.SID()
		}
		return false
	})
	time.Sleep(500 * time.Millisecond)
	if n := bob.received("alice", "video"); n != 0 {
		t.Fatalf("bob received %d packets without subscribing", n)
	}
	if err := pub.SetSubscribed(true); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "bob receives the camera he subscribed to", func() bool {
		return bob.received("alice", "video") > 20
	})
	if n := bob.received("alice", "audio"); n != 0 {
		t.Errorf("bob received %d audio packets he did not subscribe to", n)
	}
}

// TestChurnLeavesNoGhost: a client that joins and drops before its media
// connects (Element Call's first, hashed-identity connection) is gone at
// once, not after the reconnect window.
func TestChurnLeavesNoGhost(t *testing.T) {
	e := newSigEnv(t, func(o *Options) { o.ReconnectWindow = time.Minute })
	bob := dialRaw(t, e, sigToken(t, "bob", "room", time.Hour, nil), "")
	defer bob.close()
	for i := 0; i < 3; i++ {
		ghost := dialRaw(t, e, sigToken(t, fmt.Sprintf("hashed-%d", i), "room", time.Hour, nil), "")
		time.Sleep(80 * time.Millisecond)
		ghost.close()
	}
	eventually(t, 5*time.Second, "only bob is left", func() bool {
		e.srv.mu.Lock()
		r := e.srv.rooms["room"]
		n := len(r.participants)
		e.srv.mu.Unlock()
		return n == 1
	})
	left := map[string]bool{}
	bob.waitFor(5*time.Second, func(r *livekit.SignalResponse) bool {
		for _, p := range r.GetUpdate().GetParticipants() {
			if p.GetState() == livekit.ParticipantInfo_DISCONNECTED {
				left[p.GetIdentity()] = true
			}
		}
		return len(left) == 3
	})
}

// publishSimulcast publishes a VP8 camera in three layers, q h f, each
// payload ending in its layer's index, until the test ends.
func (c *lkClient) publishSimulcast() *lksdk.LocalTrackPublication {
	c.t.Helper()
	layers := []*livekit.VideoLayer{
		{Quality: livekit.VideoQuality_LOW, Width: 320, Height: 180},
		{Quality: livekit.VideoQuality_MEDIUM, Width: 640, Height: 360},
		{Quality: livekit.VideoQuality_HIGH, Width: 1280, Height: 720},
	}
	var tracks []*lksdk.LocalTrack
	for _, l := range layers {
		tr, err := lksdk.NewLocalSampleTrack(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000},
			lksdk.WithSimulcast("camera", l))
		if err != nil {
			c.t.Fatal(err)
		}
		tracks = append(tracks, tr)
	}
	pub, err := c.room.LocalParticipant.PublishSimulcastTrack(tracks, &lksdk.TrackPublicationOptions{
		Name: "camera", Source: livekit.TrackSource_CAMERA, VideoWidth: 1280, VideoHeight: 720,
	})
	if err != nil {
		c.t.Fatalf("%s: publish simulcast: %v", c.name, err)
	}
	stop := make(chan struct{})
	var done sync.WaitGroup
	done.Add(1)
	go func() {
		defer done.Done()
		frame := make([]byte, 600)
		tick := time.NewTicker(33 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			for l, tr := range tracks {
				frame[0] = 0x01
				if i%15 == 0 {
					frame[0] = 0x00
				}
				frame[len(frame)-1] = byte(l)
				_ = tr.WriteSample(media.Sample{Data: frame, Duration: 33 * time.Millisecond}, nil)
			}
		}
	}()
	c.t.Cleanup(func() { close(stop); done.Wait() })
	return pub
}

// TestSimulcastLayerChoice: a subscriber gets the top layer, the layer
// its wanted size picks, nothing while it disables the track, and media
// again when it enables it.
func TestSimulcastLayerChoice(t *testing.T) {
	e := newSigEnv(t, nil)
	alice := e.connect("alice", "room")
	bob := e.connect("bob", "room")
	vpub := alice.publishSimulcast()
	eventually(t, 20*time.Second, "bob receives alice's top layer", func() bool {
		return bob.received("alice", "video") > 10 && bob.lastLayer("alice", "video") == 2
	})
	var pub *lksdk.RemoteTrackPublication
	if rp := bob.room.GetParticipantByIdentity("alice"); rp != nil {
		pub, _ = rp.GetTrackPublication(livekit.TrackSource_CAMERA).(*lksdk.RemoteTrackPublication)
	}
	if pub == nil || pub.SID() != vpub.SID() {
		t.Fatal("bob does not see alice's camera")
	}
	for _, step := range []struct {
		w, h  uint32
		layer int32
	}{{320, 180, 0}, {600, 340, 1}, {1280, 720, 2}} {
		pub.SetVideoDimensions(step.w, step.h)
		eventually(t, 10*time.Second, fmt.Sprintf("bob receives layer %d at %dx%d", step.layer, step.w, step.h), func() bool {
			return bob.lastLayer("alice", "video") == step.layer
		})
	}
	pub.SetEnabled(false)
	time.Sleep(300 * time.Millisecond)
	n := bob.received("alice", "video")
	time.Sleep(500 * time.Millisecond)
	if m := bob.received("alice", "video"); m != n {
		t.Errorf("bob received %d packets while the track was disabled", m-n)
	}
	pub.SetEnabled(true)
	eventually(t, 10*time.Second, "bob receives alice's camera again", func() bool {
		return bob.received("alice", "video") > n+10
	})
}

// rtcClient is a raw signalling client with a real subscriber
// PeerConnection, for what the SDKs do not let a test do: leave an offer
// unanswered.
type rtcClient struct {
	*rawClient
	sub    *webrtc.PeerConnection
	ufrags map[string]bool // ICE usernames of the offers seen
	msgs   chan *livekit.SignalResponse
	mu     sync.Mutex
	got    map[string]int // stream ID → RTP packets
	wg     sync.WaitGroup
}

func newRTCClient(t *testing.T, raw *rawClient) *rtcClient {
	t.Helper()
	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	me := &webrtc.MediaEngine{}
	if err := me.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	pc, err := webrtc.NewAPI(webrtc.WithSettingEngine(se), webrtc.WithMediaEngine(me)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	c := &rtcClient{rawClient: raw, sub: pc, ufrags: map[string]bool{}, got: map[string]int{}}
	t.Cleanup(func() {
		_ = pc.Close()
		_ = c.ws.CloseNow()
		c.wg.Wait()
	})
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		c.wg.Add(1)
		defer c.wg.Done()
		for {
			if _, _, err := tr.ReadRTP(); err != nil {
				return
			}
			c.mu.Lock()
			c.got[tr.StreamID()]++
			c.mu.Unlock()
		}
	})
	return c
}

// attach makes raw the client's signalling connection, and trickles the
// subscriber's candidates on it.
func (c *rtcClient) attach(raw *rawClient) {
	c.rawClient = raw
	msgs := make(chan *livekit.SignalResponse, 256)
	c.msgs = msgs
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer close(msgs)
		for {
			r, err := raw.tryRead(time.Minute)
			if err != nil {
				return
			}
			msgs <- r
		}
	}()
	c.sub.OnICECandidate(func(cand *webrtc.ICECandidate) {
		if cand == nil {
			return
		}
		b, _ := json.Marshal(cand.ToJSON())
		req, _ := proto.Marshal(&livekit.SignalRequest{Message: &livekit.SignalRequest_Trickle{Trickle: &livekit.TrickleRequest{
			CandidateInit: string(b), Target: livekit.SignalTarget_SUBSCRIBER,
		}}})
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = raw.ws.Write(ctx, websocket.MessageBinary, req)
	})
}

// pump handles the focus's messages (offers answered when answer is
// set, candidates added) until done reports true.
func (c *rtcClient) pump(timeout time.Duration, answer bool, done func(*livekit.SignalResponse) bool) {
	c.t.Helper()
	deadline := time.After(timeout)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		var r *livekit.SignalResponse
		select {
		case <-deadline:
			c.t.Fatal("timed out pumping signalling")
		case <-tick.C:
			if done(nil) {
				return
			}
			continue
		case r = <-c.msgs:
			if r == nil {
				c.t.Fatal("the signalling connection ended")
			}
		}
		if o := r.GetOffer(); o != nil {
			for _, line := range strings.Split(o.GetSdp(), "\r\n") {
				if u, ok := strings.CutPrefix(line, "a=ice-ufrag:"); ok {
					c.ufrags[u] = true
				}
			}
			if answer {
				if err := c.sub.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: o.GetSdp()}); err != nil {
					c.t.Fatal(err)
				}
				a, err := c.sub.CreateAnswer(nil)
				if err == nil {
					err = c.sub.SetLocalDescription(a)
				}
				if err != nil {
					c.t.Fatal(err)
				}
				c.send(&livekit.SignalRequest{Message: &livekit.SignalRequest_Answer{Answer: &livekit.SessionDescription{
					Type: "answer", Sdp: a.SDP, Id: o.GetId(),
				}}})
			}
		}
		if tr := r.GetTrickle(); tr != nil && tr.GetTarget() == livekit.SignalTarget_SUBSCRIBER {
			var init webrtc.ICECandidateInit
			if json.Unmarshal([]byte(tr.GetCandidateInit()), &init) == nil {
				_ = c.sub.AddICECandidate(init)
			}
		}
		if done(r) {
			return
		}
	}
}

func (c *rtcClient) packets(stream string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for s, k := range c.got {
		if strings.HasPrefix(s, stream) {
			n += k
		}
	}
	return n
}

// TestResumeWithUnansweredOffer: the websocket drops while a subscriber
// offer is out. pion cannot replace that offer, so on resume it goes
// again, and the ICE restart follows its answer; media from a publisher
// that came meanwhile arrives.
func TestResumeWithUnansweredOffer(t *testing.T) {
	e := newSigEnv(t, nil)
	bob := e.connect("bob", "room")
	bob.publish()
	tok := sigToken(t, "alice", "room", time.Hour, nil)
	alice := newRTCClient(t, dialRaw(t, e, tok, ""))
	alice.attach(alice.rawClient)
	bobSID := bob.room.LocalParticipant.SID()
	connected := func(*livekit.SignalResponse) bool {
		return alice.sub.ConnectionState() == webrtc.PeerConnectionStateConnected && alice.packets(bobSID) > 20
	}
	alice.pump(20*time.Second, true, connected)

	carol := e.connect("carol", "room")
	carol.publish()
	alice.pump(10*time.Second, false, func(r *livekit.SignalResponse) bool { return r.GetOffer() != nil })
	alice.close()
	time.Sleep(200 * time.Millisecond)

	sid := alice.join.GetParticipant().GetSid()
	raw := dialRaw(t, e, tok, "reconnect=1&sid="+sid)
	defer raw.close()
	if raw.first.GetReconnect() == nil {
		t.Fatalf("resume answered with %v", raw.first)
	}
	alice.attach(raw)
	before := len(alice.ufrags)
	carolSID := carol.room.LocalParticipant.SID()
	alice.pump(20*time.Second, true, func(*livekit.SignalResponse) bool {
		return len(alice.ufrags) > before && alice.sub.ConnectionState() == webrtc.PeerConnectionStateConnected &&
			alice.packets(carolSID) > 20
	})
	if in, _ := bob.presence("alice"); !in {
		t.Error("bob saw alice leave during her resume")
	}
}

// TestPublisherHears: a publisher on a bare pion connection gets
// track_published, then track_subscribed and subscribed_quality_update
// as a subscriber comes and goes.
func TestPublisherHears(t *testing.T) {
	e := newSigEnv(t, nil)
	raw := dialRaw(t, e, sigToken(t, "alice", "room", time.Hour, nil), "")
	alice := newRTCClient(t, raw)
	alice.attach(raw)
	raw.send(&livekit.SignalRequest{Message: &livekit.SignalRequest_AddTrack{AddTrack: &livekit.AddTrackRequest{
		Cid: "cam", Type: livekit.TrackType_VIDEO, Source: livekit.TrackSource_CAMERA, Width: 640, Height: 360,
		Encryption: livekit.Encryption_GCM,
		Layers:     []*livekit.VideoLayer{{Quality: livekit.VideoQuality_HIGH, Width: 640, Height: 360}},
	}}})
	var info *livekit.TrackInfo
	alice.pump(5*time.Second, true, func(r *livekit.SignalResponse) bool {
		if tp := r.GetTrackPublished(); tp != nil && tp.GetCid() == "cam" {
			info = tp.GetTrack()
		}
		return info != nil
	})
	if !strings.HasPrefix(info.GetSid(), "TR_") || info.GetEncryption() != livekit.Encryption_GCM || info.GetSource() != livekit.TrackSource_CAMERA {
		t.Fatalf("track_published %v", info)
	}

	// The publisher connection, offered by the client.
	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	me := &webrtc.MediaEngine{}
	if err := me.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	pub, err := webrtc.NewAPI(webrtc.WithSettingEngine(se), webrtc.WithMediaEngine(me)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	track, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "cam", "stream")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pub.AddTrack(track); err != nil {
		t.Fatal(err)
	}
	pub.OnICECandidate(func(c *webrtc.ICECandidate) {
		if c == nil {
			return
		}
		b, _ := json.Marshal(c.ToJSON())
		raw.send(&livekit.SignalRequest{Message: &livekit.SignalRequest_Trickle{Trickle: &livekit.TrickleRequest{
			CandidateInit: string(b), Target: livekit.SignalTarget_PUBLISHER,
		}}})
	})
	offer, err := pub.CreateOffer(nil)
	if err == nil {
		err = pub.SetLocalDescription(offer)
	}
	if err != nil {
		t.Fatal(err)
	}
	raw.send(&livekit.SignalRequest{Message: &livekit.SignalRequest_Offer{Offer: &livekit.SessionDescription{Type: "offer", Sdp: offer.SDP, Id: 1}}})
	var answered bool
	alice.pump(5*time.Second, true, func(r *livekit.SignalResponse) bool {
		if a := r.GetAnswer(); a != nil {
			if a.GetId() != 1 {
				t.Errorf("answer id %d, want the offer's 1", a.GetId())
			}
			if err := pub.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: a.GetSdp()}); err != nil {
				t.Fatal(err)
			}
			answered = true
		}
		if tr := r.GetTrickle(); tr != nil && tr.GetTarget() == livekit.SignalTarget_PUBLISHER {
			var init webrtc.ICECandidateInit
			if json.Unmarshal([]byte(tr.GetCandidateInit()), &init) == nil {
				_ = pub.AddICECandidate(init)
			}
		}
		return answered
	})
	stop := make(chan struct{})
	var sending sync.WaitGroup
	sending.Add(1)
	go func() {
		defer sending.Done()
		payload := make([]byte, 300)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(30 * time.Millisecond):
			}
			payload[0] = 0x10 // VP8 descriptor: start of partition 0
			payload[1] = 0x01 // inverse key frame flag: a delta frame
			if i%10 == 0 {
				payload[1] = 0x00
			}
			_ = track.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: uint16(i), Timestamp: uint32(i) * 2700, Marker: true}, Payload: payload})
		}
	}()
	defer func() { close(stop); sending.Wait() }()

	// Bob subscribes (auto_subscribe): alice hears her camera is
	// subscribed. A publisher starts out sending every layer, and the
	// core starts out wanting them all (or wants none, when its first
	// round ran before bob came): a quality update, if any, enables.
	bob := e.connect("bob", "room")
	quality := func(q *livekit.SubscribedQualityUpdate) (enabled bool, ok bool) {
		if q.GetTrackSid() != info.GetSid() {
			return false, false
		}
		codecs := q.GetSubscribedCodecs()
		if len(codecs) != 1 || codecs[0].GetCodec() != "vp8" || len(codecs[0].GetQualities()) != 3 || len(q.GetSubscribedQualities()) != 3 {
			t.Errorf("subscribed_quality_update %v: want the vp8 codec's three qualities", q)
			return false, false
		}
		enabled = codecs[0].GetQualities()[0].GetEnabled()
		for i, sq := range q.GetSubscribedQualities() {
			// A single-layer track is on or off as a whole.
			if sq.GetEnabled() != enabled || codecs[0].GetQualities()[i].GetEnabled() != enabled {
				t.Errorf("subscribed_quality_update %v: qualities differ", q)
			}
		}
		return enabled, true
	}
	subscribed, enabled := false, true
	alice.pump(20*time.Second, true, func(r *livekit.SignalResponse) bool {
		if r.GetTrackSubscribed().GetTrackSid() == info.GetSid() {
			subscribed = true
		}
		if on, ok := quality(r.GetSubscribedQualityUpdate()); ok {
			enabled = on
		}
		return subscribed && enabled
	})
	eventually(t, 10*time.Second, "bob receives alice's camera", func() bool { return bob.received("alice", "video") > 10 })

	// Bob unsubscribes: nobody wants the camera. He subscribes again: it
	// is wanted again.
	rp := bob.room.GetParticipantByIdentity("alice")
	rpub, _ := rp.GetTrackPublication(livekit.TrackSource_CAMERA).(*lksdk.RemoteTrackPublication)
	for _, sub := range []bool{false, true} {
		if err := rpub.SetSubscribed(sub); err != nil {
			t.Fatal(err)
		}
		alice.pump(10*time.Second, true, func(r *livekit.SignalResponse) bool {
			on, ok := quality(r.GetSubscribedQualityUpdate())
			return ok && on == sub
		})
	}
}

func TestChooseLayer(t *testing.T) {
	info := &livekit.TrackInfo{Width: 1280, Height: 720, Layers: []*livekit.VideoLayer{
		{Quality: livekit.VideoQuality_HIGH, Width: 1280, Height: 720},
		{Quality: livekit.VideoQuality_LOW, Width: 320, Height: 180},
		{Quality: livekit.VideoQuality_MEDIUM, Width: 640, Height: 360},
	}}
	qhf := []string{"q", "h", "f"}
	tests := []struct {
		name string
		info *livekit.TrackInfo
		rids []string
		q    livekit.VideoQuality
		want int
	}{
		{"low", info, qhf, livekit.VideoQuality_LOW, 0},
		{"medium", info, qhf, livekit.VideoQuality_MEDIUM, 1},
		{"high", info, qhf, livekit.VideoQuality_HIGH, 2},
		{"off means the top", info, qhf, livekit.VideoQuality_OFF, 2},
		{"no info", nil, qhf, livekit.VideoQuality_MEDIUM, 1},
		{"two layers", info, []string{"q", "h"}, livekit.VideoQuality_HIGH, 1},
		{"other rids by position", info, []string{"a", "b", "c"}, livekit.VideoQuality_LOW, 0},
		{"rid order", info, []string{"f", "h", "q"}, livekit.VideoQuality_LOW, 2},
		{"rid from the layers", &livekit.TrackInfo{Layers: []*livekit.VideoLayer{{Quality: livekit.VideoQuality_MEDIUM, Rid: "x"}}},
			[]string{"q", "x", "f"}, livekit.VideoQuality_MEDIUM, 1},
	}
	for _, tt := range tests {
		if got := chooseLayer(tt.info, tt.rids, tt.q); got != tt.want {
			t.Errorf("%s: layer %d, want %d", tt.name, got, tt.want)
		}
	}
}

func TestEnabledQualities(t *testing.T) {
	tests := []struct {
		rids   []string
		wanted []bool
		want   []bool
	}{
		{[]string{"q", "h", "f"}, []bool{false, false, true}, []bool{true, true, true}},
		{[]string{"q", "h", "f"}, []bool{false, true, false}, []bool{true, true, false}},
		{[]string{"q", "h", "f"}, []bool{true, false, false}, []bool{true, false, false}},
		{[]string{"q", "h", "f"}, []bool{false, false, false}, []bool{false, false, false}},
		{[]string{"f", "h", "q"}, []bool{true, false, false}, []bool{true, true, true}}, // by name, not position
		{[]string{"a", "b"}, []bool{false, true}, []bool{true, true, true}},
		{[]string{"a", "b", "c"}, []bool{false, true, false}, []bool{true, true, false}},
		{nil, []bool{true}, []bool{true, true, true}},
		{nil, []bool{false}, []bool{false, false, false}},
	}
	for _, tt := range tests {
		if got := enabledQualities(tt.rids, tt.wanted); !equalBools(got, tt.want) {
			t.Errorf("enabledQualities(%v, %v) = %v, want %v", tt.rids, tt.wanted, got, tt.want)
		}
	}
}

func TestCoreSource(t *testing.T) {
	if coreSource(livekit.TrackSource_SCREEN_SHARE, focus.KindVideo) != focus.SourceScreenShare ||
		coreSource(livekit.TrackSource_UNKNOWN, focus.KindAudio) != focus.SourceMicrophone ||
		coreSource(livekit.TrackSource_UNKNOWN, focus.KindVideo) != focus.SourceCamera {
		t.Error("source mapping")
	}
}
