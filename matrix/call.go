package matrix

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/focus-sfu/focus/focus"
	"github.com/focus-sfu/focus/metadata"
	"github.com/focus-sfu/focus/rtc"
)

// sendTimeout bounds one to-device send.
const sendTimeout = 10 * time.Second

// call is one device's call with the focus. Everything that touches its
// PeerConnection's signalling runs on the call's own goroutine (do), so
// to-device messages, data-channel messages and core events are applied
// one at a time and in order.
type call struct {
	f      *Focus
	user   id.UserID
	device id.DeviceID
	room   id.RoomID
	conf   focus.ConferenceID
	callID string
	confID string
	remote string // the client's session ID
	log    zerolog.Logger
	part   *focus.Participant
	pc     *webrtc.PeerConnection

	ops  chan func()
	stop chan struct{}
	once sync.Once

	seq atomic.Int64 // of the next to-device message; end may run elsewhere

	// Owned by the call's goroutine.
	dc          *webrtc.DataChannel
	subs        map[trackRef]*subscription
	makingOffer bool
	wantOffer   bool
	lastPong    time.Time
	demand      map[*focus.UpTrack][]bool // the layers of the client's tracks anyone needs, as last raised
	speakers    []ActiveSpeaker           // as the client was last told

	mu         sync.Mutex // guards what the core's and pion's goroutines read
	clientMeta metadata.Metadata
	published  map[*focus.UpTrack]trackRef // the client's own IDs of its tracks
	mids       map[*focus.UpTrack]string   // and their MIDs, for MID-keyed metadata
	locals     []*rtc.LocalTrack

	pubs   rtc.Publications
	tracks sync.WaitGroup // OnTrack handlers
	ended  atomic.Bool
}

type trackRef struct{ stream, track string }

type subscription struct {
	down   *focus.DownTrack
	local  *rtc.LocalTrack
	sender *webrtc.RTPSender
	paused bool // for lack of bandwidth, as the client was last told
}

func (f *Focus) newCall(user id.UserID, device id.DeviceID, room id.RoomID, inv *Invite, log zerolog.Logger) (*call, error) {
	conf := conferenceID(room, inv.ConfID)
	part, err := f.opts.SFU.Join(conf, focus.ParticipantInfo{Identity: string(user) + ":" + string(device)})
	if err != nil {
		return nil, err
	}
	peer, err := f.opts.Engine.NewPeerConnection()
	if err != nil {
		part.Leave()
		return nil, err
	}
	pc := peer.PeerConnection
	part.SetBandwidthEstimator(peer.Estimator()) // one connection carries publications and subscriptions
	c := &call{
		f:         f,
		user:      user,
		device:    device,
		room:      room,
		conf:      conf,
		callID:    inv.CallID,
		confID:    inv.ConfID,
		remote:    inv.SenderSessionID,
		log:       log.With().Str("room", string(room)).Str("participant", string(part.ID())).Logger(),
		part:      part,
		pc:        pc,
		ops:       make(chan func(), 256),
		stop:      make(chan struct{}),
		subs:      make(map[trackRef]*subscription),
		published: make(map[*focus.UpTrack]trackRef),
		mids:      make(map[*focus.UpTrack]string),
		demand:    make(map[*focus.UpTrack][]bool),
		lastPong:  time.Now(),
	}
	f.mu.Lock()
	f.calls[deviceKey{user, device}] = c
	f.byPart[part.ID()] = c
	f.wg.Add(1)
	f.mu.Unlock()
	go c.run()
	return c, nil
}

// do runs fn on the call's goroutine. It gives up when the call ends.
func (c *call) do(fn func()) {
	select {
	case c.ops <- fn:
	case <-c.stop:
	}
}

func (c *call) run() {
	defer c.f.wg.Done()
	ping := time.NewTicker(c.f.opts.PingInterval)
	defer ping.Stop()
	for {
		select {
		case <-c.stop:
			return
		case fn := <-c.ops:
			fn()
		case <-ping.C:
			c.keepAlive()
		}
	}
}

