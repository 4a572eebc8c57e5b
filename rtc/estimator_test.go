package rtc

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/twcc"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
	"github.com/rs/zerolog"

	"github.com/focus-sfu/focus/focus"
)

func newTestEstimator(t *testing.T) *estimator {
	t.Helper()
	var got *estimator
	i, err := estimatorFactory{built: func(e *estimator) { got = e }}.NewInterceptor("")
	if err != nil {
		t.Fatal(err)
	}
	if got == nil || got != i {
		t.Fatal("the factory did not hand over its estimator")
	}
	t.Cleanup(func() { _ = got.Close() })
	return got
}

// rtcpBytes marshals pkts as one compound packet.
func rtcpBytes(t *testing.T, pkts ...rtcp.Packet) []byte {
	t.Helper()
	b, err := rtcp.Marshal(pkts)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// feedbackFor is a transport-wide feedback packet reporting seqs as
// received 1 ms apart.
func feedbackFor(t *testing.T, seqs ...uint16) []byte {
	t.Helper()
	rec := twcc.NewRecorder(5)
	for i, s := range seqs {
		rec.Record(1, s, int64(1000*(i+1)))
	}
	return rtcpBytes(t, rec.BuildFeedbackPacket()...)
}

func TestEstimatorREMBOnlyWithoutTransportFeedback(t *testing.T) {
	for _, tc := range []struct {
		name string
		pkts [][]byte
		want uint64
	}{
		{"nothing yet", nil, bweInitial},
		{"REMB only", [][]byte{rtcpBytes(t, &rtcp.ReceiverEstimatedMaximumBitrate{Bitrate: 3e6})}, 3e6},
		{"latest REMB", [][]byte{
			rtcpBytes(t, &rtcp.ReceiverEstimatedMaximumBitrate{Bitrate: 3e6}),
			rtcpBytes(t, &rtcp.ReceiverReport{}, &rtcp.ReceiverEstimatedMaximumBitrate{Bitrate: 5e5}),
		}, 5e5},
		{"zero REMB ignored", [][]byte{rtcpBytes(t, &rtcp.ReceiverEstimatedMaximumBitrate{Bitrate: 0})}, bweInitial},
		// The send-side estimate is in charge once the subscriber sends
		// transport-wide feedback, even feedback about nothing sent.
		{"REMB and TWCC", [][]byte{
			rtcpBytes(t, &rtcp.ReceiverEstimatedMaximumBitrate{Bitrate: 3e6}),
			feedbackFor(t, 1, 2),
		}, bweInitial},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEstimator(t)
			for _, b := range tc.pkts {
				e.handleRTCP(b)
			}
			if got := e.TargetBitrate(); got != tc.want {
				t.Fatalf("TargetBitrate %d, want %d", got, tc.want)
			}
		})
	}
}

func TestEstimatorCongestionWithoutFeedback(t *testing.T) {
	e := newTestEstimator(t)
	if loss, over := e.Congestion(); loss != 0 || !over {
		t.Fatalf("no feedback: loss %v overusing %v; want congestion reported, so no probing", loss, over)
	}
	e.handleRTCP(feedbackFor(t, 1))
	if loss, over := e.Congestion(); loss != 0 || over {
		t.Fatalf("feedback: loss %v overusing %v", loss, over)
	}
}

// TestEstimatorCongestionGoesStale: the estimator keeps the verdict of
// the last feedback; once no feedback has come for feedbackStale
// (nothing reaches the subscriber, so it has nothing to report), it is
// no longer congestion, or a subscriber paused for bandwidth would never
// be probed again.
func TestEstimatorCongestionGoesStale(t *testing.T) {
	e := newTestEstimator(t)
	// Send 400 packets and report every other one lost: a loss batch
	// of 50 %.
	var seqs []uint16
	for i := range 400 {
		e.bwe.Sent(uint16(i+1), 1000, e.bwe.Now())
		if i%2 == 0 {
			seqs = append(seqs, uint16(i+1))
		}
	}
	e.handleRTCP(feedbackFor(t, seqs...))
	time.Sleep(10 * time.Millisecond)
	e.handleRTCP(feedbackFor(t, 400))
	loss, over := e.Congestion()
	if loss == 0 || !over {
		t.Fatalf("fresh feedback with 50 %% loss: loss %v overusing %v", loss, over)
	}
	e.feedbackAt.Store(int64(e.bwe.Now() - feedbackStale - time.Millisecond))
	if loss, over := e.Congestion(); loss != 0 || over {
		t.Fatalf("no feedback for %v: loss %v overusing %v, want none", feedbackStale, loss, over)
	}
}

