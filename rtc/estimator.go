package rtc

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/cc"
	"github.com/pion/interceptor/pkg/gcc"
	"github.com/pion/logging"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"

	"github.com/focus-sfu/focus/focus"
)

// Bounds of every connection's send-side estimate, in bits per second.
// A new subscriber starts at 3 Mbit/s: a small call's cameras (two
// non-simulcast 720p videos, or the middle layers of four simulcast
// ones) arrive whole from the first frame, instead of some being paused
// for seconds while gcc climbs (about 8 % a second) or a probe proves
// more. A link that cannot take it shows delay or loss in the first
// feedback, a few hundred milliseconds in, and gcc cuts at once; with
// simulcast the allocator then moves to lower layers. The floor keeps audio and one thumbnail
// alive under heavy loss, where gcc would otherwise sink towards its
// own 5 kbit/s floor and take seconds to recover. The ceiling is above
// any layer set Element Call publishes, with room for screen sharing.
const (
	bweInitial = 3_000_000
	bweMin     = 100_000
	bweMax     = 20_000_000
)

// statsInterval bounds how often Congestion asks gcc for its stats,
// which pion returns as a freshly built map: the core's probe tick may
// ask every 20 ms for every subscriber.
const statsInterval = 50 * time.Millisecond

// feedbackStale is how long after the last transport-wide feedback
// gcc's loss and overuse stop counting as congestion. A subscriber sends
// feedback only about packets it receives; when the focus sends it
// nothing (its only video paused for bandwidth), gcc's stats keep the
// values of the last feedback, the congestion that caused the pause,
// forever, and the prober, which never probes a congested connection,
// would leave the video paused for good. Feedback comes every 100 ms or
// so while anything flows.
const feedbackStale = time.Second

// estimator is one PeerConnection's send-side bandwidth estimate. It is
// what pion's cc interceptor calls a BandwidthEstimator: it wraps gcc
// (delay and loss based, fed by the subscriber's transport-wide
// congestion-control feedback) and adds two things gcc lacks:
//   - REMB: a subscriber that sends REMB and never transport-wide
//     feedback (an old or minimal client) is trusted with its own
//     estimate, since gcc would sit at its initial rate forever;
//   - RTX routing (see directPacer).
//
// It implements focus.BandwidthEstimator and focus.CongestionReporter.
type estimator struct {
	gcc   *gcc.SendSideBWE
	pacer *directPacer
	attrs sync.Pool // of interceptor.Attributes, see AddStream

	closeOnce sync.Once

	twcc atomic.Bool   // transport-wide feedback seen: gcc is in charge
	remb atomic.Uint64 // the subscriber's latest REMB, bits per second
	// feedbackAt is when transport-wide feedback last came, unix
	// nanoseconds (see feedbackStale).
	feedbackAt atomic.Int64

	// rtcpErrors counts feedback gcc refused; a refusal must not end
	// the track's RTCP loop (cc would return the error to the reader).
	rtcpErrors atomic.Uint64

	mu        sync.Mutex
	statsAt   time.Time
	loss      float64
	overusing bool
}

var (
	_ cc.BandwidthEstimator    = (*estimator)(nil)
	_ focus.BandwidthEstimator = (*estimator)(nil)
	_ focus.CongestionReporter = (*estimator)(nil)
	_ interceptor.RTPWriter    = (*directPacer)(nil)
	_ gcc.Pacer                = (*directPacer)(nil)
)

// newEstimatorFactory returns the factory the cc interceptor calls once
// per PeerConnection.
func newEstimatorFactory(logs logging.LoggerFactory) cc.BandwidthEstimatorFactory {
	return func() (cc.BandwidthEstimator, error) {
		p := &directPacer{}
		opts := []gcc.Option{
			gcc.SendSideBWEInitialBitrate(bweInitial),
			gcc.SendSideBWEMinBitrate(bweMin),
			gcc.SendSideBWEMaxBitrate(bweMax),
			// No queueing: the core forwards each packet as it arrives,
			// and the allocator (which spends this estimate) picks
			// layers that fit. A leaky bucket would add delay per packet
			// and a goroutine per connection.
			gcc.SendSideBWEPacer(p),
		}
		if logs != nil {
			opts = append(opts, gcc.WithLoggerFactory(logs))
		}
		g, err := gcc.NewSendSideBWE(opts...)
		if err != nil {
			return nil, fmt.Errorf("rtc: gcc: %w", err)
		}
		return &estimator{gcc: g, pacer: p}, nil
	}
}

// TargetBitrate implements focus.BandwidthEstimator.
func (e *estimator) TargetBitrate() uint64 {
	if !e.twcc.Load() {
		if r := e.remb.Load(); r > 0 {
			return r
		}
	}
	return uint64(e.gcc.GetTargetBitrate())
}

// Congestion implements focus.CongestionReporter: gcc's smoothed loss
// ratio and whether its delay detector sees the queue growing (overuse,
// or the decrease that follows it). A connection that never sent
// transport-wide feedback reports congestion (nothing could judge a
// probe); one without any for feedbackStale reports none (its last
// figures are old news).
func (e *estimator) Congestion() (loss float64, overusing bool) {
	if !e.twcc.Load() {
		// Without transport-wide feedback (a REMB-only client, or none
		// yet) nothing can judge a probe: it would always pass and lift
		// the estimate over what the client reported. Reading as
		// congested keeps the core from probing such a connection.
		return 0, true
	}
	now := time.Now()
	if now.Sub(time.Unix(0, e.feedbackAt.Load())) > feedbackStale {
		return 0, false // nothing in flight: no news of the path (see feedbackStale)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if now.Sub(e.statsAt) < statsInterval {
		return e.loss, e.overusing
	}
	e.statsAt = now
	st := e.gcc.GetStats()
	e.loss, _ = st["averageLoss"].(float64)
	usage, _ := st["usage"].(string)
	state, _ := st["state"].(string)
	// Until its first delay update gcc reports zero values, and its
	// zero usage reads "overuse"; the adaptive threshold is never zero
	// after an update.
	threshold, _ := st["delayThreshold"].(float64)
	e.overusing = threshold > 0 && (usage == "overuse" || state == "decrease")
	return e.loss, e.overusing
}

