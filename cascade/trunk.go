package cascade

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/rs/zerolog"

	"github.com/focus-sfu/focus/rtc"
)

// direction says which way a trunk carries media, seen from this focus.
type direction int

const (
	// pulling: this focus offered, receives tracks, and subscribes.
	pulling direction = iota + 1
	// exporting: this focus answered, sends tracks, and offers them.
	exporting
)

func (d direction) String() string {
	if d == pulling {
		return "pull"
	}
	return "export"
}

// trunkState is a trunk's life: connecting until its data channel
// opens, then open until it ends.
type trunkState int32

const (
	stateConnecting trunkState = iota
	stateOpen
	stateClosed
)

func (s trunkState) String() string {
	switch s {
	case stateConnecting:
		return "connecting"
	case stateOpen:
		return "open"
	}
	return "closed"
}

// dcLabel is the label of a trunk's data channel.
const dcLabel = "trunk"

// trunk is one PeerConnection between this focus and a peer focus. Its
// state is owned by its loop (run); pion callbacks and the cascade hand
// it work through q.
type trunk struct {
	c       *Cascade
	peer    string
	dir     direction
	id      string
	created time.Time
	log     zerolog.Logger

	q       *queue
	ctx     context.Context // ends when the trunk closes
	cancel  context.CancelFunc
	closing chan struct{}
	once    sync.Once
	done    chan struct{} // closed when the loop has released everything

	state     atomic.Int32 // trunkState
	lastHeard atomic.Int64 // unix nanoseconds of the last message received
	everOpen  atomic.Bool

	// pc is set before the loop starts (exporting) or by its setup
	// (pulling), and not changed after.
	pc atomic.Pointer[rtc.Peer]

	sendMu sync.Mutex
	dc     *webrtc.DataChannel // guarded by sendMu

	asm assembler // used by the data channel's message callback only

	mu       sync.Mutex
	reason   string // why the trunk closed
	how      closeKind
	released bool               // the loop is tearing down: no new media goroutines
	carried  map[string]carried // by trunk track ID
	pulls    map[string]*pull   // pulling: what each trunk track ID feeds
	rate     rates
	final    *trafficTotals // the counters at teardown
	// lastTraffic are the counters last read, for when the connection
	// has closed under the trunk.
	lastTraffic trafficTotals

	media sync.WaitGroup // media goroutines (OnTrack handlers)

	// Loop-owned state of each direction.
	pingSeq  uint64
	lastPing time.Time
	exp      *exporter
}

// carried is one layer of a track a trunk carries, for Status.
type carried struct {
	Conference string
	Track      string
	Layer      int
	Kind       string
}

func newTrunk(c *Cascade, peer string, dir direction) *trunk {
	var b [8]byte
	_, _ = rand.Read(b[:])
	id := "TK_" + hex.EncodeToString(b[:])
	ctx, cancel := context.WithCancel(context.Background())
	t := &trunk{
		c:       c,
		peer:    peer,
		dir:     dir,
		id:      id,
		created: time.Now(),
		log:     c.log.With().Str("peer", peer).Str("trunk", id).Str("direction", dir.String()).Logger(),
		q:       newQueue(),
		ctx:     ctx,
		cancel:  cancel,
		closing: make(chan struct{}),
		done:    make(chan struct{}),
		carried: make(map[string]carried),
		pulls:   make(map[string]*pull),
	}
	if dir == exporting {
		t.exp = newExporter(t)
	}
	t.lastHeard.Store(t.created.UnixNano())
	return t
}

// watch hooks the PeerConnection's state changes.
func (t *trunk) watch(pc *rtc.Peer) {
	pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		switch st {
		case webrtc.PeerConnectionStateFailed:
			t.close("ICE failed", closedBroken)
		case webrtc.PeerConnectionStateClosed:
			t.close("connection closed", closedBroken)
		}
	})
}

// attach makes dc the trunk's data channel.
func (t *trunk) attach(dc *webrtc.DataChannel) {
	t.sendMu.Lock()
	t.dc = dc
	t.sendMu.Unlock()
	dc.OnOpen(func() { t.q.push(t.opened) })
	dc.OnClose(func() { t.close("data channel closed", closedBroken) })
	dc.OnMessage(func(msg webrtc.DataChannelMessage) { t.receive(msg.Data) })
}

// closeKind says who ended a trunk.
type closeKind int

