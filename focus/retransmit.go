package focus

import (
	"encoding/binary"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"

	"github.com/focus-sfu/focus/focus/vp8"
)

// Retransmission bounds per down track: a token bucket of packets, so
// that a subscriber on a lossy link (or one that lies in its NACKs)
// cannot make the focus send more than a fraction of the stream again.
// The sequencer also refuses a packet resent too recently or too often.
const (
	retransmitRate  = 250 // packets per second
	retransmitBurst = 100
)

// retransmitter is the per-down-track state of retransmission: the rate
// limit, the RTX stream's sequence numbers, and buffers reused for every
// retransmitted packet. Guarded by the down track's mutex.
type retransmitter struct {
	tokens float64
	last   time.Time
	seq    uint16 // next RTX sequence number
	in     [maxPacket]byte
	out    [maxPacket]byte
	hdr    rtp.Header
	outHdr rtp.Header

	// Counters, for stats.
	resent  uint64
	refused uint64
}

func (r *retransmitter) init(now time.Time) {
	r.tokens, r.last = retransmitBurst, now
	r.seq = uint16(now.UnixNano())
	r.outHdr = newHeader()
}

func (r *retransmitter) allow(now time.Time) bool {
	if el := now.Sub(r.last); el > 0 {
		r.tokens = min(retransmitBurst, r.tokens+el.Seconds()*retransmitRate)
		r.last = now
	}
	if r.tokens < 1 {
		r.refused++
		return false
	}
	r.tokens--
	return true
}

// retransmit answers a subscriber's NACK: every lost packet that is
// still in its source layer's cache is sent again, on the RTX stream
// when one was negotiated, else as it was.
func (d *DownTrack) retransmit(nacks []rtcp.NackPair) {
	now := d.sub.conf.sfu.now()
	d.mu.Lock()
	defer d.mu.Unlock()
	d.nacks++
	d.nacked += nackedPackets(nacks)
	if d.sent == nil || !d.bound || d.current == nil {
		return
	}
	for _, p := range nacks {
		d.resend(p.PacketID, now)
		for i := uint16(0); i < 16; i++ {
			if p.LostPackets&(1<<i) != 0 {
				d.resend(p.PacketID+i+1, now)
			}
		}
	}
}

// resend sends outgoing packet seq again. d.mu is held.
func (d *DownTrack) resend(seq uint16, now time.Time) {
	// Only packets of the current source track are still cached.
	if int16(seq-d.srcStart) < 0 || int16(seq-d.munger.lastOutSeq) > 0 {
		return
	}
	e, ok := d.sent.Lookup(seq, now)
	if !ok || int(e.Layer) >= len(d.current.up.layers) || !d.rtx.allow(now) {
		return
	}
	r := &d.rtx
	l := d.current.up.layers[e.Layer]
	n := l.cache.Get(e.SourceSeq, r.in[:])
	if n == 0 {
		return
	}
	hn, err := r.hdr.Unmarshal(r.in[:n])
	if err != nil {
		return
	}
	body := r.in[hn:n]

	o := &r.outHdr
	o.Padding = r.hdr.Padding
	o.Marker = e.Marker
	o.Timestamp = e.Timestamp
	o.CSRC = append(o.CSRC[:0], r.hdr.CSRC...)
	o.Extension = false
	o.ExtensionProfile = 0
	o.Extensions = o.Extensions[:0]
	d.ext.apply(&r.hdr, o)

	w := 0
	if d.b.RTXSSRC != 0 {
		// RFC 4588: the original sequence number leads the payload.
		o.SSRC, o.PayloadType, o.SequenceNumber = d.b.RTXSSRC, d.b.RTXPayloadType, r.seq
		r.seq++
		binary.BigEndian.PutUint16(r.out[:2], seq)
		w = 2
	} else {
		o.SSRC, o.PayloadType, o.SequenceNumber = d.b.SSRC, d.b.PayloadType, seq
	}
	if e.VP8 {
		var desc vp8.Descriptor
		if desc.Unmarshal(body) != nil {
			return
		}
		out := desc
		out.PictureID, out.TL0PICIDX, out.KEYIDX = e.PictureID, e.TL0PICIDX, e.KEYIDX
		p := withDescriptor(r.out[w:], &out, &desc, body)
		if p == nil {
			return
		}
		w += len(p)
	} else {
		if w+len(body) > len(r.out) {
			return
		}
		w += copy(r.out[w:], body)
	}
	if _, err := d.b.Writer.WriteRTP(o, r.out[:w]); err == nil {
		r.resent++
	}
}

// writePadding sends about n bytes of padding-only packets on the RTX
// stream, to probe the subscriber's link, and returns how many it sent.
// Without RTX it sends nothing: padding on the media stream would take
// sequence numbers from between the packets of a frame.
func (d *DownTrack) writePadding(n int) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.bound || d.b.RTXSSRC == 0 || !d.munger.started {
		return 0
	}
	r := &d.rtx
	o := &r.outHdr
	o.SSRC, o.PayloadType = d.b.RTXSSRC, d.b.RTXPayloadType
	o.Marker = false
	o.Timestamp = d.munger.lastOutTS
	o.CSRC = o.CSRC[:0]
	o.Extension = false
	o.ExtensionProfile = 0
	o.Extensions = o.Extensions[:0]
	o.Padding = true
	const size = 255 // the most one padding count byte can describe
	sent := 0
	for sent < n {
		clear(r.out[:size])
		r.out[size-1] = size
		o.SequenceNumber = r.seq
		r.seq++
		if _, err := d.b.Writer.WriteRTP(o, r.out[:size]); err != nil {
			break
		}
		d.paddingPackets++
		d.paddingBytes += uint64(rtpHeaderSize + size)
		sent += size
	}
	o.Padding = false
	return sent
}
