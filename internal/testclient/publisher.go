package testclient

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// PublishOptions tune a Publisher. The zero value is usable.
type PublishOptions struct {
	// Token is sent as "Authorization: Bearer".
	Token string
	// VideoPPS is the video packet rate (default 100).
	VideoPPS int
	// FPS is the video frame rate the packets are grouped into (default 30).
	FPS int
	// VideoPacketSize and AudioPacketSize are RTP payload sizes in bytes
	// (defaults 1000 and 100).
	VideoPacketSize, AudioPacketSize int
	// KeyframeInterval is the time between unrequested keyframes
	// (default 1 s). A PLI or FIR brings the next frame forward as a
	// keyframe regardless.
	KeyframeInterval time.Duration
	// HTTPClient replaces the default client (no keep-alive).
	HTTPClient *http.Client
}

func (o *PublishOptions) setDefaults() {
	if o.VideoPPS <= 0 {
		o.VideoPPS = 100
	}
	if o.FPS <= 0 {
		o.FPS = 30
	}
	if o.VideoPacketSize <= 0 {
		o.VideoPacketSize = 1000
	}
	if o.AudioPacketSize <= 0 {
		o.AudioPacketSize = 100
	}
	if o.KeyframeInterval <= 0 {
		o.KeyframeInterval = time.Second
	}
}

// Publisher is a WHIP client sending synthetic VP8 video and Opus audio.
type Publisher struct {
	*session
	opts  PublishOptions
	video *webrtc.TrackLocalStaticRTP
	audio *webrtc.TrackLocalStaticRTP

	keyframeWanted atomic.Bool
	plis, firs     atomic.Int64
	nacks          atomic.Int64
	videoSent      atomic.Int64
	audioSent      atomic.Int64
	keyframesSent  atomic.Int64
	writeErrors    atomic.Int64

	mu         sync.Mutex
	keyframeAt []KeyframeInfo

	stop chan struct{}
	wg   sync.WaitGroup
}

// KeyframeInfo records one keyframe the publisher sent.
type KeyframeInfo struct {
	At time.Time
	// Counter is the payload counter of the keyframe's first packet.
	Counter uint32
	// Requested is set when a PLI or FIR caused it.
	Requested bool
}

// keptKeyframes bounds PublisherStats.KeyframeLog.
const keptKeyframes = 64

// PublisherStats counts what a Publisher sent and what feedback it got.
type PublisherStats struct {
	VideoPackets, AudioPackets int64
	Keyframes                  int64
	PLIs, FIRs                 int64
	// NACKs counts NACK packets (not the sequence numbers they name).
	NACKs int64
	// WriteErrors counts packets pion failed to write.
	WriteErrors int64
	// KeyframeLog lists the first keyframes sent.
	KeyframeLog []KeyframeInfo
}