func TestEstimatorCountsMalformedFeedback(t *testing.T) {
	// Feedback the estimator cannot read is counted, and the packet still
	// reaches the track.
	e := newTestEstimator(t)
	bad := feedbackFor(t, 1, 2, 3)
	bad = bad[:len(bad)-4]
	bad[2], bad[3] = 0, byte(len(bad)/4-1)
	r := e.BindRTCPReader(interceptor.RTCPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		return copy(b, bad), a, nil
	}))
	buf := make([]byte, 1500)
	n, _, err := r.Read(buf, nil)
	if err != nil || n != len(bad) {
		t.Fatalf("Read: %d %v", n, err)
	}
	if e.rtcpErrors.Load() == 0 {
		t.Fatal("the malformed feedback was not counted")
	}
	if e.twcc.Load() {
		t.Fatal("malformed feedback counted as feedback")
	}
}

// recordWriter records the headers written through it.
type recordWriter struct {
	ssrcs []uint32
	seqs  []uint16
	id    uint8
}

func (w *recordWriter) Write(h *rtp.Header, payload []byte, _ interceptor.Attributes) (int, error) {
	w.ssrcs = append(w.ssrcs, h.SSRC)
	if x := h.GetExtension(w.id); len(x) == 2 {
		w.seqs = append(w.seqs, uint16(x[0])<<8|uint16(x[1]))
	}
	return len(payload), nil
}