const (
	// closedBroken: the network, the peer's silence, or an error.
	closedBroken closeKind = iota
	// closedByUs: this focus chose to (idle, shutdown).
	closedByUs
	// closedByPeer: the peer said so, or replaced the trunk.
	closedByPeer
)

// close ends the trunk; the loop tears it down. The first reason is
// the one logged.
func (t *trunk) close(reason string, how closeKind) {
	t.once.Do(func() {
		t.mu.Lock()
		t.reason, t.how = reason, how
		t.mu.Unlock()
		t.cancel()
		close(t.closing)
	})
}

// closeReason returns why and how the trunk closed.
func (t *trunk) closeReason() (string, closeKind) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.reason, t.how
}

func (t *trunk) getState() trunkState { return trunkState(t.state.Load()) }

// peerConn returns the trunk's PeerConnection, or nil before the
// puller's setup made it.
func (t *trunk) peerConn() *rtc.Peer { return t.pc.Load() }

// run is the trunk's loop: setup (the puller's dial), then the queued
// work and the heartbeat until the trunk closes, then the teardown.
func (t *trunk) run(setup func() error) {
	defer close(t.done)
	defer t.teardown()
	if setup != nil {
		if err := setup(); err != nil {
			t.close(err.Error(), closedBroken)
			return
		}
	}
	tick := time.NewTicker(t.c.timing.ping / 4)
	defer tick.Stop()
	for {
		select {
		case <-t.closing:
			return
		case <-t.q.signal:
			for _, fn := range t.q.take() {
				select {
				case <-t.closing:
					return
				default:
				}
				fn()
			}
		case now := <-tick.C:
			t.heartbeat(now)
		}
	}
}

// opened runs when the data channel opens.
func (t *trunk) opened() {
	if t.getState() != stateConnecting {
		return
	}
	t.state.Store(int32(stateOpen))
	t.everOpen.Store(true)
	t.lastHeard.Store(time.Now().UnixNano())
	t.c.counters.trunksOpened.Add(1)
	t.log.Info().Dur("after", time.Since(t.created)).Msg("trunk open")
	t.ping(time.Now())
	if t.dir == pulling {
		t.c.q.push(func() { t.c.ctl.trunkOpened(t.c, t) })
	}
}

// heartbeat pings the peer and ends the trunk when it has gone quiet or
// never opened.
func (t *trunk) heartbeat(now time.Time) {
	tm := t.c.timing
	switch t.getState() {
	case stateConnecting:
		if now.Sub(t.created) > tm.connect {
			t.close(fmt.Sprintf("did not open within %v", tm.connect), closedBroken)
		}
		return
	case stateOpen:
	default:
		return
	}
	if quiet := now.Sub(time.Unix(0, t.lastHeard.Load())); quiet > tm.dead {
		t.c.counters.heartbeatFailures.Add(1)
		t.close(fmt.Sprintf("heartbeat lost: nothing heard for %v", quiet.Round(time.Millisecond)), closedBroken)
		return
	}
	if now.Sub(t.lastPing) >= tm.ping {
		t.ping(now)
	}
	t.sampleRate(now)
	if t.exp != nil {
		t.exp.tick(now)
	}
}

func (t *trunk) ping(now time.Time) {
	t.lastPing = now
	t.pingSeq++
	t.send(message{Type: msgPing, Seq: t.pingSeq})
}

// send writes m on the data channel. It may be called from any
// goroutine; the parts of one message are never interleaved with
// another's.
func (t *trunk) send(m message) {
	frames, err := encodeFrames(m)
	if err != nil {
		t.log.Warn().Err(err).Str("type", m.Type).Msg("encode trunk message")
		return
	}
	t.sendMu.Lock()
	defer t.sendMu.Unlock()
	if t.dc == nil || t.dc.ReadyState() != webrtc.DataChannelStateOpen {
		return
	}
	for _, f := range frames {
		if err := t.dc.SendText(string(f)); err != nil {
			t.log.Debug().Err(err).Str("type", m.Type).Msg("send trunk message")
			return
		}
	}
}

// sendError tells the peer that something it sent was refused; track
// and layer name the subscription it was about, if any.
func (t *trunk) sendError(code, text, track string, layer int) {
	t.send(message{Type: msgError, Code: code, Error: text, Track: track, Layer: layer})
}

