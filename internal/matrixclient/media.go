package matrixclient

import (
	"context"
	"fmt"
	"sort"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/focus-sfu/focus/internal/testclient"
)

// Payload types of the client's own media engine (testclient.NewAPI).
const (
	ptVP8  = 96
	ptOpus = 111
)

// Size of the synthetic video, as testclient's keyframes announce it.
const (
	videoWidth  = 640
	videoHeight = 360
)

// localTrack is one track the client sends.
type localTrack struct {
	ref     TrackRef
	kind    webrtc.RTPCodecType
	purpose Purpose
	track   *webrtc.TrackLocalStaticRTP
	sender  *webrtc.RTPSender
	mid     string

	sending        atomic.Bool
	keyframeWanted atomic.Bool
	packets        atomic.Int64
	keyframes      atomic.Int64
	plis           atomic.Int64
}

// addLocalTrack adds a track and its transceiver. presetMid gives the
// transceiver a MID of the client's own choosing before any offer (see
// negotiator).
func (cl *call) addLocalTrack(kind webrtc.RTPCodecType, purpose Purpose, streamID, trackID string, dir webrtc.RTPTransceiverDirection, presetMid bool) (*localTrack, error) {
	codec := webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}
	if kind == webrtc.RTPCodecTypeAudio {
		codec = webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}
	}
	tr, err := webrtc.NewTrackLocalStaticRTP(codec, trackID, streamID)
	if err != nil {
		return nil, fmt.Errorf("matrixclient: local %s track: %w", kind, err)
	}
	tc, err := cl.pc.AddTransceiverFromTrack(tr, webrtc.RTPTransceiverInit{Direction: dir})
	if err != nil {
		return nil, fmt.Errorf("matrixclient: add %s track: %w", kind, err)
	}
	t := &localTrack{
		ref: TrackRef{StreamID: streamID, TrackID: trackID}, kind: kind, purpose: purpose,
		track: tr, sender: tc.Sender(),
	}
	if presetMid {
		cl.c.mu.Lock()
		cl.nextLocalMid++
		t.mid = fmt.Sprintf("c%d", cl.nextLocalMid)
		cl.c.mu.Unlock()
		if err := tc.SetMid(t.mid); err != nil {
			return nil, fmt.Errorf("matrixclient: set MID of %s track: %w", kind, err)
		}
	}
	cl.c.mu.Lock()
	cl.local = append(cl.local, t)
	cl.c.mu.Unlock()
	cl.spawn(func() { cl.readRTCP(t) })
	return t, nil
}

// readRTCP drains a sender's RTCP and turns PLI and FIR into a keyframe
// request, until the PeerConnection closes.
func (cl *call) readRTCP(t *localTrack) {
	for {
		pkts, _, err := t.sender.ReadRTCP()
		if err != nil {
			return
		}
		for _, p := range pkts {
			switch p.(type) {
			case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
				t.plis.Add(1)
				t.keyframeWanted.Store(true)
			}
		}
	}
}

// localMetadata describes the tracks the client sends.
func (cl *call) localMetadata() Metadata {
	c := cl.c
	c.mu.Lock()
	defer c.mu.Unlock()
	m := make(Metadata)
	for _, t := range cl.local {
		s, ok := m[t.ref.StreamID]
		if !ok {
			s = StreamMeta{UserID: c.user.UserID, DeviceID: c.user.DeviceID, Purpose: t.purpose, Tracks: map[string]TrackMeta{}}
		}
		tm := TrackMeta{Kind: t.kind.String()}
		if t.kind == webrtc.RTPCodecTypeVideo {
			tm.Width, tm.Height = videoWidth, videoHeight
		}
		s.Tracks[t.ref.TrackID] = tm
		m[t.ref.StreamID] = s
	}
	return m
}

// startSending starts t's media, once.
func (cl *call) startSending(t *localTrack) {
	if t.sending.Swap(true) {
		return
	}
	if t.kind == webrtc.RTPCodecTypeVideo {
		cl.spawn(func() { cl.sendVideo(t) })
	} else {
		cl.spawn(func() { cl.sendAudio(t) })
	}
}

// sendVideo sends the synthetic VP8 stream on t.
func (cl *call) sendVideo(t *localTrack) {
	o := cl.c.opts.Media
	pacing := testclient.VideoPacing{PPS: o.VideoPPS, FPS: o.FPS, PacketSize: o.VideoPacketSize, KeyframeInterval: o.KeyframeInterval}
	testclient.SendVP8(cl.ended, pacing, &t.keyframeWanted, func(time.Time, uint32, bool) { t.keyframes.Add(1) }, func(pkt *rtp.Packet) {
		_ = t.track.WriteRTP(pkt)
		t.packets.Add(1)
	})
}

// sendAudio sends the synthetic Opus stream on t.
func (cl *call) sendAudio(t *localTrack) {
	testclient.SendOpus(cl.ended, cl.c.opts.Media.AudioPacketSize, func(pkt *rtp.Packet) {
		_ = t.track.WriteRTP(pkt)
		t.packets.Add(1)
	})
}

