package e2e

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/livekit/protocol/livekit"
	protoLogger "github.com/livekit/protocol/logger"
	"github.com/livekit/protocol/logger/zaputil"
	lksdk "github.com/livekit/server-sdk-go/v2"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"go.uber.org/zap/zapcore"

	"github.com/focus-sfu/focus/internal/testclient"
)

// lkVideo says what video a Go client publishes.
type lkVideo int

const (
	lkNoVideo lkVideo = iota
	lkVideoSingle
	lkVideoSimulcast // three layers, q h f, as Element Call publishes
)

// lkPublish says what a Go client publishes when it joins.
type lkPublish struct {
	Audio bool
	Video lkVideo
}

// lkLayer is one RTP stream a client sends: audio, a single video stream,
// or one simulcast layer. Its payloads carry session, so a receiver can
// tell the layers apart after the SFU has rewritten SSRCs.
type lkLayer struct {
	rid      string
	quality  livekit.VideoQuality
	w, h     uint32
	interval time.Duration
	size     int
	session  uint32
	track    *lksdk.LocalTrack
	keyframe atomic.Bool // asked for by PLI or FIR
	sent     atomic.Int64
	plis     atomic.Int64
}

// lkSender writes synthetic media to one published track.
type lkSender struct {
	kind   webrtc.RTPCodecType
	layers []*lkLayer
	pub    *lksdk.LocalTrackPublication
	muted  atomic.Bool // nothing is sent while set
}

func (s *lkSender) layer(rid string) *lkLayer {
	for _, l := range s.layers {
		if l.rid == rid {
			return l
		}
	}
	return nil
}

// lkRecv is what one Go client received of one remote track.
type lkRecv struct {
	from string // the publisher's identity
	sid  string
	kind webrtc.RTPCodecType
	rec  *testclient.TrackRecorder
	// starts counts OnTrackSubscribed for this track sid.
	starts int
	// bySession counts packets by the publisher's payload session, that
	// is by simulcast layer; lastSession is the latest packet's.
	bySession   map[uint32]int
	lastSession uint32
	// keyAfterGap counts, over pauses of lkGap or more, whether the first
	// video packet after the pause began a keyframe.
	keyAfterGap, noKeyAfterGap int
	lastAt                     time.Time
}

// lkGap is a pause in a track long enough to count as the track having
// stopped (muted, disabled) rather than jitter.
const lkGap = 500 * time.Millisecond

// lkPeer is one Go SDK client in a room.
type lkPeer struct {
	name string
	room *lksdk.Room
	log  *lineRing

	senders map[webrtc.RTPCodecType]*lkSender
	stop    chan struct{}
	wg      sync.WaitGroup

	mu          sync.Mutex
	recv        map[string]*lkRecv // by track sid
	events      []string
	gone        map[string]bool // identities seen leaving
	reconnected int
}

// join connects a Go client as identity to room, with a token minted with
// the test's key, and publishes what pub says.
func (e *lkEnv) join(ctx context.Context, t *testing.T, identity, room string, pub lkPublish) *lkPeer {
	t.Helper()
	return e.joinWithToken(ctx, t, identity, e.wsURL, lkToken(t, identity, room, time.Hour), pub)
}