// start answers the invite.
func (c *call) start(inv *Invite) {
	c.mu.Lock()
	c.clientMeta = inv.Metadata.Clone()
	c.mu.Unlock()
	c.pc.OnTrack(c.onTrack)
	c.pc.OnDataChannel(c.onDataChannel)
	c.pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		c.log.Debug().Str("state", st.String()).Msg("connection state")
		if st == webrtc.PeerConnectionStateFailed {
			go c.end(event.CallHangupICEFailed, true)
		}
	})
	var candidates []Candidate
	var candMu sync.Mutex
	c.pc.OnICECandidate(func(cand *webrtc.ICECandidate) {
		if cand == nil {
			return
		}
		init := cand.ToJSON()
		candMu.Lock()
		candidates = append(candidates, Candidate{Candidate: init.Candidate, SDPMid: init.SDPMid, SDPMLineIndex: init.SDPMLineIndex})
		candMu.Unlock()
	})
	if err := c.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: rtc.WithoutSimulcastRTX(inv.Offer.SDP)}); err != nil {
		c.log.Warn().Err(err).Msg("offer rejected")
		c.end(ReasonInvalidOffer, true)
		return
	}
	answer, err := c.pc.CreateAnswer(nil)
	if err != nil {
		c.log.Warn().Err(err).Msg("cannot answer the offer")
		c.end(ReasonInvalidOffer, true)
		return
	}
	gathered := webrtc.GatheringCompletePromise(c.pc)
	if err := c.pc.SetLocalDescription(answer); err != nil {
		c.log.Warn().Err(err).Msg("cannot apply the answer")
		c.end(ReasonInvalidOffer, true)
		return
	}
	select {
	case <-gathered:
	case <-time.After(sendTimeout):
		c.log.Warn().Msg("ICE gathering did not finish; answering with what there is")
	case <-c.stop:
		return
	}
	c.send(&Answer{
		CallBase: c.base(),
		Answer:   SessionDescription{Type: event.CallDataTypeAnswer, SDP: c.pc.LocalDescription().SDP},
		Metadata: c.available(),
	})
	candMu.Lock()
	cands := append(append([]Candidate(nil), candidates...), Candidate{})
	candMu.Unlock()
	c.send(&Candidates{CallBase: c.base(), Candidates: cands})
	c.log.Info().Msg("call answered")
}

// base addresses a message of this call to the client.
func (c *call) base() CallBase {
	b := c.f.replyBase(&CallBase{CallID: c.callID, ConfID: c.confID, SenderSessionID: c.remote})
	b.SetSeq(int(c.seq.Add(1) - 1))
	return b
}

// send sends a to-device message of this call to the client.
func (c *call) send(msg ToDeviceContent) {
	ctx, cancel := context.WithTimeout(context.Background(), sendTimeout)
	defer cancel()
	if err := c.f.opts.Sender.SendToDevice(ctx, c.user, c.device, msg.EventType(), msg); err != nil {
		c.log.Warn().Err(err).Str("type", msg.EventType().Type).Msg("send to-device message")
	}
}

func (c *call) onCandidates(m *Candidates) {
	for _, cand := range m.Candidates {
		if cand.IsEnd() {
			continue
		}
		init := webrtc.ICECandidateInit{Candidate: cand.Candidate, SDPMid: cand.SDPMid, SDPMLineIndex: cand.SDPMLineIndex, UsernameFragment: cand.UsernameFragment}
		if err := c.pc.AddICECandidate(init); err != nil {
			c.log.Info().Err(err).Str("candidate", cand.Candidate).Msg("rejected a remote candidate")
		}
	}
}

func (c *call) onSelectAnswer(m *SelectAnswer) {
	if m.SelectedPartyID != string(c.f.opts.Sender.DeviceID()) {
		c.log.Info().Str("selected", m.SelectedPartyID).Msg("the client chose another answer; ending")
		c.end("", false)
	}
}

