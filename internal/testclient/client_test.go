package testclient

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// relay is the smallest WHIP/WHEP server that can exercise the clients: one
// room, one publisher forwarded verbatim (pion keeps sequence numbers and
// timestamps and rewrites only the SSRC) to any number of viewers, a PLI to
// the publisher for each new viewer.
type relay struct {
	t     *testing.T
	api   *webrtc.API
	video *webrtc.TrackLocalStaticRTP
	audio *webrtc.TrackLocalStaticRTP

	mu        sync.Mutex
	pcs       map[string]*webrtc.PeerConnection
	publisher *webrtc.PeerConnection
	videoSSRC webrtc.SSRC
	wg        sync.WaitGroup
}

func newRelay(t *testing.T) *relay {
	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	me := &webrtc.MediaEngine{}
	if err := me.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	r := &relay{t: t, api: webrtc.NewAPI(webrtc.WithSettingEngine(se), webrtc.WithMediaEngine(me)), pcs: map[string]*webrtc.PeerConnection{}}
	var err error
	r.video, err = webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8}, "v", "relay")
	if err != nil {
		t.Fatal(err)
	}
	r.audio, err = webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus}, "a", "relay")
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *relay) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method == http.MethodDelete {
		r.mu.Lock()
		pc := r.pcs[req.URL.Path]
		delete(r.pcs, req.URL.Path)
		r.mu.Unlock()
		if pc == nil {
			http.NotFound(w, req)
			return
		}
		_ = pc.GracefulClose()
		w.WriteHeader(http.StatusOK)
		return
	}
	offer, _ := io.ReadAll(req.Body)
	pc, err := r.api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		http.Error(w, err.Error(), 500)
		return
	}
	publish := req.URL.Path == "/whip/room"
	if publish {
		pc.OnTrack(r.forward)
	} else {
		pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
			if s == webrtc.PeerConnectionStateConnected {
				r.requestKeyframe()
			}
		})
		for _, t := range []webrtc.TrackLocal{r.video, r.audio} {
			if _, err := pc.AddTrack(t); err != nil {
				http.Error(w, err.Error(), 500)
				return
			}
		}
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: string(offer)}); err != nil {
		http.Error(w, err.Error(), 400)
		return
	}
	answer, _ := pc.CreateAnswer(nil)
	done := webrtc.GatheringCompletePromise(pc)
	_ = pc.SetLocalDescription(answer)
	<-done
	r.mu.Lock()
	id := req.URL.Path + "/" + strconv.Itoa(len(r.pcs)+1)
	r.pcs[id] = pc
	if publish {
		r.publisher = pc
	}
	r.mu.Unlock()
	w.Header().Set("Location", id)
	w.Header().Set("Content-Type", "application/sdp")
	w.WriteHeader(http.StatusCreated)
	_, _ = io.WriteString(w, pc.LocalDescription().SDP)
}

func (r *relay) requestKeyframe() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.publisher != nil && r.videoSSRC != 0 {
		_ = r.publisher.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: uint32(r.videoSSRC)}})
	}
}

func (r *relay) forward(t *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
	out := r.audio
	if t.Kind() == webrtc.RTPCodecTypeVideo {
		out = r.video
		r.mu.Lock()
		r.videoSSRC = t.SSRC()
		r.mu.Unlock()
	}
	r.wg.Add(1)
	defer r.wg.Done()
	for {
		p, _, err := t.ReadRTP()
		if err != nil {
			return
		}
		_ = out.WriteRTP(p)
	}
}

func (r *relay) Close() {
	r.mu.Lock()
	pcs := r.pcs
	r.pcs = nil
	r.mu.Unlock()
	for _, pc := range pcs {
		_ = pc.GracefulClose()
	}
	r.wg.Wait()
}

