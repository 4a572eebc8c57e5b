package cascade

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/logging"
	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"

	"github.com/focus-sfu/focus/focus"
	"github.com/focus-sfu/focus/internal/vnettest"
	"github.com/focus-sfu/focus/whip"
)

// TestSimulcastOverTrunk: a simulcast publisher on a, and on b a viewer
// that shows the video at 320x180 and one that shows it whole. b pulls
// exactly the layers up to the highest one of them needs: layer 0 alone
// for the small viewer, all three with the full one, and layer 0 again a
// grace after the full one left. The small viewer receives layer 0
// throughout, the full one layer 2.
func TestSimulcastOverTrunk(t *testing.T) {
	m := newFakeMesh()
	a := startNode(t, m, "a")
	b := startNode(t, m, "b")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	api := simulcastAPI(t)

	_, proxy := publishSimulcast(ctx, t, api, a, b)

	small, err := vnettest.View(ctx, api, b.url+"/whep/r?width=320&height=180")
	if err != nil {
		t.Fatal(err)
	}
	defer closeQuietly(t, "small viewer", small)
	eventually(t, 10*time.Second, "the small viewer receives layer 0", func() bool {
		return countLayer(small.Packets(), 0, time.Time{}) >= 100
	})
	eventually(t, 5*time.Second, "b pulls layer 0 alone", func() bool {
		return slices.Equal(b.pulledLayers("a", string(proxy.ID())), []int{0})
	})
	settled := time.Now()
	time.Sleep(2500 * time.Millisecond) // a trunk rate sample of layer 0 alone
	if l := layersSince(small.Packets(), settled); !slices.Equal(l, []int{0}) {
		t.Errorf("the small viewer received layers %v, want [0]", l)
	}
	if s := b.cascade.Stats(); s.Subscriptions != 1 {
		t.Errorf("b pulls %d track layers for the small viewer, want 1", s.Subscriptions)
	}
	ts, _ := b.trunkTo("a", "pull")
	smallRate := ts.BitrateIn

	full, err := vnettest.View(ctx, api, b.url+"/whep/r")
	if err != nil {
		t.Fatal(err)
	}
	defer closeQuietly(t, "full viewer", full)
	joined := time.Now()
	eventually(t, 5*time.Second, "b pulls all three layers", func() bool {
		return slices.Equal(b.pulledLayers("a", string(proxy.ID())), []int{0, 1, 2})
	})
	eventually(t, 5*time.Second, "a exports all three layers", func() bool {
		ts, ok := a.trunkTo("b", "export")
		return ok && slices.Equal(trackLayers(ts, string(proxy.ID())), []int{0, 1, 2})
	})
	eventually(t, 30*time.Second, "the full viewer receives layer 2", func() bool {
		return countLayer(full.Packets(), 2, time.Time{}) >= 100
	})
	top := time.Now()
	t.Logf("the full viewer reached layer 2 %v after it joined", top.Sub(joined).Round(time.Millisecond))
	time.Sleep(2500 * time.Millisecond)
	if l := layersSince(full.Packets(), top); !slices.Equal(l, []int{2}) {
		t.Errorf("the full viewer received layers %v once at the top, want [2]", l)
	}
	if l := layersSince(small.Packets(), joined); !slices.Equal(l, []int{0}) {
		t.Errorf("the small viewer received layers %v beside the full one, want [0]", l)
	}
	if s := b.cascade.Stats(); s.Subscriptions != 3 {
		t.Errorf("b pulls %d track layers, want 3", s.Subscriptions)
	}
	ts, _ = b.trunkTo("a", "pull")
	fullRate := ts.BitrateIn
	t.Logf("trunk a→b: %d kbit/s with the small viewer, %d kbit/s with the full one too (layer payloads 150, 500, 1200 kbit/s)",
		smallRate/1000, fullRate/1000)
	if smallRate == 0 || smallRate > 400_000 || fullRate < 1_500_000 {
		t.Errorf("trunk rates %d and %d bit/s", smallRate, fullRate)
	}

	left := time.Now()
	closeQuietly(t, "full viewer", full)
	eventually(t, 10*time.Second, "b drops layers 1 and 2", func() bool {
		return slices.Equal(b.pulledLayers("a", string(proxy.ID())), []int{0})
	})
	if el := time.Since(left); el < defaultTiming().grace {
		t.Errorf("layers dropped %v after the full viewer left, before the %v grace", el, defaultTiming().grace)
	}
	eventually(t, 5*time.Second, "a exports layer 0 alone", func() bool {
		ts, ok := a.trunkTo("b", "export")
		return ok && slices.Equal(trackLayers(ts, string(proxy.ID())), []int{0})
	})
	dropped := time.Now()
	eventually(t, 5*time.Second, "the small viewer keeps receiving", func() bool {
		return countLayer(small.Packets(), 0, dropped) >= 50
	})
	if l := layersSince(small.Packets(), left); !slices.Equal(l, []int{0}) {
		t.Errorf("the small viewer received layers %v after the full one left, want [0]", l)
	}
}

