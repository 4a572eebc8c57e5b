package vnettest

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/focus-sfu/focus/internal/testclient"
)

// Packet is one video packet a Viewer received.
type Packet struct {
	At  time.Time
	Seq uint16
	// Size is the payload's, in bytes.
	Size int
	// Layer, Counter and Frame are from the publisher's trailer; Layer
	// is -1 when the payload had none.
	Layer   int
	Counter uint32
	Frame   uint32
	// Marker ends a frame; Keyframe starts a keyframe.
	Marker, Keyframe bool
	// RTX is set when the packet came on the retransmission stream and
	// pion unwrapped it.
	RTX bool
}

// Viewer is a WHEP client on the client host that receives one video
// track and records every packet. Its connection, from ClientAPI,
// negotiates RTX and sends NACKs, transport-wide feedback and receiver
// reports as a browser does.
type Viewer struct {
	*session

	mu      sync.Mutex
	packets []Packet
	closed  bool
	wg      sync.WaitGroup
	once    sync.Once
}

// View connects a viewer to the WHEP endpoint (the full URL of POST
// /whep/{room}, with any query) with a connection from api.
func View(ctx context.Context, api *webrtc.API, endpoint string) (*Viewer, error) {
	s, err := newSession(api)
	if err != nil {
		return nil, err
	}
	v := &Viewer{session: s}
	s.pc.OnTrack(v.onTrack)
	if _, err := s.pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
		_ = s.pc.Close()
		return nil, fmt.Errorf("vnettest: add video transceiver: %w", err)
	}
	if err := s.negotiate(ctx, endpoint); err != nil {
		_ = v.Close()
		return nil, fmt.Errorf("vnettest: view: %w", err)
	}
	return v, nil
}

func (v *Viewer) onTrack(t *webrtc.TrackRemote, r *webrtc.RTPReceiver) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.closed {
		return
	}
	v.wg.Add(2)
	go v.readRTP(t)
	go func() { // the receiver's interceptors see sender reports only when read
		defer v.wg.Done()
		for {
			if _, _, err := r.ReadRTCP(); err != nil {
				return
			}
		}
	}()
}

func (v *Viewer) readRTP(t *webrtc.TrackRemote) {
	defer v.wg.Done()
	for {
		pkt, attr, err := t.ReadRTP()
		if err != nil {
			return
		}
		p := Packet{At: time.Now(), Seq: pkt.SequenceNumber, Size: len(pkt.Payload), Layer: -1, Marker: pkt.Marker}
		p.RTX = attr != nil && attr.Get(webrtc.AttributeRtxSequenceNumber) != nil
		if tr, err := ParseTrailer(pkt.Payload); err == nil {
			p.Layer, p.Counter, p.Frame = tr.Layer, tr.Counter, tr.Frame
		}
		if info, err := testclient.ParseVP8(pkt.Payload); err == nil {
			p.Keyframe = info.Keyframe
		}
		v.mu.Lock()
		v.packets = append(v.packets, p)
		v.mu.Unlock()
	}
}

// Packets returns a copy of every packet received so far, in order of
// arrival.
func (v *Viewer) Packets() []Packet {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]Packet(nil), v.packets...)
}

// Close DELETEs the WHEP resource, closes the connection and waits for
// the readers.
func (v *Viewer) Close() error {
	var err error
	v.once.Do(func() {
		v.mu.Lock()
		v.closed = true
		v.mu.Unlock()
		err = v.session.close()
		v.wg.Wait()
	})
	return err
}