// joinWithToken connects a Go client to url with token. It is
// disconnected at the end of the test, and its SDK log and events are
// printed if the test failed.
func (e *lkEnv) joinWithToken(ctx context.Context, t *testing.T, name, url, token string, pub lkPublish) *lkPeer {
	t.Helper()
	p := &lkPeer{
		name: name, log: newLineRing(200),
		senders: map[webrtc.RTPCodecType]*lkSender{},
		stop:    make(chan struct{}),
		recv:    map[string]*lkRecv{},
		gone:    map[string]bool{},
	}
	cb := lksdk.NewRoomCallback()
	cb.OnTrackSubscribed = p.onTrack
	cb.OnTrackUnsubscribed = func(_ *webrtc.TrackRemote, pub *lksdk.RemoteTrackPublication, rp *lksdk.RemoteParticipant) {
		p.event("unsubscribed %s %s %s", rp.Identity(), pub.Kind(), pub.SID())
	}
	cb.OnTrackMuted = func(pub lksdk.TrackPublication, rp lksdk.Participant) {
		p.event("muted %s %s", rp.Identity(), pub.SID())
	}
	cb.OnTrackUnmuted = func(pub lksdk.TrackPublication, rp lksdk.Participant) {
		p.event("unmuted %s %s", rp.Identity(), pub.SID())
	}
	cb.OnParticipantConnected = func(rp *lksdk.RemoteParticipant) { p.event("joined %s", rp.Identity()) }
	cb.OnParticipantDisconnected = func(rp *lksdk.RemoteParticipant) {
		p.mu.Lock()
		p.gone[rp.Identity()] = true
		p.mu.Unlock()
		p.event("left %s", rp.Identity())
	}
	cb.OnReconnecting = func() { p.event("reconnecting") }
	cb.OnReconnected = func() {
		p.mu.Lock()
		p.reconnected++
		p.mu.Unlock()
		p.event("reconnected")
	}
	cb.OnDisconnectedWithReason = func(r lksdk.DisconnectionReason) { p.event("disconnected: %s", r) }

	lkSDKLogger.Do(func() {
		// The SDK gives pion its package-wide logger, not a room's; make
		// that one a quiet zap logger too (see lineRing.logger).
		lksdk.SetLogger(lkZapLogger(nil))
	})
	room := lksdk.NewRoom(cb)
	jctx, cancel := context.WithTimeout(ctx, lkWait)
	defer cancel()
	err := room.JoinWithContextAndToken(jctx, url, token,
		lksdk.WithLogger(p.log.logger()),
		lksdk.WithConnectTimeout(lkWait),
		lksdk.WithDisableRegionDiscovery())
	if err != nil {
		t.Fatalf("%s: join %s: %v\nSDK log:\n%s", name, url, err, p.log)
	}
	p.room = room
	t.Cleanup(func() {
		p.leave()
		if t.Failed() {
			p.mu.Lock()
			t.Logf("%s: events:\n  %s", name, strings.Join(p.events, "\n  "))
			p.mu.Unlock()
			t.Logf("%s: SDK log (tail):\n%s", name, p.log)
		}
	})
	p.event("joined as %s (%s)", room.LocalParticipant.Identity(), room.LocalParticipant.SID())
	if pub.Audio {
		p.publishAudio(t)
	}
	if pub.Video != lkNoVideo {
		p.publishVideo(t, pub.Video == lkVideoSimulcast)
	}
	return p
}

func (p *lkPeer) event(format string, args ...any) {
	line := time.Now().Format("15:04:05.000 ") + fmt.Sprintf(format, args...)
	p.mu.Lock()
	p.events = append(p.events, line)
	p.mu.Unlock()
}

// leave disconnects once and waits for the senders to stop.
func (p *lkPeer) leave() {
	select {
	case <-p.stop:
		return
	default:
	}
	close(p.stop)
	// Disconnecting closes the tracks, which ends their readers.
	p.room.Disconnect()
	p.wg.Wait()
}

func (p *lkPeer) publishAudio(t *testing.T) {
	t.Helper()
	l := &lkLayer{interval: 20 * time.Millisecond, size: 120, session: rand.Uint32()}
	track, err := lksdk.NewLocalTrack(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2})
	if err != nil {
		t.Fatal(err)
	}
	l.track = track
	pub, err := p.room.LocalParticipant.PublishTrack(track, &lksdk.TrackPublicationOptions{Name: "mic", Source: livekit.TrackSource_MICROPHONE})
	if err != nil {
		t.Fatalf("%s: publish audio: %v", p.name, err)
	}
	s := &lkSender{kind: webrtc.RTPCodecTypeAudio, layers: []*lkLayer{l}, pub: pub}
	p.senders[s.kind] = s
	p.start(s, l)
	p.event("published audio %s", pub.SID())
}