// onTrack publishes a track the client sends.
func (c *call) onTrack(track *webrtc.TrackRemote, recv *webrtc.RTPReceiver) {
	c.mu.Lock()
	if c.ended.Load() {
		c.mu.Unlock()
		return
	}
	c.tracks.Add(1)
	c.mu.Unlock()
	defer c.tracks.Done()
	c.pubs.Receive(track, recv, func(info focus.TrackInfo) (*focus.UpTrack, error) {
		own := trackRef{stream: track.StreamID(), track: track.ID()}
		mid := ""
		for _, t := range c.pc.GetTransceivers() {
			if t.Receiver() == recv {
				mid = t.Mid()
			}
		}
		c.mu.Lock()
		_, meta, ok := c.clientMeta.Resolve(own.stream, own.track, mid)
		c.mu.Unlock()
		if ok && meta.Purpose == metadata.PurposeScreenshare {
			info.Source = focus.SourceScreenShare
			if info.Kind == focus.KindAudio {
				info.Source = focus.SourceScreenShareAudio
			}
		}
		info.StreamID = c.announcedStream(own.stream)
		info.ID = focus.TrackID(own.track)
		up, err := c.part.Publish(info, c.pc)
		if err == nil {
			c.mu.Lock()
			c.published[up] = own
			c.mids[up] = mid
			// Under mu, so that a metadata change cannot slip between
			// reading the mute and setting it (setClientMeta).
			up.SetMuted(trackMuted(c.clientMeta, own, mid, up.Kind()))
			c.mu.Unlock()
		}
		return up, err
	}, c.log)
	c.mu.Lock()
	for up := range c.published {
		if up.Closed() {
			delete(c.published, up)
			delete(c.mids, up)
		}
	}
	c.mu.Unlock()
}

// announcedStream keeps the client's stream ID unless another participant
// of the conference announced it already.
func (c *call) announcedStream(stream string) string {
	conf := c.part.Conference()
	for _, t := range conf.Tracks() {
		if t.Owner() != c.part && t.Info().StreamID == stream {
			return stream + "~" + string(c.part.ID())[3:11]
		}
	}
	return stream
}

// available is the metadata of every stream this call may subscribe to:
// the tracks of the conference's other participants.
func (c *call) available() metadata.Metadata {
	out := metadata.Metadata{}
	for _, t := range c.part.Conference().Tracks() {
		owner := c.f.callOf(t.Owner())
		if owner == c {
			continue
		}
		info := t.Info()
		s, ok := out[info.StreamID]
		if !ok {
			if owner != nil {
				s = owner.streamMeta(t)
			} else if s, ok = remoteStreamMeta(t); !ok {
				continue
			}
		}
		if owner == nil {
			if t.Kind() == focus.KindAudio {
				s.AudioMuted = t.Muted()
			} else {
				s.VideoMuted = t.Muted()
			}
		}
		if s.Tracks == nil {
			s.Tracks = map[string]metadata.Track{}
		}
		s.Tracks[string(info.ID)] = metadata.Track{Kind: info.Kind.String()}
		out[info.StreamID] = s
	}
	return out
}

// streamMeta describes the stream t belongs to, from its publisher's
// own metadata.
func (c *call) streamMeta(t *focus.UpTrack) metadata.Stream {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := metadata.Stream{Purpose: metadata.PurposeUsermedia}
	if own, ok := c.published[t]; ok {
		if _, m, ok := c.clientMeta.Resolve(own.stream, own.track, ""); ok {
			s = m.Clone()
			s.Tracks = nil
		}
	}
	if t.Info().Source == focus.SourceScreenShare {
		s.Purpose = metadata.PurposeScreenshare
	}
	s.UserID, s.DeviceID = c.user, c.device
	return s
}

// remoteStreamMeta describes the stream of t when t's owner is a call
// member on another focus, shown here by the cascade: its identity is
// the member's "@user:server:DEVICE" (the mute state is each track's).
// Participants that are not Matrix call members are not shown.
func remoteStreamMeta(t *focus.UpTrack) (metadata.Stream, bool) {
	pi := t.Owner().Info()
	if pi.Origin == "" || pi.Role != focus.RoleMember {
		return metadata.Stream{}, false
	}
	i := strings.LastIndexByte(pi.Identity, ':')
	if i <= 0 || i == len(pi.Identity)-1 {
		return metadata.Stream{}, false
	}
	user := id.UserID(pi.Identity[:i])
	if _, _, err := user.Parse(); err != nil {
		return metadata.Stream{}, false
	}
	s := metadata.Stream{Purpose: metadata.PurposeUsermedia, UserID: user, DeviceID: id.DeviceID(pi.Identity[i+1:])}
	if t.Info().Source == focus.SourceScreenShare {
		s.Purpose = metadata.PurposeScreenshare
	}
	return s, true
}

func (f *Focus) callOf(p *focus.Participant) *call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.byPart[p.ID()]
}