// AddStream implements cc.BandwidthEstimator. Retransmissions are
// written through the stream's own writer with the RTX SSRC, which gcc
// never registered: the pacer learns it here.
func (e *estimator) AddStream(info *interceptor.StreamInfo, w interceptor.RTPWriter) interceptor.RTPWriter {
	out := e.gcc.AddStream(info, w)
	if info.SSRCRetransmission != 0 {
		e.pacer.alias(info.SSRCRetransmission, info.SSRC)
	}
	// pion's track writer passes no attributes, and gcc makes a map per
	// packet to note the extension ID in; lend it a cleared one instead.
	return interceptor.RTPWriterFunc(func(h *rtp.Header, payload []byte, a interceptor.Attributes) (int, error) {
		if a != nil {
			return out.Write(h, payload, a)
		}
		a, _ = e.attrs.Get().(interceptor.Attributes)
		if a == nil {
			a = make(interceptor.Attributes, 1)
		}
		n, err := out.Write(h, payload, a)
		clear(a)
		e.attrs.Put(a)
		return n, err
	})
}

// WriteRTCP implements cc.BandwidthEstimator; cc calls it with every
// RTCP packet the subscriber sends on any of the connection's senders.
func (e *estimator) WriteRTCP(pkts []rtcp.Packet, attr interceptor.Attributes) error {
	for _, p := range pkts {
		switch p := p.(type) {
		case *rtcp.TransportLayerCC, *rtcp.CCFeedbackReport:
			if !e.twcc.Load() {
				e.twcc.Store(true)
			}
			e.feedbackAt.Store(time.Now().UnixNano())
		case *rtcp.ReceiverEstimatedMaximumBitrate:
			if p.Bitrate > 0 {
				e.remb.Store(uint64(p.Bitrate))
			}
		}
	}
	// gcc refuses feedback it cannot map (packets evicted from its
	// history, malformed chunks) and everything once closed; either way
	// the RTCP that carried it still has to reach the track.
	if err := e.gcc.WriteRTCP(pkts, attr); err != nil {
		e.rtcpErrors.Add(1)
	}
	return nil
}

// GetTargetBitrate implements cc.BandwidthEstimator.
func (e *estimator) GetTargetBitrate() int { return int(e.TargetBitrate()) }

// OnTargetBitrateChange implements cc.BandwidthEstimator.
func (e *estimator) OnTargetBitrateChange(f func(bitrate int)) { e.gcc.OnTargetBitrateChange(f) }

// GetStats implements cc.BandwidthEstimator.
func (e *estimator) GetStats() map[string]any { return e.gcc.GetStats() }

// Close implements cc.BandwidthEstimator; the cc interceptor calls it
// when the PeerConnection closes. gcc panics when closed twice.
func (e *estimator) Close() error {
	var err error
	e.closeOnce.Do(func() { err = e.gcc.Close() })
	return err
}

// directPacer is gcc's pacer without pacing: each packet goes out at
// once on the writer of its stream, found by SSRC. Unlike gcc's NoOp
// pacer it takes no lock per packet (the stream table is copy-on-write)
// and it knows each stream's retransmission SSRC, so the RTX packets the
// core writes through a stream's writer reach the wire instead of
// failing as an unknown stream.
type directPacer struct {
	mu      sync.Mutex // serializes writers of streams
	streams atomic.Pointer[map[uint32]interceptor.RTPWriter]
}

func (p *directPacer) update(fn func(m map[uint32]interceptor.RTPWriter)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	next := make(map[uint32]interceptor.RTPWriter)
	if cur := p.streams.Load(); cur != nil {
		for k, v := range *cur {
			next[k] = v
		}
	}
	fn(next)
	p.streams.Store(&next)
}

// AddStream implements gcc.Pacer.
func (p *directPacer) AddStream(ssrc uint32, w interceptor.RTPWriter) {
	p.update(func(m map[uint32]interceptor.RTPWriter) { m[ssrc] = w })
}

// alias sends packets with SSRC rtx the way of stream ssrc: through
// gcc's accounting, then the stream's SRTP writer, which encrypts by the
// header's SSRC.
func (p *directPacer) alias(rtx, ssrc uint32) {
	p.update(func(m map[uint32]interceptor.RTPWriter) {
		if w, ok := m[ssrc]; ok {
			m[rtx] = w
		}
	})
}

// Write implements gcc.Pacer.
func (p *directPacer) Write(h *rtp.Header, payload []byte, a interceptor.Attributes) (int, error) {
	if m := p.streams.Load(); m != nil {
		if w, ok := (*m)[h.SSRC]; ok {
			return w.Write(h, payload, a)
		}
	}
	return 0, fmt.Errorf("rtc: pacer: %w: %d", gcc.ErrUnknownStream, h.SSRC)
}

// SetTargetBitrate implements gcc.Pacer; there is nothing to pace.
func (p *directPacer) SetTargetBitrate(int) {}

// Close implements gcc.Pacer.
func (p *directPacer) Close() error { return nil }
