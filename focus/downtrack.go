package focus

import (
	"sync"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/rs/zerolog"

	"github.com/focus-sfu/focus/focus/sequencer"
	"github.com/focus-sfu/focus/focus/vp8"
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
	paused bool
	// held holds forwarding by the allocator's decision: short of
	// bandwidth (heldForBandwidth), or not among the loudest audio.
	held             bool
	heldForBandwidth bool
	// maxLayer and maxSize are the subscriber's caps on the layer.
	maxLayer int
	maxSize  Size
	// maxTID is the highest VP8 temporal layer forwarded; -1 forwards all.
	// A raise waits in wantTID for a frame the decoder can switch up at.
	maxTID  int
	wantTID int
	ext     extMap
	munger  rtpMunger
	vp8     vp8.Munger
	out     rtp.Header
	buf     [maxPacket]byte // a payload with a rewritten descriptor
	packets uint64          // forwarded; the sender reports carry the low 32 bits
	octets  uint32          // payload octets forwarded, for the sender reports

	// Counters for SFU.Stats (stats.go), which reads them under mu and
	// keeps them once the down track is retired.
	bytesOut       uint64 // RTP bytes forwarded, header included
	nacks          uint64
	nacked         uint64
	plis           uint64
	switches       uint64
	paddingPackets uint64
	paddingBytes   uint64
	retired        bool // guarded by the SFU's statsMu

	// Retransmission state (video only): what every sent sequence number
	// was, and the first one sent from the current source track, since
	// only its packets can be found again.
	sent     *sequencer.Sequencer
	srcStart uint16
	rtx      retransmitter
}

// maxPacket bounds an RTP packet: the UDP payload on an Ethernet path.
const maxPacket = 1500

// rtpHeaderSize is the fixed part of an RTP header (RFC 3550 §5.1).
const rtpHeaderSize = 12

func newDownTrack(p *Participant, kind Kind, codec Codec) *DownTrack {
	id := "DT_" + randomID()[:16]
	d := &DownTrack{
		id:       id,
		sub:      p,
		kind:     kind,
		codec:    codec,
		log:      p.log.With().Str("downtrack", id).Logger(),
		maxLayer: maxLayers,
		maxTID:   -1,
		wantTID:  -1,
		out:      newHeader(),
	}
	if kind == KindVideo {
		d.sent = sequencer.New(p.conf.sfu.opts.PacketCache)
		d.rtx.init(p.conf.sfu.now())
	}
	return d
}

// maxLayers bounds the simulcast layers of a track.
const maxLayers = 8

