package focus

import (
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/rs/zerolog"
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

	mu     sync.Mutex // guards the subscriber lists' writers and closed
	closed bool

	statsMu   sync.Mutex
	lastBytes uint64
	lastAt    time.Time
	bitrate   uint64
}

// layer is one simulcast encoding of an UpTrack (the only one when the
// track is not simulcast).
type layer struct {
	up    *UpTrack
	index int
	rid   string

	// downs is the subscriber list, replaced whole on every change so the
	// read loop can walk it without a lock.
	downs  atomic.Pointer[[]*DownTrack]
	wanted int // down tracks that chose this layer; guarded by up.mu

	hdr      rtp.Header // owned by the layer's read loop
	ssrc     atomic.Uint32
	packets  atomic.Uint64
	bytes    atomic.Uint64
	lastSeen atomic.Int64 // unix nanoseconds
	kf       keyframer
}

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
	for i := 0; i < n; i++ {
		l := &layer{up: t, index: i}
		if i < len(info.Layers) {
			l.rid = info.Layers[i]
		}
		l.kf.interval = s.opts.KeyframeInterval
		l.downs.Store(&[]*DownTrack{})
		t.layers = append(t.layers, l)
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
	}
	l.packets.Add(1)
	l.bytes.Add(uint64(len(buf)))
	l.lastSeen.Store(now.UnixNano())

	keyframe := t.keyframe(payload)
	if t.info.Kind == KindVideo {
		if keyframe {
			l.kf.received()
		} else if l.kf.pending.Load() && l.kf.tick(now) {
			t.sendPLI(l)
		}
	}
	for _, d := range *l.downs.Load() {
		d.forward(l, &l.hdr, payload, keyframe, now)
	}
	return nil
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
	}
}

// attach adds d to layer i's subscribers and counts it as wanting the
// layer. It reports whether the layer's demand changed.
func (t *UpTrack) attach(i int, d *DownTrack) (wanted []bool, changed bool, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, false, ErrClosed
	}
	l := t.layers[i]
	l.add(d)
	l.wanted++
	if l.wanted == 1 {
		return t.wantedLocked(), true, nil
	}
	return nil, false, nil
}

// release ends d's want of layer i; remove also takes it off the list.
func (t *UpTrack) release(i int, d *DownTrack, remove bool) (wanted []bool, changed bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	l := t.layers[i]
	if remove {
		l.remove(d)
	}
	if t.closed || l.wanted == 0 {
		return nil, false
	}
	l.wanted--
	if l.wanted == 0 {
		return t.wantedLocked(), true
	}
	return nil, false
}

// detach takes d off layer i's list without touching demand: d has moved
// on to another source.
func (t *UpTrack) detach(i int, d *DownTrack) {
	t.mu.Lock()
	t.layers[i].remove(d)
	t.mu.Unlock()
}

func (t *UpTrack) wantedLocked() []bool {
	w := make([]bool, len(t.layers))
	for i, l := range t.layers {
		w[i] = l.wanted > 0
	}
	return w
}

func (t *UpTrack) emitDemand(wanted []bool) {
	c := t.owner.conf
	c.sfu.emit(DemandChanged{Conference: c, Track: t, Wanted: wanted})
}

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
		l.wanted = 0
	}
	t.mu.Unlock()

	for _, d := range downs {
		d.sourceClosed(t)
	}
	p := t.owner
	p.removeTrack(t)
	p.conf.removeTrack(t)
	t.log.Debug().Msg("track unpublished")
	p.conf.sfu.emit(TrackUnpublished{Conference: p.conf, Participant: p, Track: t})
}

func mimeEqual(a, b string) bool { return strings.EqualFold(a, b) }