// Publish connects a publisher to POST {baseURL}/whip/{room} and starts
// sending once connected. It returns when the PeerConnection is connected.
func Publish(ctx context.Context, baseURL, room string, opts PublishOptions) (*Publisher, error) {
	opts.setDefaults()
	ep, err := endpoint(baseURL, "whip", room, nil)
	if err != nil {
		return nil, err
	}
	s, err := newSession(opts.HTTPClient, opts.Token)
	if err != nil {
		return nil, err
	}
	p := &Publisher{session: s, opts: opts, stop: make(chan struct{})}
	p.video, err = webrtc.NewTrackLocalStaticRTP(
		webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "video", "testclient")
	if err == nil {
		p.audio, err = webrtc.NewTrackLocalStaticRTP(
			webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "audio", "testclient")
	}
	if err != nil {
		_ = p.end(false)
		return nil, fmt.Errorf("testclient: local track: %w", err)
	}
	for _, t := range []*webrtc.TrackLocalStaticRTP{p.video, p.audio} {
		tr, err := s.pc.AddTransceiverFromTrack(t, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
		if err != nil {
			_ = p.end(false)
			return nil, fmt.Errorf("testclient: add %s track: %w", t.Kind(), err)
		}
		p.wg.Add(1)
		go p.readRTCP(tr.Sender())
	}
	if err := s.negotiate(ctx, ep); err != nil {
		// end(true) also withdraws the resource if the server made one.
		_ = p.end(true)
		return nil, fmt.Errorf("testclient: publish to room %q: %w", room, err)
	}
	p.wg.Add(2)
	go p.sendVideo()
	go p.sendAudio()
	return p, nil
}

// readRTCP drains a sender's RTCP (the interceptors need it read) and
// turns PLI and FIR into a keyframe request. It ends when the
// PeerConnection closes.
func (p *Publisher) readRTCP(s *webrtc.RTPSender) {
	defer p.wg.Done()
	for {
		pkts, _, err := s.ReadRTCP()
		if err != nil {
			return
		}
		for _, pkt := range pkts {
			switch pkt.(type) {
			case *rtcp.PictureLossIndication:
				p.plis.Add(1)
				p.keyframeWanted.Store(true)
			case *rtcp.FullIntraRequest:
				p.firs.Add(1)
				p.keyframeWanted.Store(true)
			case *rtcp.TransportLayerNack:
				p.nacks.Add(1)
			}
		}
	}
}

// sendVideo sends the synthetic VP8 stream, logging its keyframes.
func (p *Publisher) sendVideo() {
	defer p.wg.Done()
	pacing := VideoPacing{PPS: p.opts.VideoPPS, FPS: p.opts.FPS, PacketSize: p.opts.VideoPacketSize, KeyframeInterval: p.opts.KeyframeInterval}
	SendVP8(p.stop, pacing, &p.keyframeWanted, func(at time.Time, counter uint32, requested bool) {
		p.keyframesSent.Add(1)
		p.mu.Lock()
		if len(p.keyframeAt) < keptKeyframes {
			p.keyframeAt = append(p.keyframeAt, KeyframeInfo{At: at, Counter: counter, Requested: requested})
		}
		p.mu.Unlock()
	}, func(pkt *rtp.Packet) {
		if err := p.video.WriteRTP(pkt); err != nil {
			p.writeErrors.Add(1)
		}
		p.videoSent.Add(1)
	})
}

// sendAudio sends the synthetic Opus stream.
func (p *Publisher) sendAudio() {
	defer p.wg.Done()
	SendOpus(p.stop, p.opts.AudioPacketSize, func(pkt *rtp.Packet) {
		if err := p.audio.WriteRTP(pkt); err != nil {
			p.writeErrors.Add(1)
		}
		p.audioSent.Add(1)
	})
}

// Stats returns what the publisher sent and the feedback it got so far.
func (p *Publisher) Stats() PublisherStats {
	p.mu.Lock()
	log := append([]KeyframeInfo(nil), p.keyframeAt...)
	p.mu.Unlock()
	return PublisherStats{
		KeyframeLog:  log,
		VideoPackets: p.videoSent.Load(),
		AudioPackets: p.audioSent.Load(),
		Keyframes:    p.keyframesSent.Load(),
		PLIs:         p.plis.Load(),
		FIRs:         p.firs.Load(),
		NACKs:        p.nacks.Load(),
		WriteErrors:  p.writeErrors.Load(),
	}
}

// PLIs is how many Picture Loss Indications the publisher received.
func (p *Publisher) PLIs() int64 { return p.plis.Load() }

func (p *Publisher) closeSenders() {
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
}

// Close stops sending, deletes the WHIP resource and closes the
// PeerConnection.
func (p *Publisher) Close() error { return p.end(true) }

// Vanish stops sending and closes the PeerConnection with its sockets cut:
// the server hears no DELETE, no DTLS alert, nothing, like a peer whose
// network went away.
func (p *Publisher) Vanish() error { return p.end(false) }

func (p *Publisher) end(goodbye bool) error {
	p.closeSenders()
	err := p.session.close(goodbye)
	p.wg.Wait()
	return err
}