func (p *lkPeer) publishVideo(t *testing.T, simulcast bool) {
	t.Helper()
	vp8 := webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}
	s := &lkSender{kind: webrtc.RTPCodecTypeVideo}
	if simulcast {
		s.layers = []*lkLayer{
			{rid: "q", quality: livekit.VideoQuality_LOW, w: 320, h: 180, interval: time.Second / 15, size: 300},
			{rid: "h", quality: livekit.VideoQuality_MEDIUM, w: 640, h: 360, interval: time.Second / 30, size: 600},
			{rid: "f", quality: livekit.VideoQuality_HIGH, w: 1280, h: 720, interval: time.Second / 30, size: 1000},
		}
	} else {
		s.layers = []*lkLayer{{w: 640, h: 360, interval: time.Second / 30, size: 800}}
	}
	var tracks []*lksdk.LocalTrack
	for _, l := range s.layers {
		l.session = rand.Uint32()
		opts := []lksdk.LocalTrackOptions{lksdk.WithRTCPHandler(func(pkt rtcp.Packet) {
			switch pkt.(type) {
			case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
				l.plis.Add(1)
				l.keyframe.Store(true)
			}
		})}
		if simulcast {
			opts = append(opts, lksdk.WithSimulcast("camera", &livekit.VideoLayer{Quality: l.quality, Width: l.w, Height: l.h}))
		}
		track, err := lksdk.NewLocalTrack(vp8, opts...)
		if err != nil {
			t.Fatal(err)
		}
		l.track = track
		tracks = append(tracks, track)
	}
	opts := &lksdk.TrackPublicationOptions{Name: "camera", Source: livekit.TrackSource_CAMERA, VideoWidth: int(s.layers[len(s.layers)-1].w), VideoHeight: int(s.layers[len(s.layers)-1].h)}
	var err error
	if simulcast {
		s.pub, err = p.room.LocalParticipant.PublishSimulcastTrack(tracks, opts)
	} else {
		s.pub, err = p.room.LocalParticipant.PublishTrack(tracks[0], opts)
	}
	if err != nil {
		t.Fatalf("%s: publish video: %v", p.name, err)
	}
	p.senders[s.kind] = s
	for _, l := range s.layers {
		p.start(s, l)
	}
	p.event("published video %s (simulcast %v)", s.pub.SID(), simulcast)
}

// lkKeyframeInterval is how often a video layer sends a keyframe unasked.
const lkKeyframeInterval = 2 * time.Second

// start writes one layer's packets until the peer leaves: video one
// packet a frame, audio 20 ms Opus packets. While the sender is muted
// nothing goes out and sequence numbers and counters stand still, as with
// a real encoder that stops; RTP time goes on.
func (p *lkPeer) start(s *lkSender, l *lkLayer) {
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		video := s.kind == webrtc.RTPCodecTypeVideo
		clock := uint32(48000)
		if video {
			clock = 90000
		}
		step := uint32(l.interval * time.Duration(clock) / time.Second)
		pkt := &rtp.Packet{Header: rtp.Header{
			Version: 2, SequenceNumber: uint16(rand.Uint32()), Timestamp: rand.Uint32(), Marker: true,
		}}
		var counter uint32
		var buf []byte
		var lastKey time.Time
		tick := time.NewTicker(l.interval)
		defer tick.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-tick.C:
			}
			pkt.Timestamp += step
			if s.muted.Load() {
				continue
			}
			now := time.Now()
			m := testclient.Marker{Session: l.session, Counter: counter, Sent: now}
			if video {
				key := l.keyframe.Swap(false) || now.Sub(lastKey) >= lkKeyframeInterval
				if key {
					lastKey = now
				}
				buf = testclient.AppendVP8(buf[:0], true, key, l.size, m)
			} else {
				buf = testclient.AppendOpus(buf[:0], l.size, m)
			}
			pkt.Payload = buf
			// A write before the track is bound, or after its transport
			// closed, is lost like a packet on the wire; the receivers'
			// counts show it.
			_ = l.track.WriteRTP(pkt, nil)
			l.sent.Add(1)
			counter++
			pkt.SequenceNumber++
			if !video {
				pkt.Marker = false
			}
		}
	}()
}

// mute mutes or unmutes a published track: the SDK tells the focus, and
// the sender stops or resumes.
func (p *lkPeer) mute(kind webrtc.RTPCodecType, muted bool) {
	s := p.senders[kind]
	s.muted.Store(muted)
	s.pub.SetMuted(muted)
	p.event("set %s muted=%v", kind, muted)
}

// onTrack records every packet of a subscribed remote track.
func (p *lkPeer) onTrack(track *webrtc.TrackRemote, pub *lksdk.RemoteTrackPublication, rp *lksdk.RemoteParticipant) {
	sid := pub.SID()
	p.mu.Lock()
	r := p.recv[sid]
	if r == nil {
		r = &lkRecv{from: rp.Identity(), sid: sid, kind: track.Kind(), rec: testclient.NewTrackRecorder(track.Kind()), bySession: map[uint32]int{}}
		p.recv[sid] = r
	}
	r.starts++
	p.mu.Unlock()
	p.event("subscribed %s %s %s (%s)", rp.Identity(), track.Kind(), sid, track.Codec().MimeType)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			pkt, _, err := track.ReadRTP()
			if err != nil {
				return
			}
			now := time.Now()
			p.mu.Lock()
			gap := !r.lastAt.IsZero() && now.Sub(r.lastAt) >= lkGap
			r.lastAt = now
			r.rec.Record(pkt, now)
			if m, err := testclient.DecodeTrailer(pkt.Payload); err == nil {
				r.bySession[m.Session]++
				r.lastSession = m.Session
			}
			if gap && r.kind == webrtc.RTPCodecTypeVideo {
				if info, err := testclient.ParseVP8(pkt.Payload); err == nil && info.Keyframe {
					r.keyAfterGap++
				} else {
					r.noKeyAfterGap++
				}
			}
			p.mu.Unlock()
		}
	}()
}

