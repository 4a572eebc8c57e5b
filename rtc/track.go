package rtc

import (
	"errors"
	"io"
	"strconv"
	"strings"
	"sync"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
	"github.com/rs/zerolog"

	"github.com/focus-sfu/focus/focus"
	"github.com/focus-sfu/focus/rtc/bwe"
)

// TrackInfo describes a remote track for the core. Layers is left for
// the caller, which knows the simulcast RIDs from the description.
func TrackInfo(track *webrtc.TrackRemote, receiver *webrtc.RTPReceiver) focus.TrackInfo {
	info := focus.TrackInfo{
		StreamID: track.StreamID(),
		Kind:     Kind(track.Kind()),
		Codec:    focusCodec(track.Codec()),
	}
	for _, e := range receiver.GetParameters().HeaderExtensions {
		info.Extensions = append(info.Extensions, focus.HeaderExtension{ID: uint8(e.ID), URI: e.URI})
	}
	return info
}

// Kind converts pion's codec type.
func Kind(t webrtc.RTPCodecType) focus.Kind {
	switch t {
	case webrtc.RTPCodecTypeAudio:
		return focus.KindAudio
	case webrtc.RTPCodecTypeVideo:
		return focus.KindVideo
	}
	return 0
}

// Receive feeds a remote track into the core until the track ends: RTP
// into up's layer for the track's RID, and the publisher's RTCP (sender
// reports) into up.HandleRTCP. It returns when both loops have ended.
func Receive(up *focus.UpTrack, track *webrtc.TrackRemote, receiver *webrtc.RTPReceiver, log zerolog.Logger) {
	ReceiveRewritten(up, track, receiver, nil, log)
}

// ReceiveRewritten is Receive with rewrite, when not nil, applied in place
// to every RTP packet before the core sees it (a cascade trunk renumbers
// header extensions with it).
func ReceiveRewritten(up *focus.UpTrack, track *webrtc.TrackRemote, receiver *webrtc.RTPReceiver, rewrite func(pkt []byte), log zerolog.Logger) {
	layer := up.Layer(track.RID())
	if layer < 0 {
		log.Warn().Str("rid", track.RID()).Msg("track has an unknown simulcast layer; ignored")
		return
	}
	ReceiveLayer(up, layer, track, receiver, rewrite, log)
}

// ReceiveLayer is ReceiveRewritten into layer of up, whatever the
// track's RID: a cascade trunk carries each layer of a simulcast track
// as a track of its own, without RIDs. rewrite may be nil. A layer out of
// up's range is logged and the track ignored.
func ReceiveLayer(up *focus.UpTrack, layer int, track *webrtc.TrackRemote, receiver *webrtc.RTPReceiver, rewrite func(pkt []byte), log zerolog.Logger) {
	if layer < 0 || layer >= up.Layers() {
		log.Warn().Int("layer", layer).Int("layers", up.Layers()).Msg("track for a layer the published track does not have; ignored")
		return
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 1500)
		for {
			var n int
			var err error
			if rid := track.RID(); rid != "" {
				n, _, err = receiver.ReadSimulcast(buf, rid)
			} else {
				n, _, err = receiver.Read(buf)
			}
			if err != nil {
				return
			}
			pkts, err := rtcp.Unmarshal(buf[:n])
			if err != nil {
				continue
			}
			up.HandleRTCP(pkts)
		}
	}()

	buf := make([]byte, 1500)
	var malformed int
	for {
		n, _, err := track.Read(buf)
		if err != nil {
			if !errors.Is(err, io.EOF) {
				log.Debug().Err(err).Msg("read rtp")
			}
			break
		}
		if rewrite != nil {
			rewrite(buf[:n])
		}
		if err := up.HandleRTP(layer, buf[:n]); err != nil {
			malformed++
			if malformed == 1 || malformed%1000 == 0 {
				log.Debug().Err(err).Int("count", malformed).Msg("malformed rtp")
			}
		}
	}
	wg.Wait()
}

// LocalTrack adapts a core DownTrack to pion's TrackLocal, so it can be
// added to a PeerConnection. pion binds it once negotiation settles.
type LocalTrack struct {
	down     *focus.DownTrack
	id       string
	streamID string
	rtcpW    focus.RTCPWriter
	log      zerolog.Logger

	mu   sync.Mutex
	done chan struct{} // closed when the RTCP loop of the current binding ends
}

// NewLocalTrack wraps d. rtcpW (the subscriber's PeerConnection) carries
// the sender reports of the track.
func NewLocalTrack(d *focus.DownTrack, id, streamID string, rtcpW focus.RTCPWriter, log zerolog.Logger) *LocalTrack {
	return &LocalTrack{down: d, id: id, streamID: streamID, rtcpW: rtcpW, log: log}
}