func TestEstimatorStampsEveryStream(t *testing.T) {
	e := newTestEstimator(t)
	exts := []interceptor.RTPHeaderExtension{{URI: sdp.SDESMidURI, ID: 1}, {URI: sdp.TransportCCURI, ID: 3}}
	var video, audio recordWriter
	video.id, audio.id = 3, 3
	v := e.BindLocalStream(&interceptor.StreamInfo{SSRC: 10, SSRCRetransmission: 11, RTPHeaderExtensions: exts}, &video)
	a := e.BindLocalStream(&interceptor.StreamInfo{SSRC: 20, RTPHeaderExtensions: exts}, &audio)
	for _, w := range []struct {
		w    interceptor.RTPWriter
		ssrc uint32
	}{{v, 10}, {a, 20}, {v, 11}, {v, 10}} {
		if _, err := w.w.Write(&rtp.Header{SSRC: w.ssrc}, []byte{1}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if got := append(video.seqs, audio.seqs...); len(got) != 4 || got[0] != 1 || got[1] != 3 || got[2] != 4 || got[3] != 2 {
		t.Fatalf("transport-wide sequence numbers %v, want one count across streams and RTX: [1 3 4 2]", got)
	}
	// A subscriber without transport-wide feedback gets no extension.
	var plain recordWriter
	plain.id = 3
	w := e.BindLocalStream(&interceptor.StreamInfo{SSRC: 30}, &plain)
	if _, err := w.Write(&rtp.Header{SSRC: 30}, []byte{1}, nil); err != nil || len(plain.seqs) != 0 {
		t.Fatalf("without the extension: %v %v", plain.seqs, err)
	}
}

func TestEstimatorWriteAllocatesNothing(t *testing.T) {
	e := newTestEstimator(t)
	var w recordWriter
	w.ssrcs = make([]uint32, 0, 1)
	w.seqs = make([]uint16, 0, 1)
	w.id = 3
	out := e.BindLocalStream(&interceptor.StreamInfo{SSRC: 10, RTPHeaderExtensions: []interceptor.RTPHeaderExtension{{URI: sdp.TransportCCURI, ID: 3}}}, &w)
	h := &rtp.Header{SSRC: 10, Extensions: make([]rtp.Extension, 0, 4)}
	payload := make([]byte, 1000)
	if n := testing.AllocsPerRun(1000, func() {
		w.ssrcs, w.seqs = w.ssrcs[:0], w.seqs[:0]
		_, _ = out.Write(h, payload, nil)
	}); n != 0 {
		t.Fatalf("Write allocates %v times", n)
	}
	fb := feedbackFor(t, 1, 2, 3, 4, 5)
	if n := testing.AllocsPerRun(1000, func() { e.handleRTCP(fb) }); n != 0 {
		t.Fatalf("handleRTCP allocates %v times", n)
	}
}

func BenchmarkEstimatorWrite(b *testing.B) {
	e := newEstimator()
	var w recordWriter
	w.ssrcs = make([]uint32, 0, 1)
	w.seqs = make([]uint16, 0, 1)
	out := e.BindLocalStream(&interceptor.StreamInfo{SSRC: 10, RTPHeaderExtensions: []interceptor.RTPHeaderExtension{{URI: sdp.TransportCCURI, ID: 3}}}, &w)
	h := &rtp.Header{SSRC: 10, Extensions: make([]rtp.Extension, 0, 4)}
	payload := make([]byte, 1000)
	b.ReportAllocs()
	for b.Loop() {
		w.ssrcs, w.seqs = w.ssrcs[:0], w.seqs[:0]
		_, _ = out.Write(h, payload, nil)
	}
}

func TestRTXPayloadType(t *testing.T) {
	codecs := func(fmtps ...string) []webrtc.RTPCodecParameters {
		var out []webrtc.RTPCodecParameters
		for i, f := range fmtps {
			out = append(out, webrtc.RTPCodecParameters{
				RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeRTX, SDPFmtpLine: f},
				PayloadType:        webrtc.PayloadType(110 + i),
			})
		}
		return out
	}
	for _, tc := range []struct {
		name   string
		pt     webrtc.PayloadType
		offers []webrtc.RTPCodecParameters
		want   webrtc.PayloadType
		ok     bool
	}{
		{"none", 96, nil, 0, false},
		{"match", 96, codecs("apt=98", "apt=96"), 111, true},
		{"prefix is not a match", 9, codecs("apt=96"), 0, false},
		{"with other parameters", 96, codecs("rtx-time=3000; apt=96"), 110, true},
		{"not rtx", 96, []webrtc.RTPCodecParameters{{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, SDPFmtpLine: "apt=96"}, PayloadType: 5}}, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := rtxPayloadType(tc.pt, tc.offers)
			if got != tc.want || ok != tc.ok {
				t.Fatalf("got %d %v, want %d %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

func FuzzRTXPayloadType(f *testing.F) {
	f.Add(uint8(96), "apt=96")
	f.Add(uint8(0), ";;apt=;")
	f.Fuzz(func(t *testing.T, pt uint8, fmtp string) {
		c := []webrtc.RTPCodecParameters{{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeRTX, SDPFmtpLine: fmtp}, PayloadType: 7}}
		if got, ok := rtxPayloadType(webrtc.PayloadType(pt), c); ok && got != 7 {
			t.Fatalf("payload type %d", got)
		}
	})
}

// TestPeersGetTheirOwnEstimators checks the handover from the
// estimator's factory: every connection gets a fresh estimator, which reports
// congestion, and a subscriber's answer offers RTX for every video codec.
func TestPeersGetTheirOwnEstimators(t *testing.T) {
	e, err := New(Config{BindAddress: "127.0.0.1"}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	seen := map[focus.BandwidthEstimator]bool{}
	for i := 0; i < 3; i++ {
		p, err := e.NewPeerConnection()
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		est := p.Estimator()
		if est == nil || seen[est] {
			t.Fatalf("connection %d: estimator %p reused or missing", i, est)
		}
		seen[est] = true
		if _, ok := est.(focus.CongestionReporter); !ok {
			t.Fatal("estimator is no CongestionReporter")
		}
		if got := est.TargetBitrate(); got != bweInitial {
			t.Fatalf("initial estimate %d", got)
		}
	}

	p, err := e.NewPeerConnection()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if _, err := p.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
		t.Fatal(err)
	}
	offer, err := p.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	for pt, rtx := range rtxPayloadTypes {
		line := "a=fmtp:" + strconv.Itoa(int(rtx)) + " apt=" + strconv.Itoa(int(pt))
		if !strings.Contains(offer.SDP, line) {
			t.Fatalf("offer lacks %q:\n%s", line, offer.SDP)
		}
	}
	if !strings.Contains(offer.SDP, "a=ssrc-group:FID ") {
		t.Fatalf("offer has no RTX stream:\n%s", offer.SDP)
	}
}
