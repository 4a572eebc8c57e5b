package bench

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/transport/v4/stdnet"
	"github.com/pion/webrtc/v4"
)

// recvTrack is what one subscriber connection received of one kind. Its
// read loop owns it; it is read only after that loop has ended.
type recvTrack struct {
	video bool
	// Everything in the window, by the stamps' send times.
	packets, bytes int64     // bytes: RTP payload
	rtpBytes       int64     // RTP header and payload, as read
	gaps           int64     // counters skipped within a run of one layer
	delay          Histogram // to the socket (see arrivals)
	readDelay      Histogram // to the read loop
	noArrival      int64     // packets whose socket arrival was not noted
	// Over the whole connection.
	firstAt, firstKeyAt int64 // unix ns; 0 before
	wrongStream         int64 // stamps of another publisher
	unparsed            int64 // payloads without a valid stamp
	lastLayer           uint8
	lastCounter         uint32
	haveLast            bool
}

// subscriber is one WHEP connection watching one publisher.
type subscriber struct {
	spec SubscriberSpec
	win  *window
	sess *session
	arr  arrivals

	mu     sync.Mutex
	closed bool
	tracks []*recvTrack
	stop   chan struct{}
	wg     sync.WaitGroup
}

// subscribe connects a subscriber through req with a recvonly offer of the
// spec's kinds, and returns once it is connected. Its read loops start
// with the first packet of each track.
func subscribe(ctx context.Context, osNet *stdnet.Net, hc *http.Client, spec SubscriberSpec, win *window, req Request, fb Feedback) (*subscriber, error) {
	s := &subscriber{spec: spec, win: win, stop: make(chan struct{})}
	api, err := newAPI(false, fb, &arrivalNet{Net: osNet, arr: &s.arr})
	if err != nil {
		return nil, err
	}
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, fmt.Errorf("bench: subscriber %d of publisher %d: new connection: %w", spec.Index, spec.Publisher, err)
	}
	pc.OnTrack(s.onTrack)
	var kinds []webrtc.RTPCodecType
	if spec.Audio {
		kinds = append(kinds, webrtc.RTPCodecTypeAudio)
	}
	if spec.Video {
		kinds = append(kinds, webrtc.RTPCodecTypeVideo)
	}
	for _, k := range kinds {
		if _, err := pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			_ = pc.Close()
			return nil, fmt.Errorf("bench: subscriber %d: add %s: %w", spec.Index, k, err)
		}
	}
	s.sess, err = negotiate(ctx, hc, pc, req)
	if err == nil {
		err = waitConnected(ctx, pc)
		s.sess.connectedAt = time.Now()
	}
	if err != nil {
		s.sess = &session{pc: pc}
		s.close()
		return nil, fmt.Errorf("bench: subscriber %d of publisher %d: %w", spec.Index, spec.Publisher, err)
	}
	if fb == FeedbackREMB {
		s.wg.Add(1)
		go s.sendREMB()
	}
	return s, nil
}

// sendREMB reports rembBitrate for the connection's media every second,
// as a REMB-only receiver does, until the connection closes.
func (s *subscriber) sendREMB() {
	defer s.wg.Done()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-tick.C:
		}
		var ssrcs []uint32
		for _, tr := range s.sess.pc.GetTransceivers() {
			if t := tr.Receiver().Track(); t != nil {
				ssrcs = append(ssrcs, uint32(t.SSRC()))
			}
		}
		if len(ssrcs) == 0 {
			continue
		}
		_ = s.sess.pc.WriteRTCP([]rtcp.Packet{&rtcp.ReceiverEstimatedMaximumBitrate{Bitrate: rembBitrate, SSRCs: ssrcs}})
	}
}

func (s *subscriber) onTrack(t *webrtc.TrackRemote, r *webrtc.RTPReceiver) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	rt := &recvTrack{video: t.Kind() == webrtc.RTPCodecTypeVideo}
	s.tracks = append(s.tracks, rt)
	s.wg.Add(2)
	go s.read(t, rt)
	go s.drainRTCP(r)
}

// read is the receive loop of one track: one reused buffer, no allocation
// of its own per packet.
func (s *subscriber) read(t *webrtc.TrackRemote, rt *recvTrack) {
	defer s.wg.Done()
	buf := make([]byte, 1600)
	want := uint32(s.spec.Publisher)
	for {
		n, _, err := t.Read(buf)
		if err != nil {
			return
		}
		now := time.Now().UnixNano()
		payload, ok := rtpPayload(buf[:n])
		if !ok || len(payload) == 0 {
			continue // padding, or not RTP
		}
		var st Stamp
		key := false
		if rt.video {
			var info VP8Info
			st, info, err = ParseVP8(payload)
			key = info.Keyframe
		} else {
			st, err = ParseOpus(payload)
		}
		if err != nil {
			rt.unparsed++
			continue
		}
		if st.Stream != want {
			rt.wrongStream++
			continue
		}
		if rt.firstAt == 0 {
			rt.firstAt = now
		}
		if key && rt.firstKeyAt == 0 {
			rt.firstKeyAt = now
		}
		if s.win.contains(st.Sent) {
			rt.packets++
			rt.bytes += int64(len(payload))
			rt.rtpBytes += int64(n)
			rt.readDelay.Add(time.Duration(now - st.Sent))
			if at, ok := s.arr.lookup(binary.BigEndian.Uint32(buf[8:]), binary.BigEndian.Uint16(buf[2:])); ok {
				rt.delay.Add(time.Duration(at - st.Sent))
			} else {
				rt.noArrival++
			}
			if rt.haveLast && st.Layer == rt.lastLayer && st.Counter > rt.lastCounter+1 {
				rt.gaps += int64(st.Counter - rt.lastCounter - 1)
			}
		}
		if !rt.haveLast || st.Layer != rt.lastLayer || st.Counter > rt.lastCounter {
			rt.lastLayer, rt.lastCounter, rt.haveLast = st.Layer, st.Counter, true
		}
	}
}

// drainRTCP reads the receiver's RTCP so that its interceptors see the
// sender reports, as a browser's do.
func (s *subscriber) drainRTCP(r *webrtc.RTPReceiver) {
	defer s.wg.Done()
	buf := make([]byte, 1500)
	for {
		if _, _, err := r.Read(buf); err != nil {
			return
		}
	}
}

// close closes the connection and waits for the read loops.
func (s *subscriber) close() {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.stop)
	}
	s.mu.Unlock()
	_ = s.sess.pc.Close()
	s.wg.Wait()
}

// track returns the received track of a kind, or nil.
func (s *subscriber) track(video bool) *recvTrack {
	for _, t := range s.tracks {
		if t.video == video {
			return t
		}
	}
	return nil
}
