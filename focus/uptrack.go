package focus

import (
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/rs/zerolog"

	"github.com/focus-sfu/focus/focus/packetcache"
	"github.com/focus-sfu/focus/focus/speaker"
	"github.com/focus-sfu/focus/focus/vp8"
)

// UpTrack is one published track. Packets enter the core here and fan
// out to the down tracks subscribed to each layer.
type UpTrack struct {
	owner    *Participant
	info     TrackInfo
	log      zerolog.Logger
	upstream RTCPWriter
	keyframe keyframeFunc
	started  time.Time
	layers   []*layer
	isVP8    bool
	// levelID is the publisher's ID of the RFC 6464 audio-level
	// extension, 0 when not negotiated; meter accumulates the levels.
	levelID uint8
	meter   speaker.Meter
	muted   atomic.Bool
	sizes   atomic.Pointer[[]Size] // declared layer sizes, lowest first

	// ctl is owned by the SFU's control loop.
	ctl struct {
		wanted []bool // demand last announced
	}

	mu     sync.Mutex // guards the subscriber lists' writers and closed
	closed bool

	statsMu   sync.Mutex
	lastBytes uint64
	lastAt    time.Time
	bitrate   uint64

	// For SFU.Stats (stats.go): keyframe requests sent, and whether the
	// counters were kept at unpublish (guarded by the SFU's statsMu).
	plisSent atomic.Uint64
	retired  bool
}

// layer is one simulcast encoding of an UpTrack (the only one when the
// track is not simulcast).
type layer struct {
	up    *UpTrack
	index int
	rid   string

	// downs is the subscriber list, replaced whole on every change so the
	// read loop can walk it without a lock.
	downs atomic.Pointer[[]*DownTrack]

	hdr      rtp.Header     // owned by the layer's read loop
	desc     vp8.Descriptor // owned by the layer's read loop
	ssrc     atomic.Uint32
	packets  atomic.Uint64
	bytes    atomic.Uint64
	lastSeen atomic.Int64 // unix nanoseconds
	kf       keyframer
	// cache keeps the layer's recent packets for retransmission to
	// subscribers; nil for audio.
	cache *packetcache.Cache
	// size is the frame size seen in the last VP8 keyframe, width<<16|height.
	size atomic.Uint32
	// tidBytes counts bytes per VP8 temporal layer (TID 0-3), so the
	// allocator knows what dropping upper temporal layers saves.
	tidBytes [maxTemporal]atomic.Uint64

	// rate is owned by the SFU's control loop, which publishes its
	// figures (bits per second) in bitrate and temporal.
	rate     layerRate
	bitrate  atomic.Uint64
	temporal [maxTemporal]atomic.Uint64 // cumulative up to each TID
}

// maxTemporal is the number of VP8 temporal layers tracked.
const maxTemporal = 4

// Size is a video frame size in pixels.
type Size struct{ Width, Height uint32 }

func newUpTrack(p *Participant, info TrackInfo, upstream RTCPWriter) *UpTrack {
	s := p.conf.sfu
	t := &UpTrack{
		owner:    p,
		info:     info,
		log:      p.log.With().Str("track", string(info.ID)).Logger(),
		upstream: upstream,
		keyframe: keyframeDetector(info.Kind, info.Codec.MimeType),
		started:  s.now(),
	}
	n := len(info.Layers)
	if n == 0 {
		n = 1
	}
	t.isVP8 = info.Kind == KindVideo && mimeEqual(info.Codec.MimeType, "video/VP8")
	if info.Kind == KindAudio {
		for _, e := range info.Extensions {
			if e.URI == audioLevelURI {
				t.levelID = e.ID
			}
		}
	}
	for i := 0; i < n; i++ {
		l := &layer{up: t, index: i}
		if i < len(info.Layers) {
			l.rid = info.Layers[i]
		}
		l.kf.interval = s.opts.KeyframeInterval
		if info.Kind == KindVideo {
			l.cache = packetcache.New(s.opts.PacketCache)
		}
		l.downs.Store(&[]*DownTrack{})
		t.layers = append(t.layers, l)
	}
	// A publisher starts out sending every layer.
	t.ctl.wanted = make([]bool, len(t.layers))
	for i := range t.ctl.wanted {
		t.ctl.wanted[i] = true
	}
	t.lastAt = t.started
	return t
}

// ID returns the track's ID.
func (t *UpTrack) ID() TrackID { return t.info.ID }

// Info returns the track's description.
func (t *UpTrack) Info() TrackInfo { return t.info }

// Kind returns the media kind.
func (t *UpTrack) Kind() Kind { return t.info.Kind }

