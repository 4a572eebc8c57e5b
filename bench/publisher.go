package bench

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// Load is the synthetic media each publisher sends.
type Load struct {
	// VideoPPS is the video packet rate (of the top layer with simulcast),
	// evenly paced; FPS the frame rate the packets are grouped into
	// (VideoPPS/FPS packets a frame, the marker bit on the last).
	VideoPPS, FPS int
	// VideoSize and AudioSize are RTP payload sizes in bytes.
	VideoSize, AudioSize int
	// Simulcast sends three video layers, q, h and f, at 1/16, 1/4 and all
	// of VideoPPS (at least one packet a frame).
	Simulcast bool
	// KeyframeInterval spaces the keyframes sent unasked; a PLI or FIR
	// makes the next frame a keyframe.
	KeyframeInterval time.Duration
	// Feedback is the congestion feedback subscribers send.
	Feedback Feedback
}

// audioInterval is Opus's usual 20 ms packet time: 50 packets a second.
const audioInterval = 20 * time.Millisecond

// window is the measured interval, in unix nanoseconds of the stamps'
// clock. Before it is set nothing is in it.
type window struct {
	start, end atomic.Int64
}

func newWindow() *window {
	w := &window{}
	w.start.Store(1<<63 - 1)
	return w
}

// set opens [start, end). end is stored first, so whoever sees the new
// start sees the new end.
func (w *window) set(start, end int64) {
	w.end.Store(end)
	w.start.Store(start)
}

func (w *window) contains(t int64) bool {
	return t >= w.start.Load() && t < w.end.Load()
}

// counter counts what a stream sent inside the window.
type counter struct {
	packets, bytes atomic.Int64
}

// layerShape is one video layer of a publisher.
type layerShape struct {
	rid           string
	pps           int
	width, height uint16
}

// layerShapes returns the video layers l sends, lowest first.
func (l Load) layerShapes() []layerShape {
	if !l.Simulcast {
		return []layerShape{{pps: l.VideoPPS, width: 1280, height: 720}}
	}
	return []layerShape{
		{rid: "q", pps: max(l.FPS, l.VideoPPS/16), width: 320, height: 180},
		{rid: "h", pps: max(l.FPS, l.VideoPPS/4), width: 640, height: 360},
		{rid: "f", pps: l.VideoPPS, width: 1280, height: 720},
	}
}

type pubLayer struct {
	layerShape
	index     uint8
	track     *webrtc.TrackLocalStaticRTP
	keyWanted atomic.Bool
	sent      counter
	keyframes atomic.Int64
	plis      atomic.Int64
}

// publisher is one WHIP publisher of synthetic Opus and VP8.
type publisher struct {
	spec   PublisherSpec
	load   Load
	win    *window
	sess   *session
	pc     *webrtc.PeerConnection
	audio  *webrtc.TrackLocalStaticRTP
	aSent  counter
	sender *webrtc.RTPSender // video
	layers []*pubLayer

	writeErrors atomic.Int64
	stop        chan struct{}
	wg          sync.WaitGroup
}

// publish connects a publisher through req and starts its streams once
// connected.
func publish(ctx context.Context, api *webrtc.API, hc *http.Client, spec PublisherSpec, load Load, win *window, req Request) (*publisher, error) {
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, fmt.Errorf("bench: publisher %d: new connection: %w", spec.Index, err)
	}
	p := &publisher{spec: spec, load: load, win: win, pc: pc, stop: make(chan struct{})}
	if err := p.addTracks(); err != nil {
		_ = pc.Close()
		return nil, fmt.Errorf("bench: publisher %d: %w", spec.Index, err)
	}
	p.sess, err = negotiate(ctx, hc, pc, req)
	if err == nil {
		err = waitConnected(ctx, pc)
	}
	if err != nil {
		p.close()
		return nil, fmt.Errorf("bench: publisher %d: %w", spec.Index, err)
	}
	if err := p.start(); err != nil {
		p.close()
		return nil, fmt.Errorf("bench: publisher %d: %w", spec.Index, err)
	}
	return p, nil
}