// TestClientsThroughRelay runs a publisher and two viewers through the
// relay: it checks the clients against each other, not any SFU.
func TestClientsThroughRelay(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r := newRelay(t)
	srv := httptest.NewServer(r)
	defer srv.Close()
	defer r.Close()

	// Viewers join first so that they see the publisher's first packet,
	// a keyframe.
	var viewers []*Viewer
	for range 2 {
		v, err := View(ctx, srv.URL, "room", ViewOptions{})
		if err != nil {
			t.Fatalf("View: %v", err)
		}
		viewers = append(viewers, v)
	}
	pub, err := Publish(ctx, srv.URL, "room", PublishOptions{KeyframeInterval: time.Hour})
	if err != nil {
		t.Fatalf("Publish: %v", err)
	}
	for _, v := range viewers {
		if err := v.WaitPackets(ctx, webrtc.RTPCodecTypeVideo, 150); err != nil {
			t.Fatal(err)
		}
		if err := v.WaitPackets(ctx, webrtc.RTPCodecTypeAudio, 50); err != nil {
			t.Fatal(err)
		}
	}
	// A third viewer joins mid-stream; the relay asks for a keyframe.
	late, err := View(ctx, srv.URL, "room", ViewOptions{})
	if err != nil {
		t.Fatalf("View: %v", err)
	}
	if err := late.WaitPackets(ctx, webrtc.RTPCodecTypeVideo, 10); err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, "late viewer keyframe", func() bool { return late.Stats().Video.Keyframes > 0 })
	if got := pub.PLIs(); got < 1 {
		t.Errorf("publisher saw %d PLIs, want at least 1", got)
	}

	if err := pub.Close(); err != nil {
		t.Errorf("publisher Close: %v", err)
	}
	for i, v := range viewers {
		st := v.Stats()
		t.Logf("viewer %d: video %+v", i, st.Video.Seq)
		for _, k := range []struct {
			name string
			s    TrackStats
		}{{"video", st.Video}, {"audio", st.Audio}} {
			s := k.s
			if s.Corrupt != 0 || s.Intact != s.Packets {
				t.Errorf("viewer %d %s: %d corrupt, %d intact of %d", i, k.name, s.Corrupt, s.Intact, s.Packets)
			}
			if s.Seq.Gaps != 0 || s.Seq.Missing != 0 || s.Seq.Duplicates != 0 {
				t.Errorf("viewer %d %s: sequence %+v", i, k.name, s.Seq)
			}
			if s.TimestampRegressions != 0 || s.SSRCChanges != 0 || s.Sessions != 1 || s.CounterGaps != 0 {
				t.Errorf("viewer %d %s: ts regressions %d, ssrc changes %d, sessions %d, counter gaps %d",
					i, k.name, s.TimestampRegressions, s.SSRCChanges, s.Sessions, s.CounterGaps)
			}
		}
		if !st.Video.FirstKeyframe || st.Video.SessionKeyframeStarts != 1 || st.Video.VP8Errors != 0 {
			t.Errorf("viewer %d: first keyframe %v, sessions starting at a keyframe %d, VP8 errors %d",
				i, st.Video.FirstKeyframe, st.Video.SessionKeyframeStarts, st.Video.VP8Errors)
		}
		if st.Video.Keyframes < 2 { // the first, and the one the late viewer asked for
			t.Errorf("viewer %d: %d keyframes, want at least 2", i, st.Video.Keyframes)
		}
		if err := v.Close(); err != nil {
			t.Errorf("viewer %d Close: %v", i, err)
		}
	}

	// A vanished viewer says nothing: the relay's side must not learn of it
	// from a DTLS close_notify, only from ICE timing out later.
	u, err := url.Parse(late.Resource())
	if err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	peer := r.pcs[u.Path]
	r.mu.Unlock()
	if err := late.Vanish(); err != nil {
		t.Errorf("Vanish: %v", err)
	}
	time.Sleep(time.Second)
	if st := peer.ConnectionState(); st != webrtc.PeerConnectionStateConnected {
		t.Errorf("relay side of a vanished viewer is %s 1 s later, want still connected", st)
	}
	waitFor(ctx, t, "ICE to notice the vanished viewer", func() bool {
		return peer.ICEConnectionState() == webrtc.ICEConnectionStateDisconnected
	})
}

func waitFor(ctx context.Context, t *testing.T, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v", what, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}
