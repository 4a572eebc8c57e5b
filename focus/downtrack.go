package focus

import (
	"sync"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/rs/zerolog"
)

// Binding is what a subscriber's connection negotiated for a down track.
type Binding struct {
	SSRC        uint32
	PayloadType uint8
	Extensions  []HeaderExtension // with the subscriber's IDs
	Writer      RTPWriter
	RTCP        RTCPWriter // sender reports go here; may be nil
	// RTXSSRC and RTXPayloadType are the retransmission stream (RFC 4588)
	// negotiated with the subscriber; zero when it was not.
	RTXSSRC        uint32
	RTXPayloadType uint8
}

// DownTrack is one track sent to one subscriber. It keeps the
// subscriber's own SSRC, sequence and timestamp space continuous while
// its source changes.
type DownTrack struct {
	id    string
	sub   *Participant
	kind  Kind
	codec Codec
	log   zerolog.Logger

	// mu guards the forwarding state below. Only the read loops of the
	// current and target layers take it per packet, so it is uncontended
	// except for the moment of a source switch.
	mu      sync.Mutex
	closed  bool
	bound   bool
	b       Binding
	current *layer // forwarding from
	target  *layer // switching to at its next keyframe; == current when settled
	// awaitKeyframe holds forwarding until a keyframe of target has been
	// delivered: after Bind, and after an undelivered switch.
	awaitKeyframe bool
	// paused holds forwarding until the subscriber wants the track again.
	paused  bool
	ext     extMap
	munger  rtpMunger
	out     rtp.Header
	packets uint32
	octets  uint32
}

func newDownTrack(p *Participant, kind Kind, codec Codec) *DownTrack {
	id := "DT_" + randomID()[:16]
	return &DownTrack{
		id:    id,
		sub:   p,
		kind:  kind,
		codec: codec,
		log:   p.log.With().Str("downtrack", id).Logger(),
		out: rtp.Header{
			Version:    2,
			CSRC:       make([]uint32, 0, 15),
			Extensions: make([]rtp.Extension, 0, maxExtensions),
		},
	}
}

// ID returns a unique ID for the down track.
func (d *DownTrack) ID() string { return d.id }

// Kind returns the media kind.
func (d *DownTrack) Kind() Kind { return d.kind }

// Codec returns the codec every source of this down track must have.
func (d *DownTrack) Codec() Codec { return d.codec }

// Subscriber returns the participant the track is sent to.
func (d *DownTrack) Subscriber() *Participant { return d.sub }

// Source returns the track being forwarded, or the one being switched
// to, or nil.
func (d *DownTrack) Source() *UpTrack {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case d.target != nil:
		return d.target.up
	case d.current != nil:
		return d.current.up
	}
	return nil
}

// SetSource makes src the track this down track forwards, at its
// highest layer. Forwarding moves at src's next keyframe; until then the
// previous source, if any, goes on. src must have the down track's kind
// and codec.
func (d *DownTrack) SetSource(src *UpTrack) error {
	return d.SetSourceLayer(src, len(src.layers)-1)
}

// SetSourceLayer is SetSource at layer i of src (clamped to the layers
// src has): a subscriber's choice of simulcast layer. Moving to another
// layer of the same source is a switch like any other, at the new
// layer's next keyframe.
func (d *DownTrack) SetSourceLayer(src *UpTrack, i int) error {
	if src.info.Kind != d.kind {
		return ErrKindMismatch
	}
	if !mimeEqual(src.info.Codec.MimeType, d.codec.MimeType) {
		return ErrCodecMismatch
	}
	i = max(0, min(i, len(src.layers)-1))
	l := src.layers[i]

	var demand []func()
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return ErrClosed
	}
	old := d.target
	if old == l {
		d.mu.Unlock()
		return nil
	}
	wanted, changed, err := src.attach(l.index, d)
	if err != nil {
		d.mu.Unlock()
		return err
	}
	if changed {
		demand = append(demand, func() { src.emitDemand(wanted) })
	}
	d.target = l
	if old != nil {
		if w, ch := old.up.release(old.index, d, old != d.current); ch {
			demand = append(demand, func() { old.up.emitDemand(w) })
		}
	}
	needKeyframe := d.bound && d.current != l
	d.mu.Unlock()

	if needKeyframe {
		src.RequestKeyframe(l.index)
	}
	for _, f := range demand {
		f()
	}
	return nil
}

// sourceClosed is called by an UpTrack that was unpublished.
func (d *DownTrack) sourceClosed(t *UpTrack) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.current != nil && d.current.up == t {
		d.current = nil
	}
	if d.target != nil && d.target.up == t {
		d.target = nil
	}
}

// Bind attaches the down track to a negotiated sender. Forwarding starts
// at the source's next keyframe, which Bind asks for.
func (d *DownTrack) Bind(b Binding) {
	d.mu.Lock()
	d.b = b
	d.b.Extensions = append([]HeaderExtension(nil), b.Extensions...)
	d.bound = true
	d.awaitKeyframe = true
	if d.current != nil {
		d.ext = buildExtMap(d.current.up.info.Extensions, d.b.Extensions)
	}
	target := d.target
	d.mu.Unlock()
	if target != nil {
		target.up.RequestKeyframe(target.index)
	}
}

