package rtc

import (
	"encoding/binary"
	"sync/atomic"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"

	"github.com/focus-sfu/focus/focus"
	"github.com/focus-sfu/focus/rtc/bwe"
)

// Bounds of every connection's send-side estimate, in bits per second.
// A new subscriber starts at 3 Mbit/s: a small call's cameras (two
// non-simulcast 720p videos, or the middle layers of four simulcast
// ones) arrive whole from the first frame, instead of some being paused
// for seconds while the estimate climbs (about 8 % a second) or a probe
// proves more. A link that cannot take it shows delay or loss in the
// first feedback, a few hundred milliseconds in, and the estimator cuts
// at once; with simulcast the allocator then moves to lower layers. The
// floor keeps audio and one thumbnail alive under heavy loss, where the
// estimate would otherwise sink towards nothing and take seconds to
// recover. The ceiling is above any layer set Element Call publishes,
// with room for screen sharing.
const (
	bweInitial = 3_000_000
	bweMin     = 100_000
	bweMax     = 20_000_000
)

// feedbackStale is how long after the last transport-wide feedback the
// estimator's loss and overuse stop counting as congestion. A subscriber
// sends feedback only about packets it receives; when the focus sends it
// nothing (its only video paused for bandwidth), the estimator keeps the
// verdict of the last feedback, the congestion that caused the pause,
// forever, and the prober, which never probes a congested connection,
// would leave the video paused for good. Feedback comes every 100 ms or
// so while anything flows.
const feedbackStale = time.Second

// rtpOverhead is what an RTP packet adds to its payload on the wire, as
// the estimator counts it: the fixed header and a few extensions. The
// exact figure varies by a few bytes a packet, which no estimate can
// tell apart from noise.
const rtpOverhead = 24

// estimator is one PeerConnection's send-side bandwidth estimate, and
// the interceptor that feeds it. On every stream whose subscriber
// negotiated transport-wide congestion control it stamps each packet
// with the connection's transport-wide sequence number and records its
// send time and size in the bwe.Estimator; it reads the subscriber's
// feedback off the RTCP stream. Neither allocates.
//
// It adds REMB to bwe: a subscriber that sends REMB and never
// transport-wide feedback (an old or minimal client) is trusted with its
// own estimate, since the send-side estimate would sit at its initial
// rate forever.
//
// It implements focus.BandwidthEstimator and focus.CongestionReporter.
type estimator struct {
	interceptor.NoOp
	bwe *bwe.Estimator

	seq atomic.Uint32 // the last transport-wide sequence number used
	// ext holds the extension payloads in flight, one per sequence
	// number modulo its size: a header keeps a reference to its
	// extension until the SRTP writer below has marshalled it, which
	// happens before the writer returns.
	ext [64][2]byte

	twcc atomic.Bool   // transport-wide feedback seen: bwe is in charge
	remb atomic.Uint64 // the subscriber's latest REMB, bits per second
	// feedbackAt is when transport-wide feedback last came, on bwe's
	// clock (see feedbackStale).
	feedbackAt atomic.Int64

	// rtcpErrors counts feedback bwe refused as malformed; a refusal
	// never ends the track's RTCP loop.
	rtcpErrors atomic.Uint64

	// direct is the connection's direct path to the media socket, once
	// its DTLS handshake is done (see directPath). The estimator is the
	// one interceptor that handles local streams (the others serve what
	// the focus receives), so all RTP the focus sends goes through it.
	direct atomic.Pointer[directPath]
}

var (
	_ interceptor.Interceptor  = (*estimator)(nil)
	_ focus.BandwidthEstimator = (*estimator)(nil)
	_ focus.CongestionReporter = (*estimator)(nil)
)

func newEstimator() *estimator {
	return &estimator{bwe: bwe.New(bwe.Config{Initial: bweInitial, Min: bweMin, Max: bweMax})}
}

// estimatorFactory makes one estimator per PeerConnection and hands it
// to built, so the Engine can pair it with its connection.
type estimatorFactory struct{ built func(*estimator) }