// Codec returns the published codec.
func (t *UpTrack) Codec() Codec { return t.info.Codec }

// Owner returns the publishing participant.
func (t *UpTrack) Owner() *Participant { return t.owner }

// Started returns when the track was published.
func (t *UpTrack) Started() time.Time { return t.started }

// Closed reports whether the track was unpublished.
func (t *UpTrack) Closed() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.closed
}

// Layer returns the index of the layer with the given RID, or -1. The
// empty RID names the only layer of a track without simulcast.
func (t *UpTrack) Layer(rid string) int {
	for i, l := range t.layers {
		if l.rid == rid {
			return i
		}
	}
	if rid == "" && len(t.layers) == 1 {
		return 0
	}
	return -1
}

// HandleRTP takes one RTP packet read from the publisher for layer i and
// forwards it. buf is only read during the call. Each layer must be fed
// from one goroutine.
func (t *UpTrack) HandleRTP(i int, buf []byte) error {
	l := t.layers[i]
	n, err := l.hdr.Unmarshal(buf)
	if err != nil {
		return err
	}
	payload := buf[n:]
	now := t.owner.conf.sfu.now()
	if l.ssrc.Load() != l.hdr.SSRC {
		l.ssrc.Store(l.hdr.SSRC)
		if l.cache != nil {
			l.cache.Reset()
		}
	}
	l.packets.Add(1)
	l.bytes.Add(uint64(len(buf)))
	l.lastSeen.Store(now.UnixNano())

	if t.levelID != 0 {
		if lv, _, ok := speaker.ParseAudioLevel(l.hdr.GetExtension(t.levelID)); ok {
			t.meter.Observe(lv)
		}
	}
	if t.info.Kind == KindAudio {
		for _, d := range *l.downs.Load() {
			d.forward(l, &l.hdr, payload, nil, true, now)
		}
		return nil
	}

	if l.cache.Store(l.hdr.SequenceNumber, buf) {
		// A retransmission of a packet that arrived after all (or a
		// duplicate on the path): it was forwarded already.
		return nil
	}
	if isPadding(&l.hdr, payload) {
		// Padding the publisher sends to probe its own uplink carries
		// no media; subscribers get their own probes.
		for _, d := range *l.downs.Load() {
			d.skip(l, l.hdr.SequenceNumber)
		}
		return nil
	}
	var desc *vp8.Descriptor
	var keyframe bool
	if t.isVP8 {
		if l.desc.Unmarshal(payload) == nil {
			desc = &l.desc
			keyframe = vp8.IsKeyframe(payload, desc)
			tid := 0
			if desc.HasTID {
				tid = int(min(desc.TID, maxTemporal-1))
			}
			l.tidBytes[tid].Add(uint64(len(buf)))
			if keyframe {
				if w, h, ok := vp8.KeyframeSize(payload, desc); ok {
					l.size.Store(uint32(w)<<16 | uint32(h))
				}
			}
		}
	} else {
		keyframe = t.keyframe(payload)
	}
	if keyframe {
		l.kf.received()
	} else if l.kf.pending.Load() && l.kf.tick(now) {
		t.sendPLI(l)
	}
	for _, d := range *l.downs.Load() {
		d.forward(l, &l.hdr, payload, desc, keyframe, now)
	}
	return nil
}

// isPadding reports whether a packet carries only padding (RFC 3550
// §5.1: the last byte counts the padding bytes).
func isPadding(h *rtp.Header, payload []byte) bool {
	return h.Padding && len(payload) > 0 && int(payload[len(payload)-1]) == len(payload)
}

// HandleRTCP takes RTCP read from the publisher's receiver. Sender
// reports are translated into every subscription's timestamp space, so
// subscribers keep lip-sync.
func (t *UpTrack) HandleRTCP(pkts []rtcp.Packet) {
	for _, p := range pkts {
		sr, ok := p.(*rtcp.SenderReport)
		if !ok {
			continue
		}
		for _, l := range t.layers {
			if l.ssrc.Load() != sr.SSRC {
				continue
			}
			for _, d := range *l.downs.Load() {
				d.senderReport(l, sr)
			}
		}
	}
}

// RequestKeyframe asks the publisher for a keyframe on layer i, subject
// to the per-layer rate limit.
func (t *UpTrack) RequestKeyframe(i int) {
	if t.info.Kind != KindVideo || i < 0 || i >= len(t.layers) {
		return
	}
	l := t.layers[i]
	if l.ssrc.Load() == 0 {
		// Nothing received yet, so nothing to address a PLI to: ask at
		// the layer's first packet instead.
		l.kf.pending.Store(true)
		return
	}
	if l.kf.request(t.owner.conf.sfu.now()) {
		t.sendPLI(l)
	}
}

