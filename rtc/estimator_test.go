package rtc

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/gcc"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/rs/zerolog"

	"github.com/focus-sfu/focus/focus"
)

func newTestEstimator(t *testing.T) *estimator {
	t.Helper()
	b, err := newEstimatorFactory(nil)()
	if err != nil {
		t.Fatal(err)
	}
	e := b.(*estimator)
	t.Cleanup(func() { _ = e.Close() })
	return e
}

func TestEstimatorREMBOnlyWithoutTransportFeedback(t *testing.T) {
	for _, tc := range []struct {
		name string
		pkts [][]rtcp.Packet
		want uint64
	}{
		{"nothing yet", nil, bweInitial},
		{"REMB only", [][]rtcp.Packet{{&rtcp.ReceiverEstimatedMaximumBitrate{Bitrate: 3e6}}}, 3e6},
		{"latest REMB", [][]rtcp.Packet{
			{&rtcp.ReceiverEstimatedMaximumBitrate{Bitrate: 3e6}},
			{&rtcp.ReceiverReport{}, &rtcp.ReceiverEstimatedMaximumBitrate{Bitrate: 5e5}},
		}, 5e5},
		{"zero REMB ignored", [][]rtcp.Packet{{&rtcp.ReceiverEstimatedMaximumBitrate{Bitrate: 0}}}, bweInitial},
		// gcc is in charge once the subscriber sends transport-wide
		// feedback, even feedback gcc cannot map to anything sent.
		{"REMB and TWCC", [][]rtcp.Packet{
			{&rtcp.ReceiverEstimatedMaximumBitrate{Bitrate: 3e6}},
			{&rtcp.TransportLayerCC{}},
		}, bweInitial},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEstimator(t)
			for _, p := range tc.pkts {
				if err := e.WriteRTCP(p, nil); err != nil {
					t.Fatalf("WriteRTCP: %v", err)
				}
			}
			if got := e.TargetBitrate(); got != tc.want {
				t.Fatalf("TargetBitrate %d, want %d", got, tc.want)
			}
			if got := e.GetTargetBitrate(); uint64(got) != tc.want {
				t.Fatalf("GetTargetBitrate %d, want %d", got, tc.want)
			}
		})
	}
}

func TestEstimatorCongestionWithoutFeedback(t *testing.T) {
	e := newTestEstimator(t)
	if loss, over := e.Congestion(); loss != 0 || !over {
		t.Fatalf("no feedback: loss %v overusing %v; want congestion reported, so no probing", loss, over)
	}
	_ = e.WriteRTCP([]rtcp.Packet{&rtcp.TransportLayerCC{}}, nil)
	if loss, over := e.Congestion(); loss != 0 || over {
		t.Fatalf("empty feedback: loss %v overusing %v", loss, over)
	}
}

// TestEstimatorCongestionGoesStale: gcc's stats keep the values of the
// last feedback; once no feedback has come for feedbackStale (nothing
// reaches the subscriber, so it has nothing to report), they are no
// longer congestion, or a subscriber paused for bandwidth would never be
// probed again.
func TestEstimatorCongestionGoesStale(t *testing.T) {
	e := newTestEstimator(t)
	_ = e.WriteRTCP([]rtcp.Packet{&rtcp.TransportLayerCC{}}, nil)
	// What gcc last said, as Congestion caches it.
	e.mu.Lock()
	e.statsAt, e.loss, e.overusing = time.Now().Add(time.Hour), 0.3, true
	e.mu.Unlock()
	if loss, over := e.Congestion(); loss != 0.3 || !over {
		t.Fatalf("fresh feedback: loss %v overusing %v, want 0.3 true", loss, over)
	}
	e.feedbackAt.Store(time.Now().Add(-feedbackStale - time.Millisecond).UnixNano())
	if loss, over := e.Congestion(); loss != 0 || over {
		t.Fatalf("no feedback for %v: loss %v overusing %v, want none", feedbackStale, loss, over)
	}
	_ = e.WriteRTCP([]rtcp.Packet{&rtcp.TransportLayerCC{}}, nil)
	if loss, over := e.Congestion(); loss != 0.3 || !over {
		t.Fatalf("feedback again: loss %v overusing %v, want 0.3 true", loss, over)
	}
}

func TestEstimatorSwallowsFeedbackErrors(t *testing.T) {
	// Feedback gcc refuses must not end the track's RTCP loop, which
	// stops on the first error the cc interceptor returns.
	e := newTestEstimator(t)
	_ = e.Close()
	if err := e.WriteRTCP([]rtcp.Packet{&rtcp.TransportLayerCC{}}, nil); err != nil {
		t.Fatalf("WriteRTCP after close: %v", err)
	}
	if e.rtcpErrors.Load() == 0 {
		t.Fatal("the refusal was not counted")
	}
}

// recordWriter records the SSRCs written through it.
type recordWriter struct{ ssrcs []uint32 }

func (w *recordWriter) Write(h *rtp.Header, payload []byte, _ interceptor.Attributes) (int, error) {
	w.ssrcs = append(w.ssrcs, h.SSRC)
	return len(payload), nil
}

func TestEstimatorRoutesRTXThroughItsStream(t *testing.T) {
	e := newTestEstimator(t)
	var w recordWriter
	out := e.AddStream(&interceptor.StreamInfo{SSRC: 10, SSRCRetransmission: 11}, &w)
	for _, ssrc := range []uint32{10, 11} {
		if _, err := out.Write(&rtp.Header{SSRC: ssrc}, []byte{1}, nil); err != nil {
			t.Fatalf("write ssrc %d: %v", ssrc, err)
		}
	}
	if _, err := out.Write(&rtp.Header{SSRC: 12}, []byte{1}, nil); !errors.Is(err, gcc.ErrUnknownStream) {
		t.Fatalf("unknown ssrc: %v", err)
	}
	if len(w.ssrcs) != 2 || w.ssrcs[0] != 10 || w.ssrcs[1] != 11 {
		t.Fatalf("written %v", w.ssrcs)
	}
}

func TestDirectPacerWriteAllocatesNothing(t *testing.T) {
	var p directPacer
	var w recordWriter
	w.ssrcs = make([]uint32, 0, 4096)
	p.AddStream(1, &w)
	p.alias(2, 1)
	h := &rtp.Header{SSRC: 2}
	attr := interceptor.Attributes{}
	if n := testing.AllocsPerRun(1000, func() {
		w.ssrcs = w.ssrcs[:0]
		_, _ = p.Write(h, nil, attr)
	}); n != 0 {
		t.Fatalf("Write allocates %v times", n)
	}
}

func BenchmarkDirectPacerWrite(b *testing.B) {
	var p directPacer
	var w recordWriter
	w.ssrcs = make([]uint32, 0, 1)
	for i := uint32(0); i < 16; i++ {
		p.AddStream(i, &w)
	}
	h := &rtp.Header{SSRC: 7}
	b.ReportAllocs()
	for b.Loop() {
		w.ssrcs = w.ssrcs[:0]
		_, _ = p.Write(h, nil, nil)
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

// TestPeersGetTheirOwnEstimators checks the handover from the cc
// interceptor: every connection gets a fresh estimator, which reports
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