func newHeader() rtp.Header {
	return rtp.Header{
		Version:    2,
		CSRC:       make([]uint32, 0, 15),
		Extensions: make([]rtp.Extension, 0, maxExtensions),
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

// SetSource makes src the track this down track forwards. Forwarding
// moves at src's next keyframe; until then the previous source, if any,
// goes on. The layer is the allocator's choice within the subscriber's
// caps (SetMaxLayer, SetMaxSize) and bandwidth; it starts at the best
// that the caps and the current estimate allow. src must have the down
// track's kind and codec.
func (d *DownTrack) SetSource(src *UpTrack) error {
	if src.info.Kind != d.kind {
		return ErrKindMismatch
	}
	if !mimeEqual(src.info.Codec.MimeType, d.codec.MimeType) {
		return ErrCodecMismatch
	}
	return d.setTarget(src.layers[d.startLayer(src)])
}

// SetMaxLayer caps the layer forwarded to the subscriber: a choice of
// simulcast quality. A lower cap applies at once, a higher one at the
// next allocation.
func (d *DownTrack) SetMaxLayer(i int) {
	d.mu.Lock()
	d.maxLayer = max(0, min(i, maxLayers))
	d.mu.Unlock()
	d.applyCaps()
}

// SetMaxSize caps the layer forwarded to the subscriber by the size it
// shows the video at: the smallest layer at least that large will do.
// Zero in both removes the cap. A lower cap applies at once, a higher
// one at the next allocation.
func (d *DownTrack) SetMaxSize(width, height uint32) {
	d.mu.Lock()
	d.maxSize = Size{Width: width, Height: height}
	d.mu.Unlock()
	d.applyCaps()
}

// applyCaps moves the down track below a cap it is now above, without
// waiting for the control loop: a subscriber that has just subscribed
// and set its caps then starts on the right layer, at one keyframe.
func (d *DownTrack) applyCaps() {
	d.mu.Lock()
	t := d.target
	d.mu.Unlock()
	if t == nil {
		return
	}
	if w := d.wantedLayer(t.up); w >= 0 && w < t.index {
		_ = d.setTarget(t.up.layers[w])
	}
}

// setTarget makes l the layer to forward, from its next keyframe.
func (d *DownTrack) setTarget(l *layer) error {
	src := l.up
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
	if err := src.attach(l.index, d); err != nil {
		d.mu.Unlock()
		return err
	}
	d.target = l
	if old != nil && old != d.current {
		old.up.detach(old.index, d)
	}
	needKeyframe := d.bound && d.current != l && !d.paused && !d.held
	d.mu.Unlock()

	if needKeyframe {
		src.RequestKeyframe(l.index)
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
// its source and binding; its layers are no longer in demand.
func (d *DownTrack) SetPaused(paused bool) {
	d.mu.Lock()
	if d.paused == paused {
		d.mu.Unlock()
		return
	}
	d.paused = paused
	d.resumeLocked()
}

// resumeLocked ends d.mu's critical section after a change of paused or
// held: a down track that forwards again starts at a keyframe.
func (d *DownTrack) resumeLocked() {
	forwarding := !d.paused && !d.held
	if forwarding {
		d.awaitKeyframe = true
	}
	l, bound := d.target, d.bound
	d.mu.Unlock()
	if forwarding && bound && l != nil {
		l.up.RequestKeyframe(l.index)
	}
}

// Paused reports whether the subscriber paused forwarding.
func (d *DownTrack) Paused() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.paused
}

// PausedForBandwidth reports whether the allocator holds the track back
// for lack of bandwidth.
func (d *DownTrack) PausedForBandwidth() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.heldForBandwidth
}

// Layer returns the index of the layer being forwarded or switched to,
// or -1.
func (d *DownTrack) Layer() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.target == nil {
		return -1
	}
	return d.target.index
}

// Unbind detaches the down track from its sender.
func (d *DownTrack) Unbind() {
	d.mu.Lock()
	d.bound = false
	d.b = Binding{}
	d.mu.Unlock()
}

// forward rewrites one packet from layer l for this subscriber and writes
// it. It runs on l's read loop and allocates nothing. desc is the
// packet's VP8 descriptor, nil for other codecs.
//
// A subscriber starts, and moves to a new source, only at a keyframe
// that is actually delivered: pion drops packets written before the
// connection's SRTP is ready and says so only by writing zero bytes. When
// that happens the switch is undone and another keyframe is asked for.
func (d *DownTrack) forward(l *layer, h *rtp.Header, payload []byte, desc *vp8.Descriptor, keyframe bool, now time.Time) {
	d.mu.Lock()
	if !d.bound || d.paused || d.held {
		d.mu.Unlock()
		return
	}
	switching := d.awaitKeyframe || l != d.current
	var saved rtpMunger
	var savedVP8 vp8.Munger
	if switching {
		if l != d.target || !keyframe {
			d.mu.Unlock()
			return
		}
		saved, savedVP8 = d.munger, d.vp8
		d.switchTo(l, h, now)
		if desc != nil {
			d.vp8.SwitchSource(desc)
		}
	}
	var od vp8.Descriptor
	if desc != nil {
		if d.wantTID != d.maxTID && (keyframe || desc.Y && desc.S && desc.PID == 0) {
			d.maxTID = d.wantTID // a layer sync frame: upper layers decode from here
		}
		drop, rewritten := d.vp8.Rewrite(desc, d.maxTID, &od)
		if drop {
			d.munger.drop(h.SequenceNumber)
			d.mu.Unlock()
			return
		}
		if rewritten {
			payload = withDescriptor(d.buf[:], &od, desc, payload)
		} else {
			od = *desc
		}
	}
	seq, ts, ok := d.munger.rewrite(h.SequenceNumber, h.Timestamp, now)
	if !ok || payload == nil {
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
	extSize := d.ext.apply(h, o)
	n, err := d.b.Writer.WriteRTP(o, payload)
	delivered := err == nil && (n > 0 || len(payload) == 0)
	if delivered {
		d.packets++
		d.octets += uint32(len(payload))
		d.bytesOut += uint64(rtpHeaderSize + 4*len(o.CSRC) + extSize + len(payload))
		if switching {
			d.awaitKeyframe = false
		}
		if d.sent != nil {
			e := sequencer.Entry{Layer: int8(l.index), SourceSeq: h.SequenceNumber, Timestamp: ts, Marker: h.Marker}
			if desc != nil {
				e.VP8, e.PictureID, e.TL0PICIDX, e.KEYIDX = true, od.PictureID, od.TL0PICIDX, od.KEYIDX
			}
			d.sent.Push(seq, e, now)
		}
	} else if switching {
		d.munger, d.vp8 = saved, savedVP8
		d.awaitKeyframe = true
	}
	d.mu.Unlock()
	if switching && !delivered {
		l.up.RequestKeyframe(l.index)
	}
}

// withDescriptor writes out (a rewritten VP8 descriptor) followed by
// what comes after the in descriptor of payload into dst, and returns
// the written part of dst; nil if it does not fit. The encoded frame is
// copied untouched.
func withDescriptor(dst []byte, out, in *vp8.Descriptor, payload []byte) []byte {
	n, err := out.MarshalTo(dst)
	body := payload[in.Size:]
	if err != nil || n+len(body) > len(dst) {
		return nil
	}
	return dst[:n+copy(dst[n:], body)]
}

// skip accounts for a packet of l that is not forwarded (padding), so
// that the subscriber's sequence numbers show no gap.
func (d *DownTrack) skip(l *layer, seq uint16) {
	d.mu.Lock()
	if d.current == l && !d.awaitKeyframe && d.munger.started {
		d.munger.drop(seq)
	}
	d.mu.Unlock()
}

// switchTo makes l the current layer, at one of its keyframes.
func (d *DownTrack) switchTo(l *layer, h *rtp.Header, now time.Time) {
	prev := d.current
	if prev == nil || prev.up != l.up {
		d.srcStart = d.munger.lastOutSeq + 1
		if !d.munger.started {
			d.srcStart = h.SequenceNumber
		}
	}
	if prev != nil && prev != l && prev.up == l.up {
		d.switches++
	}
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
		PacketCount: uint32(d.packets),
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
// the publisher; negative acknowledgements are answered from the
// source layer's packet cache.
func (d *DownTrack) HandleRTCP(pkts []rtcp.Packet) {
	for _, p := range pkts {
		switch p := p.(type) {
		case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
			d.mu.Lock()
			d.plis++
			l := d.current
			if d.target != nil {
				l = d.target
			}
			d.mu.Unlock()
			if l != nil {
				l.up.RequestKeyframe(l.index)
			}
		case *rtcp.TransportLayerNack:
			d.retransmit(p.Nacks)
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
	if tgt != nil {
		tgt.up.detach(tgt.index, d)
	}
	if cur != nil && cur != tgt {
		cur.up.detach(cur.index, d)
	}
	d.mu.Unlock()
	d.sub.conf.sfu.retireDown(d)
	d.sub.removeDown(d)
}