func (p *publisher) addTracks() error {
	stream := fmt.Sprintf("bench-%d", p.spec.Index)
	if p.spec.Audio {
		t, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "audio", stream)
		if err != nil {
			return fmt.Errorf("audio track: %w", err)
		}
		tr, err := p.pc.AddTransceiverFromTrack(t, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
		if err != nil {
			return fmt.Errorf("add audio: %w", err)
		}
		p.audio = t
		p.wg.Add(1)
		go p.drainRTCP(tr.Sender())
	}
	if !p.spec.Video {
		return nil
	}
	for i, s := range p.load.layerShapes() {
		var opts []func(*webrtc.TrackLocalStaticRTP)
		if s.rid != "" {
			opts = append(opts, webrtc.WithRTPStreamID(s.rid))
		}
		t, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "video", stream, opts...)
		if err != nil {
			return fmt.Errorf("video track %q: %w", s.rid, err)
		}
		p.layers = append(p.layers, &pubLayer{layerShape: s, index: uint8(i), track: t})
	}
	tr, err := p.pc.AddTransceiverFromTrack(p.layers[0].track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
	if err != nil {
		return fmt.Errorf("add video: %w", err)
	}
	p.sender = tr.Sender()
	for _, l := range p.layers[1:] {
		if err := p.sender.AddEncoding(l.track); err != nil {
			return fmt.Errorf("add video layer %q: %w", l.rid, err)
		}
	}
	for _, l := range p.layers {
		p.wg.Add(1)
		go p.readVideoRTCP(l)
	}
	return nil
}

// drainRTCP reads a sender's RTCP so that its interceptors run (the NACK
// responder answers from there).
func (p *publisher) drainRTCP(s *webrtc.RTPSender) {
	defer p.wg.Done()
	buf := make([]byte, 1500)
	for {
		if _, _, err := s.Read(buf); err != nil {
			return
		}
	}
}

// readVideoRTCP turns a PLI or FIR for l into a keyframe at its next frame.
func (p *publisher) readVideoRTCP(l *pubLayer) {
	defer p.wg.Done()
	buf := make([]byte, 1500)
	for {
		var n int
		var err error
		if l.rid != "" {
			n, _, err = p.sender.ReadSimulcast(buf, l.rid)
		} else {
			n, _, err = p.sender.Read(buf)
		}
		if err != nil {
			return
		}
		pkts, err := rtcp.Unmarshal(buf[:n])
		if err != nil {
			continue
		}
		for _, pkt := range pkts {
			switch pkt.(type) {
			case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
				l.plis.Add(1)
				l.keyWanted.Store(true)
			}
		}
	}
}

func (p *publisher) start() error {
	if p.audio != nil {
		p.wg.Add(1)
		go p.sendAudio()
	}
	if len(p.layers) == 0 {
		return nil
	}
	// With simulcast the receiver tells the layers apart by the RID
	// extension, which pion leaves to the sender.
	var midID, ridID uint8
	mid := ""
	if p.load.Simulcast {
		for _, e := range p.sender.GetParameters().HeaderExtensions {
			switch e.URI {
			case sdp.SDESMidURI:
				midID = uint8(e.ID)
			case sdp.SDESRTPStreamIDURI:
				ridID = uint8(e.ID)
			}
		}
		if midID == 0 || ridID == 0 {
			return errors.New("simulcast: the server did not negotiate the MID and RID header extensions")
		}
		for _, tr := range p.pc.GetTransceivers() {
			if tr.Sender() == p.sender {
				mid = tr.Mid()
			}
		}
	}
	for _, l := range p.layers {
		p.wg.Add(1)
		go p.sendVideo(l, midID, ridID, mid)
	}
	return nil
}

func (p *publisher) sendAudio() {
	defer p.wg.Done()
	pkt := &rtp.Packet{Header: rtp.Header{
		Version:        2,
		PayloadType:    ptOpus,
		SequenceNumber: uint16(rand.Uint32()),
		Timestamp:      rand.Uint32(),
		Marker:         true,
	}}
	st := Stamp{Stream: uint32(p.spec.Index)}
	buf := make([]byte, 0, p.load.AudioSize+StampSize+1)
	tick := time.NewTicker(audioInterval)
	defer tick.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-tick.C:
		}
		st.Sent = time.Now().UnixNano()
		buf = AppendOpus(buf[:0], st, p.load.AudioSize)
		pkt.Payload = buf
		if err := p.audio.WriteRTP(pkt); err != nil {
			p.writeErrors.Add(1)
		} else if p.win.contains(st.Sent) {
			p.aSent.packets.Add(1)
			p.aSent.bytes.Add(int64(len(buf)))
		}
		st.Counter++
		pkt.Marker = false
		pkt.SequenceNumber++
		pkt.Timestamp += 960
	}
}