// Bind implements webrtc.TrackLocal.
func (t *LocalTrack) Bind(ctx webrtc.TrackLocalContext) (webrtc.RTPCodecParameters, error) {
	codec, ok := matchCodec(t.down.Codec(), ctx.CodecParameters())
	if !ok {
		return webrtc.RTPCodecParameters{}, webrtc.ErrUnsupportedCodec
	}
	exts := make([]focus.HeaderExtension, 0, len(ctx.HeaderExtensions()))
	for _, e := range ctx.HeaderExtensions() {
		exts = append(exts, focus.HeaderExtension{ID: uint8(e.ID), URI: e.URI})
	}
	b := focus.Binding{
		SSRC:        uint32(ctx.SSRC()),
		PayloadType: uint8(codec.PayloadType),
		Extensions:  exts,
		Writer:      ctx.WriteStream(),
		RTCP:        t.rtcpW,
	}
	if ssrc := ctx.SSRCRetransmission(); ssrc != 0 {
		if pt, ok := rtxPayloadType(codec.PayloadType, ctx.CodecParameters()); ok {
			b.RTXSSRC, b.RTXPayloadType = uint32(ssrc), uint8(pt)
		}
	}
	t.down.Bind(b)
	done := make(chan struct{})
	t.mu.Lock()
	t.done = done
	t.mu.Unlock()
	go t.readRTCP(ctx.RTCPReader(), done)
	return codec, nil
}

func (t *LocalTrack) readRTCP(r interceptor.RTCPReader, done chan struct{}) {
	defer close(done)
	buf := make([]byte, 1500)
	attr := interceptor.Attributes{}
	var pkts []rtcp.Packet
	for {
		clear(attr)
		n, _, err := r.Read(buf, attr)
		if err != nil {
			return
		}
		// Only the requests the core answers are parsed: receiver
		// reports and transport-wide feedback, most of what a subscriber
		// sends, are left to the estimator, which reads them in place.
		pkts = pkts[:0]
		_ = bwe.Packets(buf[:n], func(pt, format uint8, b []byte) {
			var p rtcp.Packet
			switch {
			case pt == ptTransportFeedback && format == fmtNACK:
				p = &rtcp.TransportLayerNack{}
			case pt == ptPayloadFeedback && format == fmtPLI:
				p = &rtcp.PictureLossIndication{}
			case pt == ptPayloadFeedback && format == fmtFIR:
				p = &rtcp.FullIntraRequest{}
			default:
				return
			}
			if p.Unmarshal(b) == nil {
				pkts = append(pkts, p)
			}
		})
		if len(pkts) > 0 {
			t.down.HandleRTCP(pkts)
		}
	}
}

// Unbind implements webrtc.TrackLocal.
func (t *LocalTrack) Unbind(webrtc.TrackLocalContext) error {
	t.down.Unbind()
	return nil
}

// Wait blocks until the RTCP loop of the last binding has ended; pion
// ends it when the sender stops.
func (t *LocalTrack) Wait() {
	t.mu.Lock()
	done := t.done
	t.mu.Unlock()
	if done != nil {
		<-done
	}
}

// ID implements webrtc.TrackLocal.
func (t *LocalTrack) ID() string { return t.id }

// RID implements webrtc.TrackLocal.
func (t *LocalTrack) RID() string { return "" }

// StreamID implements webrtc.TrackLocal.
func (t *LocalTrack) StreamID() string { return t.streamID }

// Kind implements webrtc.TrackLocal.
func (t *LocalTrack) Kind() webrtc.RTPCodecType {
	if t.down.Kind() == focus.KindAudio {
		return webrtc.RTPCodecTypeAudio
	}
	return webrtc.RTPCodecTypeVideo
}

// DownTrack returns the core track behind t.
func (t *LocalTrack) DownTrack() *focus.DownTrack { return t.down }

// matchCodec picks the negotiated codec for c: the same format
// parameters if offered, else the same MIME type.
func matchCodec(c focus.Codec, offered []webrtc.RTPCodecParameters) (webrtc.RTPCodecParameters, bool) {
	var byMime *webrtc.RTPCodecParameters
	for i := range offered {
		o := &offered[i]
		if !strings.EqualFold(o.MimeType, c.MimeType) {
			continue
		}
		if strings.EqualFold(o.SDPFmtpLine, c.Fmtp) {
			return *o, true
		}
		if byMime == nil {
			byMime = o
		}
	}
	if byMime == nil {
		return webrtc.RTPCodecParameters{}, false
	}
	return *byMime, true
}

// rtxPayloadType finds the negotiated retransmission format for media
// payload type pt: the "video/rtx" codec whose apt= names it.
func rtxPayloadType(pt webrtc.PayloadType, negotiated []webrtc.RTPCodecParameters) (webrtc.PayloadType, bool) {
	want := "apt=" + strconv.Itoa(int(pt))
	for _, c := range negotiated {
		if !strings.EqualFold(c.MimeType, webrtc.MimeTypeRTX) {
			continue
		}
		for _, p := range strings.Split(c.SDPFmtpLine, ";") {
			if strings.TrimSpace(p) == want {
				return c.PayloadType, true
			}
		}
	}
	return 0, false
}

func focusCodec(c webrtc.RTPCodecParameters) focus.Codec {
	return focus.Codec{MimeType: c.MimeType, ClockRate: c.ClockRate, Channels: c.Channels, Fmtp: c.SDPFmtpLine}
}