// LocalTrack describes a track the client sends.
type LocalTrack struct {
	TrackRef
	Kind    webrtc.RTPCodecType
	Purpose Purpose
	// Mid is the transceiver's MID, once negotiated.
	Mid string
	// Packets and Keyframes sent; PLIs counts PLI and FIR received.
	Packets, Keyframes, PLIs int64
}

// LocalTracks lists the tracks the client sends in the current call.
func (c *Client) LocalTracks() []LocalTrack {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur == nil {
		return nil
	}
	out := make([]LocalTrack, 0, len(c.cur.local))
	for _, t := range c.cur.local {
		mid := t.mid
		if mid == "" {
			if tc := transceiverOf(c.cur.pc, t.sender); tc != nil {
				mid = tc.Mid()
			}
		}
		out = append(out, LocalTrack{
			TrackRef: t.ref, Kind: t.kind, Purpose: t.purpose, Mid: mid,
			Packets: t.packets.Load(), Keyframes: t.keyframes.Load(), PLIs: t.plis.Load(),
		})
	}
	return out
}

func transceiverOf(pc *webrtc.PeerConnection, s *webrtc.RTPSender) *webrtc.RTPTransceiver {
	for _, tc := range pc.GetTransceivers() {
		if tc.Sender() == s {
			return tc
		}
	}
	return nil
}

// remoteTrack is one track the client receives.
type remoteTrack struct {
	ref   TrackRef
	kind  webrtc.RTPCodecType
	mid   string
	codec string
	rec   *testclient.TrackRecorder // guarded by Client.mu
	// starts counts OnTrack events for this ref: more than one means the
	// track was replaced (a new SSRC after resubscribing, say).
	starts int
	last   time.Time
}

func (cl *call) onTrack(t *webrtc.TrackRemote, r *webrtc.RTPReceiver) {
	c := cl.c
	ref := TrackRef{StreamID: t.StreamID(), TrackID: t.ID()}
	mid := ""
	for _, tc := range cl.pc.GetTransceivers() {
		if tc.Receiver() == r {
			mid = tc.Mid()
		}
	}
	c.mu.Lock()
	rt := cl.remote[ref]
	if rt == nil {
		rt = &remoteTrack{ref: ref}
		cl.remote[ref] = rt
	}
	rt.kind, rt.mid, rt.codec = t.Kind(), mid, t.Codec().MimeType
	rt.rec = testclient.NewTrackRecorder(t.Kind())
	rt.starts++
	rec := rt.rec
	c.mu.Unlock()
	c.log.Debug().Str("track", ref.String()).Str("mid", mid).Str("kind", t.Kind().String()).Msg("remote track")
	cl.spawn(func() { cl.readRTP(t, rt, rec) })
	cl.spawn(func() { cl.drainRTCP(r) })
}

func (cl *call) readRTP(t *webrtc.TrackRemote, rt *remoteTrack, rec *testclient.TrackRecorder) {
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
		cl.c.mu.Lock()
		rec.Record(&pkt, now)
		rt.last = now
		cl.c.mu.Unlock()
	}
}

func (cl *call) drainRTCP(r *webrtc.RTPReceiver) {
	for {
		if _, _, err := r.ReadRTCP(); err != nil {
			return
		}
	}
}

// RemoteTrack is what the client received of one track.
type RemoteTrack struct {
	TrackRef
	Kind  webrtc.RTPCodecType
	Mid   string
	Codec string
	// Starts counts the times the track began (OnTrack); Stats are of the
	// latest.
	Starts int
	// Last is when the last packet arrived.
	Last  time.Time
	Stats testclient.TrackStats
}

// Received lists the tracks received in the current call, sorted.
func (c *Client) Received() []RemoteTrack {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur == nil {
		return nil
	}
	out := make([]RemoteTrack, 0, len(c.cur.remote))
	for _, rt := range c.cur.remote {
		out = append(out, rt.snapshot())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}

// ReceivedTrack returns what arrived of one track.
func (c *Client) ReceivedTrack(ref TrackRef) (RemoteTrack, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur == nil {
		return RemoteTrack{}, false
	}
	rt, ok := c.cur.remote[ref]
	if !ok {
		return RemoteTrack{}, false
	}
	return rt.snapshot(), true
}

// snapshot copies rt; the caller holds Client.mu.
func (rt *remoteTrack) snapshot() RemoteTrack {
	s := rt.rec.Stats()
	s.TrackIDs = []string{rt.ref.TrackID}
	s.Codecs = []string{rt.codec}
	return RemoteTrack{TrackRef: rt.ref, Kind: rt.kind, Mid: rt.mid, Codec: rt.codec, Starts: rt.starts, Last: rt.last, Stats: s}
}

// WaitPackets waits until at least n packets of ref arrived.
func (c *Client) WaitPackets(ctx context.Context, ref TrackRef, n int) error {
	have := 0
	err := waitFor(ctx, fmt.Sprintf("%d packets of %s", n, ref), func() bool {
		rt, ok := c.ReceivedTrack(ref)
		have = rt.Stats.Packets
		return ok && have >= n
	})
	if err != nil {
		return fmt.Errorf("%w (have %d)", err, have)
	}
	return nil
}