// receive handles one data channel message, on pion's goroutine. Pings
// are answered at once; the rest is queued for the loop.
func (t *trunk) receive(b []byte) {
	t.lastHeard.Store(time.Now().UnixNano())
	m, err := decodeMessage(b)
	if err != nil {
		t.refuse(m, err)
		return
	}
	m, whole, err := t.asm.add(m)
	if err != nil {
		// Parts that were cut short are dropped; a message that cut
		// them short is still whole, and still handled.
		t.refuse(m, err)
	}
	if !whole {
		return
	}
	switch m.Type {
	case msgPing:
		t.send(message{Type: msgPong, Seq: m.Seq})
	case msgPong:
	case msgClose:
		t.close("the peer closed the trunk: "+m.Error, closedByPeer)
	case msgError:
		t.log.Info().Str("code", m.Code).Str("error", m.Error).Str("track", m.Track).Int("layer", m.Layer).Msg("the peer refused a message")
		if t.dir == pulling && m.Track != "" {
			id := trunkTrackID(m.Track, m.Layer)
			t.c.q.push(func() { t.c.ctl.pullRefused(t.c, t, id, m.Code) })
		}
	default:
		t.q.push(func() { t.handle(m) })
	}
}

// refuse logs a message that could not be used and tells the peer,
// unless it was itself an error.
func (t *trunk) refuse(m message, err error) {
	t.log.Info().Err(err).Str("type", m.Type).Msg("trunk message refused")
	if m.Type != msgError {
		t.sendError(messageCode(err), err.Error(), m.Track, m.Layer)
	}
}

// handle runs a message that is not part of the heartbeat on the loop.
func (t *trunk) handle(m message) {
	switch {
	case t.dir == exporting && m.Type == msgSubscribe:
		t.exp.subscribe(m.Conference, m.Track, m.Layer)
	case t.dir == exporting && m.Type == msgUnsubscribe:
		t.exp.unsubscribe(m.Track, m.Layer)
	case t.dir == exporting && m.Type == msgAnswer:
		t.exp.answer(m.SDP)
	case t.dir == pulling && m.Type == msgOffer:
		t.answerOffer(m.SDP)
	default:
		t.refuse(m, badMessage(codeUnknownType, "a %s message is not for the %s side of a trunk", m.Type, t.peerRole()))
	}
}

// peerRole names what this focus is on the trunk, for messages.
func (t *trunk) peerRole() string {
	if t.dir == pulling {
		return "pulling"
	}
	return "exporting"
}

// teardown releases the trunk once its loop ends.
func (t *trunk) teardown() {
	t.state.Store(int32(stateClosed))
	t.cancel()
	t.mu.Lock()
	t.released = true
	reason, how := t.reason, t.how
	t.mu.Unlock()
	if how == closedByUs {
		// Tell the peer, so it need not wait for the heartbeat.
		t.send(message{Type: msgClose, Error: reason})
	}
	if t.exp != nil {
		t.exp.release()
	}
	t.freezeTraffic()
	in, out := t.traffic()
	if pc := t.peerConn(); pc != nil {
		if err := pc.Close(); err != nil {
			t.log.Debug().Err(err).Msg("close peer connection")
		}
	}
	t.media.Wait()
	if t.exp != nil {
		t.exp.wait()
	}
	ev := t.log.Info()
	if how == closedBroken && t.everOpen.Load() {
		ev = t.log.Warn()
	}
	ev.Str("reason", reason).Dur("age", time.Since(t.created)).
		Uint64("bytes_in", in.bytes).Uint64("bytes_out", out.bytes).Msg("trunk closed")
	t.c.trunkEnded(t)
}

// startMedia registers a media goroutine, unless the trunk is being
// released.
func (t *trunk) startMedia() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.released {
		return false
	}
	t.media.Add(1)
	return true
}

// setCarried records (or, with kind "", forgets) a track layer the
// trunk carries as trunk track id.
func (t *trunk) setCarried(id string, c carried) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if c.Kind == "" {
		delete(t.carried, id)
		return
	}
	t.carried[id] = c
}

// waitGathered waits for ICE gathering to end, so that the description
// has every candidate (no trickle between foci), and returns it.
func waitGathered(ctx context.Context, pc *rtc.Peer, gathered <-chan struct{}) (string, error) {
	select {
	case <-gathered:
	case <-ctx.Done():
		return "", fmt.Errorf("ICE gathering did not finish: %w", ctx.Err())
	}
	d := pc.LocalDescription()
	if d == nil {
		return "", errors.New("no local description")
	}
	return d.SDP, nil
}