// sendVideo is l's encoder: frames of pps/fps packets, a keyframe every
// KeyframeInterval and after a PLI or FIR. The packets go out evenly
// spaced at pps, as a browser's pacer spreads a frame, rather than in one
// burst per frame: a burst fanned out to N subscribers would make the
// delay figures measure the burst's length.
func (p *publisher) sendVideo(l *pubLayer, midID, ridID uint8, mid string) {
	defer p.wg.Done()
	pps := max(1, l.pps)
	perFrame := max(1, (pps+p.load.FPS/2)/max(1, p.load.FPS))
	interval := time.Second / time.Duration(pps)
	tsStep := uint32(time.Duration(perFrame) * interval * 90000 / time.Second)
	pkt := &rtp.Packet{Header: rtp.Header{
		Version:        2,
		PayloadType:    ptVP8,
		SequenceNumber: uint16(rand.Uint32()),
		Timestamp:      rand.Uint32(),
	}}
	if midID != 0 {
		_ = pkt.Header.SetExtension(midID, []byte(mid))
		_ = pkt.Header.SetExtension(ridID, []byte(l.rid))
	}
	st := Stamp{Video: true, Layer: l.index, Stream: uint32(p.spec.Index)}
	frame := VP8Frame{PictureID: uint16(rand.Uint32()) & 0x7fff, Width: l.width, Height: l.height}
	buf := make([]byte, 0, p.load.VideoSize+StampSize+16)
	var lastKey time.Time
	pace := newPacer(interval)
	defer pace.stop()
	for i := 0; ; i = (i + 1) % perFrame {
		if !pace.wait(p.stop) {
			return
		}
		if i == 0 {
			now := time.Now()
			frame.Keyframe = l.keyWanted.Swap(false) || now.Sub(lastKey) >= p.load.KeyframeInterval
			if frame.Keyframe {
				lastKey = now
				l.keyframes.Add(1)
			}
		}
		frame.Start = i == 0
		st.Sent = time.Now().UnixNano()
		buf = AppendVP8(buf[:0], st, frame, p.load.VideoSize)
		pkt.Payload = buf
		pkt.Marker = i == perFrame-1
		if err := l.track.WriteRTP(pkt); err != nil {
			p.writeErrors.Add(1)
		} else if p.win.contains(st.Sent) {
			l.sent.packets.Add(1)
			l.sent.bytes.Add(int64(len(buf)))
		}
		st.Counter++
		pkt.SequenceNumber++
		if pkt.Marker {
			frame.PictureID = (frame.PictureID + 1) & 0x7fff
			pkt.Timestamp += tsStep
		}
	}
}

// pacer releases a sender every interval on average: when the generator
// falls behind it catches up at once, up to maxLag, and beyond that starts
// afresh, so the mean rate holds without a flood after a stall.
type pacer struct {
	interval time.Duration
	next     time.Time
	timer    *time.Timer
}

const maxLag = 100 * time.Millisecond

func newPacer(interval time.Duration) *pacer {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &pacer{interval: interval, next: time.Now(), timer: t}
}

// wait blocks until the next slot; false when stop closed first.
func (p *pacer) wait(stop <-chan struct{}) bool {
	p.next = p.next.Add(p.interval)
	d := time.Until(p.next)
	if d <= 0 {
		if d < -maxLag {
			p.next = time.Now()
		}
		select {
		case <-stop:
			return false
		default:
			return true
		}
	}
	p.timer.Reset(d)
	select {
	case <-stop:
		return false
	case <-p.timer.C:
		return true
	}
}

func (p *pacer) stop() { p.timer.Stop() }

// close stops the streams and closes the connection.
func (p *publisher) close() {
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	_ = p.pc.Close()
	p.wg.Wait()
}