// NewInterceptor implements interceptor.Factory.
func (f estimatorFactory) NewInterceptor(string) (interceptor.Interceptor, error) {
	e := newEstimator()
	f.built(e)
	return e, nil
}

// TargetBitrate implements focus.BandwidthEstimator.
func (e *estimator) TargetBitrate() uint64 {
	if !e.twcc.Load() {
		if r := e.remb.Load(); r > 0 {
			return r
		}
	}
	return e.bwe.Target()
}

// Congestion implements focus.CongestionReporter: the smoothed loss
// ratio and whether the delay detector sees the queue growing (overuse,
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
	now := e.bwe.Now()
	if now-time.Duration(e.feedbackAt.Load()) > feedbackStale {
		return 0, false // nothing in flight: no news of the path (see feedbackStale)
	}
	return e.bwe.Congested(now)
}

// BindLocalStream implements interceptor.Interceptor. Retransmissions
// and padding are written through their stream's writer with the RTX
// SSRC, so they are stamped and counted too. Each packet then takes the
// direct path if the connection has one, else pion's SRTP writer w.
func (e *estimator) BindLocalStream(info *interceptor.StreamInfo, w interceptor.RTPWriter) interceptor.RTPWriter {
	var id uint8
	for _, x := range info.RTPHeaderExtensions {
		if x.URI == sdp.TransportCCURI {
			id = uint8(x.ID)
		}
	}
	return interceptor.RTPWriterFunc(func(h *rtp.Header, payload []byte, a interceptor.Attributes) (int, error) {
		if id != 0 {
			seq := uint16(e.seq.Add(1))
			b := &e.ext[seq%uint16(len(e.ext))]
			binary.BigEndian.PutUint16(b[:], seq)
			if err := h.SetExtension(id, b[:]); err != nil {
				return 0, err
			}
			e.bwe.Sent(seq, len(payload)+rtpOverhead, e.bwe.Now())
		}
		if d := e.direct.Load(); d != nil {
			if n, sent, err := d.write(h, payload); sent {
				return n, err
			}
		}
		return w.Write(h, payload, a)
	})
}

// BindRTCPReader implements interceptor.Interceptor: it reads the
// feedback in every RTCP packet the subscriber sends on any of the
// connection's senders, and passes the packet on untouched.
func (e *estimator) BindRTCPReader(r interceptor.RTCPReader) interceptor.RTCPReader {
	return interceptor.RTCPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		n, a, err := r.Read(b, a)
		if err == nil {
			e.handleRTCP(b[:n])
		}
		return n, a, err
	})
}

// handleRTCP feeds the estimate from one compound RTCP packet. What it
// cannot read is counted and skipped; the packet still reaches the
// track.
func (e *estimator) handleRTCP(b []byte) {
	err := bwe.Packets(b, func(pt, format uint8, pkt []byte) {
		switch {
		case pt == ptTransportFeedback && format == fmtTWCC:
			now := e.bwe.Now()
			if err := e.bwe.HandleTWCC(pkt, now); err != nil {
				e.rtcpErrors.Add(1)
				return
			}
			if !e.twcc.Load() {
				e.twcc.Store(true)
			}
			e.feedbackAt.Store(int64(now))
		case pt == ptPayloadFeedback && format == fmtAppLayer:
			if r, ok := bwe.ParseREMB(pkt); ok && r > 0 {
				e.remb.Store(r)
			}
		}
	})
	if err != nil {
		e.rtcpErrors.Add(1)
	}
}

// RTCP packet types and formats the focus reads (RFC 3550, RFC 4585,
// RFC 5104).
const (
	ptSenderReport      = 200 // SR
	ptReceiverReport    = 201 // RR
	ptSourceDescription = 202 // SDES
	ptTransportFeedback = 205 // RTPFB
	ptPayloadFeedback   = 206 // PSFB
	fmtNACK             = 1   // RTPFB: generic NACK
	fmtTWCC             = 15  // RTPFB: transport-wide feedback
	fmtPLI              = 1   // PSFB: picture loss
	fmtFIR              = 4   // PSFB: full intra request
	fmtAppLayer         = 15  // PSFB: application layer (REMB)
)