// lkSnapshot is what p received of one remote track so far.
type lkSnapshot struct {
	testclient.TrackStats
	starts                     int
	bySession                  map[uint32]int
	lastSession                uint32
	keyAfterGap, noKeyAfterGap int
}

// received returns what p received of other's track of kind, and whether
// it has such a track.
func (p *lkPeer) received(other *lkPeer, kind webrtc.RTPCodecType) (lkSnapshot, bool) {
	sid := other.senders[kind].pub.SID()
	p.mu.Lock()
	defer p.mu.Unlock()
	r, ok := p.recv[sid]
	if !ok {
		return lkSnapshot{}, false
	}
	return lkSnapshot{
		TrackStats: r.rec.Stats(), starts: r.starts, bySession: maps.Clone(r.bySession),
		lastSession: r.lastSession, keyAfterGap: r.keyAfterGap, noKeyAfterGap: r.noKeyAfterGap,
	}, true
}

// packets is how many packets p has of other's track of kind.
func (p *lkPeer) packets(other *lkPeer, kind webrtc.RTPCodecType) int {
	r, _ := p.received(other, kind)
	return r.Packets
}

// remotePub returns p's view of other's publication of kind.
func (p *lkPeer) remotePub(other *lkPeer, kind webrtc.RTPCodecType) *lksdk.RemoteTrackPublication {
	rp := p.room.GetParticipantByIdentity(other.name)
	if rp == nil {
		return nil
	}
	sid := other.senders[kind].pub.SID()
	for _, tp := range rp.TrackPublications() {
		if r, ok := tp.(*lksdk.RemoteTrackPublication); ok && tp.SID() == sid {
			return r
		}
	}
	return nil
}

// lkSDKLogger sets the SDK's package-wide logger once.
var lkSDKLogger sync.Once

// lineRing keeps the last lines of an SDK client's log.
type lineRing struct {
	mu    sync.Mutex
	max   int
	lines []string
}

func newLineRing(max int) *lineRing { return &lineRing{max: max} }

func (r *lineRing) add(line string) {
	// SDPs fill whole screens; their first lines say which it was.
	const maxLine = 400
	if len(line) > maxLine {
		line = line[:maxLine] + "…"
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.lines) == r.max {
		copy(r.lines, r.lines[1:])
		r.lines = r.lines[:r.max-1]
	}
	r.lines = append(r.lines, time.Now().Format("15:04:05.000 ")+line)
}

func (r *lineRing) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return "  " + strings.Join(r.lines, "\n  ")
}

// logger is an SDK logger that keeps the SDK's messages, from debug
// level up, in the ring.
func (r *lineRing) logger() protoLogger.Logger { return lkZapLogger(r) }

// lkZapLogger is an SDK logger that writes nothing to the console and,
// if tap is not nil, every message to tap. It is a zap logger on purpose:
// with any other kind the SDK's adapter for pion formats every pion debug
// message before it looks at the level, and one of them (pion's "got new
// track: %+v") reads an RTPReceiver that pion is still writing, a data
// race under -race. For a zap logger the adapter checks the level
// ("fatal" here, which only the console uses) first.
func lkZapLogger(tap zapcore.WriteSyncer) protoLogger.Logger {
	var opts []protoLogger.ZapLoggerOption
	if tap != nil {
		opts = append(opts, protoLogger.WithTap(zaputil.NewWriteEnabler(tap, zapcore.DebugLevel)))
	}
	l, err := protoLogger.NewZapLogger(&protoLogger.Config{Level: "fatal"}, opts...)
	if err != nil {
		panic(err) // only for a Config that does not parse
	}
	return l
}

// Write takes one encoded log entry.
func (r *lineRing) Write(b []byte) (int, error) {
	r.add(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// Sync makes the ring a zapcore.WriteSyncer.
func (r *lineRing) Sync() error { return nil }