// TestSimulcastKeyframeRequestPerLayer: a viewer on b of layer 1 of a
// simulcast track on a sends picture loss indications; each reaches the
// publisher on a as a request for layer 1, and none for another layer.
func TestSimulcastKeyframeRequestPerLayer(t *testing.T) {
	m := newFakeMesh()
	a := startNode(t, m, "a")
	b := startNode(t, m, "b")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	api := simulcastAPI(t)

	pub, proxy := publishSimulcast(ctx, t, api, a, b)

	v, err := viewWithPLI(ctx, api, b.url+"/whep/r?width=640&height=360")
	if err != nil {
		t.Fatal(err)
	}
	defer v.close()
	eventually(t, 10*time.Second, "b pulls layers 0 and 1", func() bool {
		return slices.Equal(b.pulledLayers("a", string(proxy.ID())), []int{0, 1})
	})
	eventually(t, 20*time.Second, "the viewer receives layer 1", func() bool { return v.packetsOf(1) >= 100 })
	// Let the start's keyframe requests settle, then count.
	time.Sleep(time.Second)
	before := []int64{pub.Stats(0).Requests, pub.Stats(1).Requests, pub.Stats(2).Requests}
	const plis = 5
	for range plis {
		if err := v.sendPLI(); err != nil {
			t.Fatal(err)
		}
		// Wider than the keyframe request budget of every hop.
		time.Sleep(700 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	after := []int64{pub.Stats(0).Requests, pub.Stats(1).Requests, pub.Stats(2).Requests}
	t.Logf("keyframe requests at the publisher per layer: before %v, after %d PLIs on layer 1 %v", before, plis, after)
	if got := after[1] - before[1]; got < plis-1 {
		t.Errorf("the publisher's layer 1 got %d keyframe requests for %d PLIs", got, plis)
	}
	if after[0] != before[0] || after[2] != before[2] {
		t.Errorf("PLIs on layer 1 reached other layers: layer 0 %d→%d, layer 2 %d→%d", before[0], after[0], before[2], after[2])
	}
	if l := v.layers(); !slices.Equal(l, []int{1}) && !slices.Equal(l, []int{0, 1}) {
		t.Errorf("the viewer received layers %v", l)
	}
}

// publishSimulcast publishes a simulcast camera into room "r" on a (the
// publisher is closed at the end of the test), waits until b shows it
// with its three layers and their sizes, and returns both.
func publishSimulcast(ctx context.Context, t *testing.T, api *webrtc.API, a, b *node) (*vnettest.Publisher, *focus.UpTrack) {
	t.Helper()
	pub, err := vnettest.Publish(ctx, api, a.url+"/whip/r", vnettest.SimulcastLayers)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeQuietly(t, "publisher", pub) })
	var up *focus.UpTrack
	eventually(t, 10*time.Second, "b proxies the camera with its layers and their sizes", func() bool {
		ps := b.proxiesFrom(whip.ConferenceID("r"), "a")
		if len(ps) != 1 || len(ps[0].Tracks()) != 1 {
			return false
		}
		up = ps[0].Tracks()[0]
		for i, l := range vnettest.SimulcastLayers {
			if up.LayerSize(i) != (focus.Size{Width: uint32(l.Width), Height: uint32(l.Height)}) {
				return false
			}
		}
		return up.Layers() == len(vnettest.SimulcastLayers)
	})
	return pub, up
}

// pulledLayers returns the layers of track that n's pulling trunk to
// peer carries, lowest first.
func (n *node) pulledLayers(peer, track string) []int {
	ts, ok := n.trunkTo(peer, "pull")
	if !ok {
		return nil
	}
	return trackLayers(ts, track)
}

// trackLayers returns the layers of track that ts carries, lowest first.
func trackLayers(ts TrunkStatus, track string) []int {
	var out []int
	for _, tt := range ts.Tracks {
		if tt.Track == track {
			out = append(out, tt.Layer)
		}
	}
	slices.Sort(out)
	return out
}

// countLayer counts the packets of layer received since from.
func countLayer(pkts []vnettest.Packet, layer int, from time.Time) int {
	n := 0
	for _, p := range pkts {
		if p.Layer == layer && !p.At.Before(from) {
			n++
		}
	}
	return n
}