// onDataChannel takes the client's signalling channel.
func (c *call) onDataChannel(dc *webrtc.DataChannel) {
	if dc.Label() != DataChannelLabel {
		c.log.Info().Str("label", dc.Label()).Msg("ignoring a data channel with another label")
		return
	}
	dc.OnOpen(func() {
		c.do(func() {
			c.dc = dc
			c.lastPong = time.Now()
			// Tracks published between the answer and now were announced
			// to no one: send the current list. The same goes for the
			// speakers and the demand for the client's tracks.
			c.sendMetadata()
			c.sendSpeakers(c.part.Conference().Speakers())
			c.resendDemand()
			if c.wantOffer {
				c.negotiate()
			}
		})
	})
	dc.OnMessage(func(msg webrtc.DataChannelMessage) {
		parsed, err := ParseDataChannel(msg.Data)
		if err != nil {
			c.log.Warn().Err(err).Msg("rejected data-channel message")
			return
		}
		c.do(func() { c.onDCMessage(parsed) })
	})
}

func (c *call) onDCMessage(msg any) {
	switch m := msg.(type) {
	case *Pong:
		c.lastPong = time.Now()
	case *Ping:
		c.sendDC(&Pong{})
	case *TrackSubscription:
		c.onTrackSubscription(m)
	case *Negotiate:
		c.onNegotiate(m)
	case *MetadataChanged:
		c.setClientMeta(m.Metadata)
	}
}

func (c *call) setClientMeta(m metadata.Metadata) {
	if m == nil {
		return
	}
	c.mu.Lock()
	c.clientMeta = m.Clone()
	c.applyMutesLocked()
	c.mu.Unlock()
	c.f.metadataChanged(c)
}

func (c *call) sendDC(msg DCContent) {
	if c.dc == nil || c.dc.ReadyState() != webrtc.DataChannelStateOpen {
		return
	}
	b, err := MarshalDataChannel(msg)
	if err != nil {
		c.log.Warn().Err(err).Msg("marshal data-channel message")
		return
	}
	if err := c.dc.Send(b); err != nil {
		c.log.Debug().Err(err).Str("type", msg.DCType()).Msg("send data-channel message")
	}
}

func (c *call) sendMetadata() {
	c.sendDC(&MetadataChanged{Metadata: c.available()})
}

// keepAlive pings the client and hangs up on one that stopped answering.
func (c *call) keepAlive() {
	if time.Since(c.lastPong) > c.f.opts.PongTimeout {
		c.log.Info().Dur("silent", time.Since(c.lastPong)).Msg("client stopped answering pings")
		c.end(ReasonKeepAliveTimeout, true)
		return
	}
	c.sendDC(&Ping{})
}

// end closes the call: its tracks and subscriptions leave the core, the
// connection closes, and the client is told when hangup is set.
func (c *call) end(reason event.CallHangupReason, hangup bool) {
	c.once.Do(func() {
		c.mu.Lock()
		c.ended.Store(true)
		c.mu.Unlock()
		close(c.stop)
		f := c.f
		f.mu.Lock()
		if f.calls[deviceKey{c.user, c.device}] == c {
			delete(f.calls, deviceKey{c.user, c.device})
		}
		delete(f.byPart, c.part.ID())
		f.mu.Unlock()
		c.part.Leave()
		if err := c.pc.Close(); err != nil {
			c.log.Debug().Err(err).Msg("close peer connection")
		}
		c.tracks.Wait()
		c.mu.Lock()
		locals := c.locals
		c.mu.Unlock()
		for _, lt := range locals {
			lt.Wait()
		}
		if hangup {
			msg := &Hangup{CallBase: c.base(), Reason: reason}
			ctx, cancel := context.WithTimeout(context.Background(), sendTimeout)
			if err := f.opts.Sender.SendToDevice(ctx, c.user, c.device, TypeHangup, msg); err != nil {
				c.log.Warn().Err(err).Msg("send hangup")
			}
			cancel()
		}
		c.log.Info().Str("reason", string(reason)).Msg("call ended")
	})
}

func randomID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	return hex.EncodeToString(b[:])
}

// unmarshalLenient reads what it can of a malformed message.
func unmarshalLenient(b []byte, v any) error {
	dec := json.NewDecoder(strings.NewReader(string(b)))
	return dec.Decode(v)
}
