package testclient

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// ViewOptions tune a Viewer. The zero value is usable.
type ViewOptions struct {
	// Token is sent as "Authorization: Bearer".
	Token string
	// Stream, when set, is sent as ?stream= to pick one publisher.
	Stream string
	// HTTPClient replaces the default client (no keep-alive).
	HTTPClient *http.Client
}

// TrackStats is what a Viewer saw of one kind of track. Kinds are tracked
// as one stream even if the SFU switches sources, so a switch shows up as
// an SSRC change, a gap, or a new payload session.
type TrackStats struct {
	// TrackIDs and Codecs list each remote track of this kind, in order.
	TrackIDs []string
	Codecs   []string
	// Packets and Bytes (RTP payload) received.
	Packets, Bytes int
	// FirstAt is when the first packet arrived.
	FirstAt time.Time
	// FirstKeyframe is set when the first packet began a VP8 keyframe
	// (video only).
	FirstKeyframe bool
	// Keyframes counts keyframe starts received (video only).
	Keyframes int
	// SSRCs lists every SSRC seen, in order of first appearance;
	// SSRCChanges counts packets whose SSRC differs from the previous one's.
	SSRCs       []uint32
	SSRCChanges int
	// Seq is RTP sequence-number continuity across the whole kind.
	Seq SeqStats
	// TimestampRegressions counts in-order packets whose RTP timestamp
	// went backwards (mod 2^32).
	TimestampRegressions int
	// Intact counts payloads whose trailer and checksum verified; Corrupt
	// counts the rest; VP8Errors counts video payloads ParseVP8 rejected.
	Intact, Corrupt, VP8Errors int
	// Sessions counts publisher track sessions seen (a restarted publisher
	// makes a new one). CounterGaps counts counter numbers skipped within a
	// session, after the session's first packet; LastCounter is the last
	// in-order counter.
	Sessions    int
	CounterGaps int
	LastCounter uint32
	// SessionKeyframeStarts counts sessions whose first packet received
	// began a VP8 keyframe: after a source switch, a decoder can only
	// resume at a keyframe (video only).
	SessionKeyframeStarts int
	// First describes the first few packets received, for diagnosis.
	First []PacketInfo
	// MaxDelay and MeanDelay are from the publisher's send time to arrival
	// (one clock, same host).
	MaxDelay, MeanDelay time.Duration
}

// firstPackets is how many packets TrackStats.First keeps.
const firstPackets = 8

// PacketInfo describes one received packet.
type PacketInfo struct {
	At              time.Time
	SSRC            uint32
	Seq             uint16
	Timestamp       uint32
	Marker          bool
	Counter         uint32 // from the payload trailer, 0 if corrupt
	Start, Keyframe bool   // VP8 only
}

// Stats is a snapshot of what a Viewer received.
type Stats struct {
	Video, Audio TrackStats
}

// Kind returns the stats for one kind.
func (s Stats) Kind(k webrtc.RTPCodecType) TrackStats {
	if k == webrtc.RTPCodecTypeVideo {
		return s.Video
	}
	return s.Audio
}

// Viewer is a WHEP client that receives audio and video and checks them.
type Viewer struct {
	*session

	mu       sync.Mutex
	video    trackState
	audio    trackState
	wg       sync.WaitGroup
	closedMu sync.Mutex // held by OnTrack while adding to wg
	closed   bool
}

type trackState struct {
	stats      TrackStats
	seq        SeqTracker
	lastSSRC   uint32
	lastTS     uint32
	session    uint32
	haveMarker bool
	delaySum   time.Duration
	delayN     int
}