// layersSince lists the layers of the packets received since from.
func layersSince(pkts []vnettest.Packet, from time.Time) []int {
	var out []int
	for _, p := range pkts {
		if !p.At.Before(from) && !slices.Contains(out, p.Layer) {
			out = append(out, p.Layer)
		}
	}
	slices.Sort(out)
	return out
}

func closeQuietly(t *testing.T, what string, c interface{ Close() error }) {
	if err := c.Close(); err != nil {
		t.Logf("close %s: %v", what, err)
	}
}

// simulcastAPI is a pion API for vnettest's simulcast clients on
// loopback: the default codecs and interceptors, the MID and RID header
// extensions, loopback candidates over UDP4, and pion's logs off.
func simulcastAPI(t *testing.T) *webrtc.API {
	t.Helper()
	me := &webrtc.MediaEngine{}
	if err := me.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	if err := webrtc.ConfigureSimulcastExtensionHeaders(me); err != nil {
		t.Fatal(err)
	}
	quiet := logging.NewDefaultLoggerFactory()
	quiet.DefaultLogLevel = logging.LogLevelDisabled
	reg := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptorsWithOptions(me, reg, webrtc.WithInterceptorLoggerFactory(quiet)); err != nil {
		t.Fatal(err)
	}
	if err := webrtc.ConfigureTWCCHeaderExtensionSender(me, reg); err != nil {
		t.Fatal(err)
	}
	se := webrtc.SettingEngine{LoggerFactory: quiet}
	se.SetIncludeLoopbackCandidate(true)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	return webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(reg), webrtc.WithSettingEngine(se))
}

// pliViewer is a WHEP viewer of one video track that counts the packets
// of each layer (by vnettest's trailer) and can send picture loss
// indications for the track it receives.
type pliViewer struct {
	pc       *webrtc.PeerConnection
	http     *http.Client
	resource string
	wg       sync.WaitGroup

	mu     sync.Mutex
	ssrc   uint32
	counts map[int]int
}

// viewWithPLI connects a pliViewer to the WHEP endpoint.
func viewWithPLI(ctx context.Context, api *webrtc.API, endpoint string) (*pliViewer, error) {
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, err
	}
	v := &pliViewer{pc: pc, counts: make(map[int]int),
		http: &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}}
	pc.OnTrack(func(track *webrtc.TrackRemote, r *webrtc.RTPReceiver) {
		v.wg.Add(2)
		defer v.wg.Done()
		v.mu.Lock()
		v.ssrc = uint32(track.SSRC())
		v.mu.Unlock()
		go func() {
			defer v.wg.Done()
			for {
				if _, _, err := r.ReadRTCP(); err != nil {
					return
				}
			}
		}()
		for {
			pkt, _, err := track.ReadRTP()
			if err != nil {
				return
			}
			if tr, err := vnettest.ParseTrailer(pkt.Payload); err == nil {
				v.mu.Lock()
				v.counts[tr.Layer]++
				v.mu.Unlock()
			}
		}
	})
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
		_ = pc.Close()
		return nil, err
	}
	if err := v.negotiate(ctx, endpoint); err != nil {
		v.close()
		return nil, err
	}
	return v, nil
}

func (v *pliViewer) negotiate(ctx context.Context, endpoint string) error {
	offer, err := v.pc.CreateOffer(nil)
	if err != nil {
		return err
	}
	gathered := webrtc.GatheringCompletePromise(v.pc)
	if err := v.pc.SetLocalDescription(offer); err != nil {
		return err
	}
	<-gathered
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(v.pc.LocalDescription().SDP))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/sdp")
	resp, err := v.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("WHEP: status %d: %s", resp.StatusCode, body)
	}
	loc, err := resp.Location()
	if err != nil {
		return err
	}
	v.resource = loc.String()
	return v.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: string(body)})
}

// sendPLI sends a picture loss indication for the track received.
func (v *pliViewer) sendPLI() error {
	v.mu.Lock()
	ssrc := v.ssrc
	v.mu.Unlock()
	if ssrc == 0 {
		return fmt.Errorf("no track received yet")
	}
	return v.pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: ssrc}})
}

func (v *pliViewer) packetsOf(layer int) int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.counts[layer]
}

// layers lists the layers received, lowest first.
func (v *pliViewer) layers() []int {
	v.mu.Lock()
	defer v.mu.Unlock()
	var out []int
	for l := range v.counts {
		out = append(out, l)
	}
	slices.Sort(out)
	return out
}

// close ends the WHEP session and the connection, and waits for the
// readers.
func (v *pliViewer) close() {
	if v.resource != "" {
		if req, err := http.NewRequest(http.MethodDelete, v.resource, nil); err == nil {
			if resp, err := v.http.Do(req); err == nil {
				resp.Body.Close()
			}
		}
	}
	_ = v.pc.Close()
	v.wg.Wait()
}
