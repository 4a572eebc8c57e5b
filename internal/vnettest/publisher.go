package vnettest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// Layer is one simulcast encoding a Publisher sends.
type Layer struct {
	RID           string
	Width, Height int
	// Bitrate is the payload bit rate.
	Bitrate int
}

// SimulcastLayers are a browser's three VP8 simulcast layers, lowest
// first, at the rates a 720p camera's encoder settles on.
var SimulcastLayers = []Layer{
	{RID: "q", Width: 320, Height: 180, Bitrate: 150_000},
	{RID: "h", Width: 640, Height: 360, Bitrate: 500_000},
	{RID: "f", Width: 1280, Height: 720, Bitrate: 1_200_000},
}

// What the publisher's synthetic encoder does.
const (
	FPS = 30
	// KeyframeInterval spaces the keyframes a layer sends unasked.
	KeyframeInterval = 2 * time.Second
	// maxPayload bounds a packet's payload; frames are split evenly into
	// as few packets as fit.
	maxPayload = 1200
)

// Publisher is a WHIP client on the client host that sends VP8
// simulcast: one RTP stream per layer, each a synthetic encoder (see
// payload.go) that sends a keyframe every KeyframeInterval and at the
// next frame after a PLI or FIR for its SSRC.
type Publisher struct {
	*session
	sender *webrtc.RTPSender
	layers []*pubLayer
	stop   chan struct{}
	wg     sync.WaitGroup
	once   sync.Once
}

type pubLayer struct {
	Layer
	index int
	track *webrtc.TrackLocalStaticRTP

	active    atomic.Bool
	keyWanted atomic.Bool
	// sent is the number of packets written, which is also the trailer
	// counter of the next one.
	sent        atomic.Uint32
	keyframes   atomic.Int64
	onRequest   atomic.Int64 // keyframes sent for a PLI or FIR
	requests    atomic.Int64 // PLIs and FIRs received
	writeErrors atomic.Int64
}

// LayerStats is what a Publisher sent on one layer.
type LayerStats struct {
	// Packets is how many packets were written; their trailer counters
	// are 0 to Packets-1.
	Packets uint32
	// Keyframes counts keyframes sent, KeyframesOnRequest those sent
	// for a PLI or FIR, Requests the PLIs and FIRs received.
	Keyframes, KeyframesOnRequest, Requests int64
	WriteErrors                             int64
}

// Publish connects a simulcast publisher to the WHIP endpoint (the full
// URL of POST /whip/{room}) with a connection from api, and starts
// sending once connected.
func Publish(ctx context.Context, api *webrtc.API, endpoint string, layers []Layer) (*Publisher, error) {
	if len(layers) == 0 {
		return nil, errors.New("vnettest: publish: no layers")
	}
	s, err := newSession(api)
	if err != nil {
		return nil, err
	}
	p := &Publisher{session: s, stop: make(chan struct{})}
	for i, l := range layers {
		track, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000},
			"video", "vnettest", webrtc.WithRTPStreamID(l.RID))
		if err != nil {
			_ = s.pc.Close()
			return nil, fmt.Errorf("vnettest: track %s: %w", l.RID, err)
		}
		pl := &pubLayer{Layer: l, index: i, track: track}
		pl.active.Store(true)
		p.layers = append(p.layers, pl)
	}
	tr, err := s.pc.AddTransceiverFromTrack(p.layers[0].track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
	if err != nil {
		_ = s.pc.Close()
		return nil, fmt.Errorf("vnettest: add transceiver: %w", err)
	}
	p.sender = tr.Sender()
	for _, l := range p.layers[1:] {
		if err := p.sender.AddEncoding(l.track); err != nil {
			_ = s.pc.Close()
			return nil, fmt.Errorf("vnettest: add encoding %s: %w", l.RID, err)
		}
	}
	for _, l := range p.layers {
		p.wg.Add(1)
		go p.readRTCP(l)
	}
	if err := s.negotiate(ctx, endpoint); err != nil {
		_ = p.Close()
		return nil, fmt.Errorf("vnettest: publish: %w", err)
	}
	// pion leaves the MID and RID header extensions to the sender; the
	// receiver needs them to tell the layers apart.
	var midID, ridID uint8
	for _, e := range p.sender.GetParameters().HeaderExtensions {
		switch e.URI {
		case sdp.SDESMidURI:
			midID = uint8(e.ID)
		case sdp.SDESRTPStreamIDURI:
			ridID = uint8(e.ID)
		}
	}
	if midID == 0 || ridID == 0 {
		_ = p.Close()
		return nil, errors.New("vnettest: publish: the MID and RID header extensions were not negotiated")
	}
	for _, l := range p.layers {
		p.wg.Add(1)
		go p.send(l, midID, ridID, tr.Mid())
	}
	return p, nil
}