// ViewWhenPublished is View, retried every 50 ms while the room has
// nothing to watch yet (404), until ctx ends.
func ViewWhenPublished(ctx context.Context, baseURL, room string, opts ViewOptions) (*Viewer, error) {
	for {
		v, err := View(ctx, baseURL, room, opts)
		var se *StatusError
		if err == nil || !errors.As(err, &se) || se.Code != http.StatusNotFound {
			return v, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// View connects a viewer to POST {baseURL}/whep/{room} with a recvonly
// audio and video offer. It returns when the PeerConnection is connected.
func View(ctx context.Context, baseURL, room string, opts ViewOptions) (*Viewer, error) {
	var q url.Values
	if opts.Stream != "" {
		q = url.Values{"stream": {opts.Stream}}
	}
	ep, err := endpoint(baseURL, "whep", room, q)
	if err != nil {
		return nil, err
	}
	s, err := newSession(opts.HTTPClient, opts.Token)
	if err != nil {
		return nil, err
	}
	v := &Viewer{session: s}
	s.pc.OnTrack(v.onTrack)
	for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio} {
		if _, err := s.pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			_ = v.end(false)
			return nil, fmt.Errorf("testclient: add %s transceiver: %w", k, err)
		}
	}
	if err := s.negotiate(ctx, ep); err != nil {
		_ = v.end(true)
		return nil, fmt.Errorf("testclient: view room %q: %w", room, err)
	}
	return v, nil
}

func (v *Viewer) onTrack(t *webrtc.TrackRemote, r *webrtc.RTPReceiver) {
	v.closedMu.Lock()
	defer v.closedMu.Unlock()
	if v.closed {
		return
	}
	v.mu.Lock()
	st := v.state(t.Kind())
	st.stats.TrackIDs = append(st.stats.TrackIDs, t.ID())
	st.stats.Codecs = append(st.stats.Codecs, t.Codec().MimeType)
	v.mu.Unlock()
	v.wg.Add(2)
	go v.readRTP(t)
	go v.drainRTCP(r)
}

func (v *Viewer) state(k webrtc.RTPCodecType) *trackState {
	if k == webrtc.RTPCodecTypeVideo {
		return &v.video
	}
	return &v.audio
}

// readRTP records every packet of t until the PeerConnection closes.
func (v *Viewer) readRTP(t *webrtc.TrackRemote) {
	defer v.wg.Done()
	kind := t.Kind()
	buf := make([]byte, 1500)
	var pkt rtp.Packet
	for {
		n, _, err := t.Read(buf)
		if err != nil {
			return
		}
		now := time.Now()
		if err := pkt.Unmarshal(buf[:n]); err != nil {
			continue
		}
		v.mu.Lock()
		v.state(kind).record(kind, &pkt, now)
		v.mu.Unlock()
	}
}

// drainRTCP reads the receiver's RTCP so its interceptors see sender
// reports, until the PeerConnection closes.
func (v *Viewer) drainRTCP(r *webrtc.RTPReceiver) {
	defer v.wg.Done()
	for {
		if _, _, err := r.ReadRTCP(); err != nil {
			return
		}
	}
}

func (st *trackState) record(kind webrtc.RTPCodecType, pkt *rtp.Packet, now time.Time) {
	s := &st.stats
	first := s.Packets == 0
	s.Packets++
	s.Bytes += len(pkt.Payload)
	if first {
		s.FirstAt = now
	}

	if first || pkt.SSRC != st.lastSSRC {
		if !first {
			s.SSRCChanges++
		}
		known := false
		for _, x := range s.SSRCs {
			known = known || x == pkt.SSRC
		}
		if !known {
			s.SSRCs = append(s.SSRCs, pkt.SSRC)
		}
		st.lastSSRC = pkt.SSRC
	}

	inOrder := st.seq.Push(pkt.SequenceNumber)
	s.Seq = st.seq.Stats()
	if inOrder {
		if !first && int32(pkt.Timestamp-st.lastTS) < 0 {
			s.TimestampRegressions++
		}
		st.lastTS = pkt.Timestamp
	}

	var info VP8Info
	keyframe := false
	if kind == webrtc.RTPCodecTypeVideo {
		var err error
		info, err = ParseVP8(pkt.Payload)
		switch {
		case err != nil:
			s.VP8Errors++
		case info.Keyframe:
			keyframe = true
			s.Keyframes++
			if first {
				s.FirstKeyframe = true
			}
		}
	}

	m, err := DecodeTrailer(pkt.Payload)
	if len(s.First) < firstPackets {
		s.First = append(s.First, PacketInfo{
			At: now, SSRC: pkt.SSRC, Seq: pkt.SequenceNumber, Timestamp: pkt.Timestamp, Marker: pkt.Marker,
			Counter: m.Counter, Start: info.Start, Keyframe: info.Keyframe,
		})
	}
	if err != nil {
		s.Corrupt++
		return
	}
	s.Intact++
	if d := now.Sub(m.Sent); d > s.MaxDelay {
		s.MaxDelay = d
	}
	st.delaySum += now.Sub(m.Sent)
	st.delayN++
	s.MeanDelay = st.delaySum / time.Duration(st.delayN)

	switch {
	case !st.haveMarker || m.Session != st.session:
		s.Sessions++
		if keyframe {
			s.SessionKeyframeStarts++
		}
		st.session = m.Session
		st.haveMarker = true
		s.LastCounter = m.Counter
	case inOrder && m.Counter > s.LastCounter:
		s.CounterGaps += int(m.Counter - s.LastCounter - 1)
		s.LastCounter = m.Counter
	}
}

// Stats returns a snapshot of what arrived so far.
func (v *Viewer) Stats() Stats {
	v.mu.Lock()
	defer v.mu.Unlock()
	return Stats{Video: v.video.stats.clone(), Audio: v.audio.stats.clone()}
}

func (s TrackStats) clone() TrackStats {
	s.TrackIDs = append([]string(nil), s.TrackIDs...)
	s.Codecs = append([]string(nil), s.Codecs...)
	s.SSRCs = append([]uint32(nil), s.SSRCs...)
	s.First = append([]PacketInfo(nil), s.First...)
	return s
}

// WaitPackets waits until at least n packets of kind have arrived.
func (v *Viewer) WaitPackets(ctx context.Context, kind webrtc.RTPCodecType, n int) error {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		got := v.Stats().Kind(kind).Packets
		if got >= n {
			return nil
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return fmt.Errorf("testclient: wait for %d %s packets (have %d): %w", n, kind, got, ctx.Err())
		}
	}
}

// Close deletes the WHEP resource and closes the PeerConnection.
func (v *Viewer) Close() error { return v.end(true) }

// Vanish closes the PeerConnection with its sockets cut and sends no
// DELETE, like a viewer whose network went away.
func (v *Viewer) Vanish() error { return v.end(false) }

func (v *Viewer) end(goodbye bool) error {
	v.closedMu.Lock()
	v.closed = true
	v.closedMu.Unlock()
	err := v.session.close(goodbye)
	v.wg.Wait()
	return err
}