func (t *UpTrack) sendPLI(l *layer) {
	ssrc := l.ssrc.Load()
	if t.upstream == nil || ssrc == 0 {
		return
	}
	if err := t.upstream.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: ssrc}}); err != nil {
		t.log.Debug().Err(err).Msg("send PLI")
		return
	}
	t.plisSent.Add(1)
}

// attach adds d to layer i's subscribers.
func (t *UpTrack) attach(i int, d *DownTrack) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return ErrClosed
	}
	t.layers[i].add(d)
	return nil
}

// detach takes d off layer i's subscribers.
func (t *UpTrack) detach(i int, d *DownTrack) {
	t.mu.Lock()
	t.layers[i].remove(d)
	t.mu.Unlock()
}

// SetMuted records that the publisher muted the track (or unmuted it). A
// muted track's silence is not a stall: its subscribers keep their
// layers for when it comes back.
func (t *UpTrack) SetMuted(muted bool) { t.muted.Store(muted) }

// Muted reports what SetMuted last recorded.
func (t *UpTrack) Muted() bool { return t.muted.Load() }

// SetLayerSizes records the frame sizes the publisher declared for its
// layers, lowest first. Sizes seen in VP8 keyframes take precedence.
func (t *UpTrack) SetLayerSizes(sizes []Size) {
	s := append([]Size(nil), sizes...)
	t.sizes.Store(&s)
}

// LayerSize returns the frame size of layer i: seen in its keyframes,
// else declared, else zero.
func (t *UpTrack) LayerSize(i int) Size {
	if i < 0 || i >= len(t.layers) {
		return Size{}
	}
	if v := t.layers[i].size.Load(); v != 0 {
		return Size{Width: v >> 16, Height: v & 0xffff}
	}
	if s := t.sizes.Load(); s != nil && i < len(*s) {
		return (*s)[i]
	}
	return Size{}
}

// Layers returns how many simulcast layers the track has.
func (t *UpTrack) Layers() int { return len(t.layers) }

func (l *layer) add(d *DownTrack) {
	old := *l.downs.Load()
	for _, o := range old {
		if o == d {
			return
		}
	}
	next := make([]*DownTrack, len(old), len(old)+1)
	copy(next, old)
	next = append(next, d)
	l.downs.Store(&next)
}

func (l *layer) remove(d *DownTrack) {
	old := *l.downs.Load()
	next := make([]*DownTrack, 0, len(old))
	for _, o := range old {
		if o != d {
			next = append(next, o)
		}
	}
	l.downs.Store(&next)
}

// Subscribers returns how many down tracks forward this track.
func (t *UpTrack) Subscribers() int {
	n := 0
	for _, l := range t.layers {
		n += len(*l.downs.Load())
	}
	return n
}

// TrackStats are a published track's counters.
type TrackStats struct {
	Packets  uint64
	Bytes    uint64
	Bitrate  uint64 // bits per second, averaged since the previous call (at least 1 s)
	LastSeen time.Time
}

// Stats returns the track's counters.
func (t *UpTrack) Stats() TrackStats {
	var s TrackStats
	var last int64
	for _, l := range t.layers {
		s.Packets += l.packets.Load()
		s.Bytes += l.bytes.Load()
		if ls := l.lastSeen.Load(); ls > last {
			last = ls
		}
	}
	if last > 0 {
		s.LastSeen = time.Unix(0, last)
	}
	now := t.owner.conf.sfu.now()
	t.statsMu.Lock()
	if el := now.Sub(t.lastAt); el >= time.Second {
		t.bitrate = (s.Bytes - t.lastBytes) * 8 * uint64(time.Second) / uint64(el)
		t.lastBytes, t.lastAt = s.Bytes, now
	}
	s.Bitrate = t.bitrate
	t.statsMu.Unlock()
	return s
}

// Close unpublishes the track. Its down tracks lose their source and stay
// bound; the front-end may give them another (DownTrack.SetSource).
func (t *UpTrack) Close() {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return
	}
	t.closed = true
	var downs []*DownTrack
	for _, l := range t.layers {
		downs = append(downs, *l.downs.Load()...)
		l.downs.Store(&[]*DownTrack{})
	}
	t.mu.Unlock()

	for _, d := range downs {
		d.sourceClosed(t)
	}
	p := t.owner
	p.conf.sfu.retireUp(t)
	p.removeTrack(t)
	p.conf.removeTrack(t)
	t.log.Debug().Msg("track unpublished")
	p.conf.sfu.emit(TrackUnpublished{Conference: p.conf, Participant: p, Track: t})
}

func mimeEqual(a, b string) bool { return strings.EqualFold(a, b) }