// readRTCP turns PLIs and FIRs for l's SSRC into a keyframe at its next
// frame, and keeps the sender's interceptors (NACK responder, reports)
// fed.
func (p *Publisher) readRTCP(l *pubLayer) {
	defer p.wg.Done()
	buf := make([]byte, 1500)
	for {
		n, _, err := p.sender.ReadSimulcast(buf, l.RID)
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
				l.requests.Add(1)
				l.keyWanted.Store(true)
			}
		}
	}
}

// send is l's encoder: a frame every 1/FPS, split into packets of at
// most maxPayload bytes, the marker bit on the last.
func (p *Publisher) send(l *pubLayer, midID, ridID uint8, mid string) {
	defer p.wg.Done()
	frameBytes := l.Bitrate / 8 / FPS
	perFrame := (frameBytes + maxPayload - 1) / maxPayload
	size := (frameBytes + perFrame - 1) / perFrame
	pkt := &rtp.Packet{Header: rtp.Header{
		Version:        2,
		PayloadType:    96, // pion writes the negotiated one
		SequenceNumber: uint16(rand.Uint32()),
	}}
	ts := rand.Uint32()
	if err := pkt.Header.SetExtension(midID, []byte(mid)); err != nil {
		l.writeErrors.Add(1)
	}
	if err := pkt.Header.SetExtension(ridID, []byte(l.RID)); err != nil {
		l.writeErrors.Add(1)
	}
	pictureID := uint16(rand.Uint32()) & 0x7fff
	var frame uint32
	var lastKey time.Time
	var buf []byte
	tick := time.NewTicker(time.Second / FPS)
	defer tick.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-tick.C:
		}
		// The clock runs on while a layer is off, as a camera's does.
		pkt.Timestamp = ts
		ts += 90000 / FPS
		if !l.active.Load() {
			lastKey = time.Time{} // an encoder resumes with a keyframe
			continue
		}
		now := time.Now()
		requested := l.keyWanted.Swap(false)
		key := requested || now.Sub(lastKey) >= KeyframeInterval
		if key {
			lastKey = now
			l.keyframes.Add(1)
			if requested {
				l.onRequest.Add(1)
			}
		}
		for i := range perFrame {
			counter := l.sent.Load()
			buf = appendVP8(buf[:0], i == 0, key, pictureID, l.Width, l.Height, size,
				Trailer{Layer: l.index, Counter: counter, Frame: frame})
			pkt.Marker = i == perFrame-1
			pkt.Payload = buf
			if err := l.track.WriteRTP(pkt); err != nil {
				l.writeErrors.Add(1)
			}
			l.sent.Add(1)
			pkt.SequenceNumber++
		}
		pictureID = (pictureID + 1) & 0x7fff
		frame++
	}
}

// SetActive starts or stops sending layer i, as an encoder does when its
// bandwidth estimate or the CPU no longer allow a layer. A layer that
// starts again starts with a keyframe.
func (p *Publisher) SetActive(i int, on bool) { p.layers[i].active.Store(on) }

// Stats returns what layer i sent so far.
func (p *Publisher) Stats(i int) LayerStats {
	l := p.layers[i]
	return LayerStats{
		Packets:            l.sent.Load(),
		Keyframes:          l.keyframes.Load(),
		KeyframesOnRequest: l.onRequest.Load(),
		Requests:           l.requests.Load(),
		WriteErrors:        l.writeErrors.Load(),
	}
}

// Close stops sending, DELETEs the WHIP resource and closes the
// connection.
func (p *Publisher) Close() error {
	var err error
	p.once.Do(func() {
		close(p.stop)
		err = p.session.close()
		p.wg.Wait()
	})
	return err
}