// SetPaused stops forwarding to the subscriber, or resumes it from the
// source's next keyframe, which it asks for. A paused down track keeps
// its source, binding and demand.
func (d *DownTrack) SetPaused(paused bool) {
	d.mu.Lock()
	if d.paused == paused {
		d.mu.Unlock()
		return
	}
	d.paused = paused
	if !paused {
		d.awaitKeyframe = true
	}
	l, bound := d.target, d.bound
	d.mu.Unlock()
	if !paused && bound && l != nil {
		l.up.RequestKeyframe(l.index)
	}
}

// Paused reports whether forwarding is paused.
func (d *DownTrack) Paused() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.paused
}

// Unbind detaches the down track from its sender.
func (d *DownTrack) Unbind() {
	d.mu.Lock()
	d.bound = false
	d.b = Binding{}
	d.mu.Unlock()
}

// forward rewrites one packet from layer l for this subscriber and writes
// it. It runs on l's read loop and allocates nothing.
//
// A subscriber starts, and moves to a new source, only at a keyframe
// that is actually delivered: pion drops packets written before the
// connection's SRTP is ready and says so only by writing zero bytes. When
// that happens the switch is undone and another keyframe is asked for.
func (d *DownTrack) forward(l *layer, h *rtp.Header, payload []byte, keyframe bool, now time.Time) {
	d.mu.Lock()
	if !d.bound || d.paused {
		d.mu.Unlock()
		return
	}
	switching := d.awaitKeyframe || l != d.current
	var saved rtpMunger
	if switching {
		if l != d.target || !keyframe {
			d.mu.Unlock()
			return
		}
		saved = d.munger
		d.switchTo(l, h, now)
	}
	seq, ts, ok := d.munger.rewrite(h.SequenceNumber, h.Timestamp, now)
	if !ok {
		d.mu.Unlock()
		return
	}
	o := &d.out
	o.Padding = h.Padding
	o.Marker = h.Marker
	o.PayloadType = d.b.PayloadType
	o.SequenceNumber = seq
	o.Timestamp = ts
	o.SSRC = d.b.SSRC
	o.CSRC = append(o.CSRC[:0], h.CSRC...)
	o.Extension = false
	o.ExtensionProfile = 0
	o.Extensions = o.Extensions[:0]
	d.ext.apply(h, o)
	n, err := d.b.Writer.WriteRTP(o, payload)
	delivered := err == nil && (n > 0 || len(payload) == 0)
	if delivered {
		d.packets++
		d.octets += uint32(len(payload))
		if switching {
			d.awaitKeyframe = false
		}
	} else if switching {
		d.munger = saved
		d.awaitKeyframe = true
	}
	d.mu.Unlock()
	if switching && !delivered {
		l.up.RequestKeyframe(l.index)
	}
}

// switchTo makes l the current layer, at one of its keyframes.
func (d *DownTrack) switchTo(l *layer, h *rtp.Header, now time.Time) {
	prev := d.current
	d.current = l
	d.ext = buildExtMap(l.up.info.Extensions, d.b.Extensions)
	d.munger.switchSource(h.SequenceNumber, h.Timestamp, now, d.codec.ClockRate)
	if prev != nil && prev != l {
		prev.up.detach(prev.index, d)
	}
}

// senderReport translates a publisher's sender report into this
// subscriber's timestamp space and sends it.
func (d *DownTrack) senderReport(l *layer, sr *rtcp.SenderReport) {
	d.mu.Lock()
	if !d.bound || d.current != l || !d.munger.started || d.b.RTCP == nil {
		d.mu.Unlock()
		return
	}
	out := &rtcp.SenderReport{
		SSRC:        d.b.SSRC,
		NTPTime:     sr.NTPTime,
		RTPTime:     sr.RTPTime + d.munger.tsOffset,
		PacketCount: d.packets,
		OctetCount:  d.octets,
	}
	w := d.b.RTCP
	d.mu.Unlock()
	if err := w.WriteRTCP([]rtcp.Packet{out}); err != nil {
		d.log.Debug().Err(err).Msg("send sender report")
	}
}

// HandleRTCP takes RTCP the subscriber sent about this track. Picture
// loss and full intra requests become a rate-limited keyframe request to
// the publisher.
func (d *DownTrack) HandleRTCP(pkts []rtcp.Packet) {
	for _, p := range pkts {
		switch p.(type) {
		case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
			d.mu.Lock()
			l := d.current
			if d.target != nil {
				l = d.target
			}
			d.mu.Unlock()
			if l != nil {
				l.up.RequestKeyframe(l.index)
			}
		}
	}
}

// Close ends the subscription. It is safe to call more than once.
func (d *DownTrack) Close() {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return
	}
	d.closed = true
	d.bound = false
	cur, tgt := d.current, d.target
	d.current, d.target = nil, nil
	var demand func()
	if tgt != nil {
		if w, ch := tgt.up.release(tgt.index, d, true); ch {
			demand = func() { tgt.up.emitDemand(w) }
		}
	}
	if cur != nil && cur != tgt {
		cur.up.detach(cur.index, d)
	}
	d.mu.Unlock()
	d.sub.removeDown(d)
	if demand != nil {
		demand()
	}
}
