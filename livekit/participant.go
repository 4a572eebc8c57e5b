package livekit

import (
	"encoding/json"
	"errors"
	"maps"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/livekit/protocol/auth"
	"github.com/livekit/protocol/livekit"
	"github.com/pion/webrtc/v4"
	"github.com/rs/zerolog"
	"google.golang.org/protobuf/proto"

	"github.com/focus-sfu/focus/focus"
	"github.com/focus-sfu/focus/rtc"
)

// Bounds on what one client may make the focus keep.
const (
	maxOps        = 4096 // queued operations before the participant is dropped
	maxPending    = 32   // add_track requests awaiting their media
	maxCandidates = 128  // remote candidates held until a description arrives
	maxDesired    = 1024 // explicit subscription choices
	maxSettings   = 1024 // track settings
	maxMetadata   = 64 << 10
	maxName       = 256
	maxAttributes = 64 << 10
)

// participant is one LiveKit client in a room: its signalling session,
// its two PeerConnections, and its core participant.
//
// Signalling requests, core events that need the PeerConnections, and
// timers all run on the participant's own goroutine (do), one at a
// time. What other goroutines read (the participant's info, its
// connection) is guarded by mu.
type participant struct {
	s        *Server
	roomName string
	room     *room // set by register, then fixed
	sid      string
	identity string
	grants   *auth.ClaimGrants
	expires  time.Time
	params   connectParams
	joinedAt time.Time
	log      zerolog.Logger

	part *focus.Participant
	pub  *webrtc.PeerConnection // the client offers; it publishes here
	sub  *webrtc.PeerConnection // the focus offers; the client receives here
	pubs rtc.Publications

	// The focus's data channels on the subscriber connection, which carry
	// the other participants' data packets to the client.
	subReliable, subLossy *webrtc.DataChannel

	opsMu     sync.Mutex
	ops       []func()
	opsClosed bool
	wake      chan struct{}
	stop      chan struct{}
	closeOnce sync.Once
	receivers sync.WaitGroup // OnTrack handlers

	mu         sync.Mutex
	conn       *signalConn // nil while the client is away
	state      livekit.ParticipantInfo_State
	reason     livekit.DisconnectReason
	version    uint32
	name       string
	metadata   string
	attributes map[string]string
	pending    []*pendingTrack // add_track requests waiting for their media, oldest first
	published  []*publishedTrack
	connected  bool // a PeerConnection has connected at least once
	closed     bool
	grace      *time.Timer
	locals     []*rtc.LocalTrack

	// Owned by the participant's goroutine.
	subs       map[string]*subscription // by track sid
	desired    map[string]bool          // explicit subscribe (true) or unsubscribe (false), by track sid
	settings   map[string]*livekit.UpdateTrackSettings
	offerOut   bool   // a subscriber offer awaits its answer
	wantOffer  bool   // renegotiate once it is answered
	restartICE bool   // the next offer restarts ICE
	offerID    uint32 // of the last subscriber offer
	pubCands   []webrtc.ICECandidateInit
	subCands   []webrtc.ICECandidateInit
	speaking   map[string]bool // participant sids the client was told are speaking
}

// pendingTrack is an add_track request waiting for its media.
type pendingTrack struct {
	cid  string
	info *livekit.TrackInfo
}

// publishedTrack is one of the participant's tracks that is in the core.
type publishedTrack struct {
	info       *livekit.TrackInfo
	subscribed bool   // track_subscribed was sent
	quality    []bool // the layers last reported to the client
	qualitySet bool
}

// newParticipant makes the participant's core participant and
// PeerConnections. It is not yet in its room.
func (s *Server) newParticipant(c *claims, params connectParams, remote string, log zerolog.Logger) (*participant, error) {
	sid := newSID("PA_")
	// A session before it joins: the others must not take it for a
	// foreign participant.
	s.setSession(focus.ParticipantID(sid), true)
	part, err := s.opts.SFU.Join(conferenceID(c.room), focus.ParticipantInfo{
		ID:       focus.ParticipantID(sid),
		Identity: c.identity,
		Remote:   remote,
	})
	if err != nil {
		s.setSession(focus.ParticipantID(sid), false)
		return nil, err
	}
	p := &participant{
		s:          s,
		roomName:   c.room,
		sid:        sid,
		identity:   c.identity,
		grants:     c.grants,
		expires:    c.expires,
		params:     params,
		joinedAt:   time.Now(),
		log:        log.With().Str("participant", sid).Logger(),
		part:       part,
		wake:       make(chan struct{}, 1),
		stop:       make(chan struct{}),
		state:      livekit.ParticipantInfo_JOINING,
		name:       c.grants.Name,
		metadata:   c.grants.Metadata,
		attributes: maps.Clone(c.grants.Attributes),
		subs:       make(map[string]*subscription),
		desired:    make(map[string]bool),
		settings:   make(map[string]*livekit.UpdateTrackSettings),
	}
	if err := p.setupPeerConnections(); err != nil {
		part.Leave()
		s.setSession(part.ID(), false)
		if p.pub != nil {
			_ = p.pub.Close()
		}
		if p.sub != nil {
			_ = p.sub.Close()
		}
		return nil, err
	}
	return p, nil
}

func (p *participant) setupPeerConnections() error {
	pub, err := p.s.opts.Engine.NewPeerConnection()
	if err != nil {
		return err
	}
	p.pub = pub.PeerConnection
	sub, err := p.s.opts.Engine.NewPeerConnection()
	if err != nil {
		return err
	}
	p.sub = sub.PeerConnection
	p.part.SetBandwidthEstimator(sub.Estimator())
	ordered, unordered, none := true, false, uint16(0)
	if p.subReliable, err = p.sub.CreateDataChannel(reliableLabel, &webrtc.DataChannelInit{Ordered: &ordered}); err != nil {
		return err
	}
	if p.subLossy, err = p.sub.CreateDataChannel(lossyLabel, &webrtc.DataChannelInit{Ordered: &unordered, MaxRetransmits: &none}); err != nil {
		return err
	}
	p.pub.OnICECandidate(func(c *webrtc.ICECandidate) { p.sendCandidate(c, livekit.SignalTarget_PUBLISHER) })
	p.sub.OnICECandidate(func(c *webrtc.ICECandidate) { p.sendCandidate(c, livekit.SignalTarget_SUBSCRIBER) })
	p.pub.OnConnectionStateChange(func(st webrtc.PeerConnectionState) { p.connectionState(livekit.SignalTarget_PUBLISHER, st) })
	p.sub.OnConnectionStateChange(func(st webrtc.PeerConnectionState) { p.connectionState(livekit.SignalTarget_SUBSCRIBER, st) })
	p.pub.OnTrack(p.onTrack)
	p.pub.OnDataChannel(p.onDataChannel)
	return nil
}

// canSubscribe reports the subscribe grant; a participant without it
// uses its publisher connection as the primary one.
func (p *participant) canSubscribe() bool { return p.grants.Video.GetCanSubscribe() }

func (p *participant) hidden() bool { return p.grants.Video.Hidden }

// send queues a response on the participant's current connection. It is
// dropped while the client is away: a resume brings the client up to
// date.
func (p *participant) send(res *livekit.SignalResponse) {
	p.mu.Lock()
	c := p.conn
	p.mu.Unlock()
	if c != nil {
		c.send(res)
	}
}

// do runs fn on the participant's goroutine, after what is queued.
func (p *participant) do(fn func()) {
	p.opsMu.Lock()
	if p.opsClosed {
		p.opsMu.Unlock()
		return
	}
	if len(p.ops) >= maxOps {
		p.opsClosed = true
		p.opsMu.Unlock()
		p.log.Warn().Int("queued", maxOps).Msg("participant is not keeping up; dropping it")
		p.closeAsync(livekit.DisconnectReason_UNKNOWN_REASON)
		return
	}
	p.ops = append(p.ops, fn)
	p.opsMu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// closeAsync closes the participant from a goroutine of its own, for
// callers that must not wait for it.
func (p *participant) closeAsync(reason livekit.DisconnectReason) {
	p.s.wg.Add(1)
	go func() {
		defer p.s.wg.Done()
		p.close(reason, true)
	}()
}

func (p *participant) nextOp() func() {
	p.opsMu.Lock()
	defer p.opsMu.Unlock()
	if len(p.ops) == 0 || p.opsClosed {
		return nil
	}
	fn := p.ops[0]
	p.ops[0] = nil
	p.ops = p.ops[1:]
	return fn
}

// run is the participant's goroutine.
func (p *participant) run() {
	defer p.s.wg.Done()
	refresh := time.NewTicker(refreshInterval)
	defer refresh.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-refresh.C:
			p.sendRefreshToken()
		case <-p.wake:
			for fn := p.nextOp(); fn != nil; fn = p.nextOp() {
				fn()
			}
		}
	}
}

// start attaches the client's first connection: the join response, the
// others told, and the first subscriber offer.
func (p *participant) start(conn *signalConn) {
	r := p.room
	r.bmu.Lock()
	p.mu.Lock()
	p.conn = conn
	p.mu.Unlock()
	conn.send(&livekit.SignalResponse{Message: &livekit.SignalResponse_Join{Join: p.joinResponse()}})
	if !p.hidden() {
		res := updateResponse(p.info())
		for _, o := range p.s.members(r) {
			if o != p {
				o.send(res)
			}
		}
	}
	r.bmu.Unlock()
	p.log.Info().Str("identity", p.identity).Str("sdk", p.params.sdk).Str("version", p.params.version).Msg("participant joined")

	p.s.wg.Add(1)
	go p.run()
	p.do(func() {
		p.sendRefreshToken()
		// Whoever speaks already; nothing when nobody does.
		p.speakersChanged(p.part.Conference().Speakers())
		if p.canSubscribe() {
			p.subscribeExisting()
			// The first offer carries the data channels even with no
			// track: the client waits for its subscriber connection.
			p.negotiate(false)
		}
	})
}

func (p *participant) joinResponse() *livekit.JoinResponse {
	s, r := p.s, p.room
	info := &livekit.ServerInfo{
		Edition:  livekit.ServerInfo_Standard,
		Version:  s.opts.Version,
		Protocol: ProtocolVersion,
		NodeId:   "focus",
	}
	ice := make([]*livekit.ICEServer, 0, len(s.opts.ICEServers))
	for _, is := range s.opts.ICEServers {
		ice = append(ice, &livekit.ICEServer{Urls: is.URLs, Username: is.Username, Credential: is.Credential})
	}
	others := s.others(r, p)
	return &livekit.JoinResponse{
		Room:                 r.proto(len(others) + 1),
		Participant:          p.info(),
		OtherParticipants:    others,
		ServerVersion:        s.opts.Version,
		IceServers:           ice,
		SubscriberPrimary:    p.canSubscribe(),
		PingTimeout:          pingTimeout,
		PingInterval:         pingInterval,
		ServerInfo:           info,
		SifTrailer:           r.trailer,
		EnabledPublishCodecs: enabledCodecs(),
		// The client may open its publisher connection right away, so
		// its first track publishes sooner.
		FastPublish: p.grants.Video.GetCanPublish(),
	}
}

// info describes the participant as the clients see it.
func (p *participant) info() *livekit.ParticipantInfo {
	p.mu.Lock()
	defer p.mu.Unlock()
	pi := &livekit.ParticipantInfo{
		Sid:              p.sid,
		Identity:         p.identity,
		State:            p.state,
		Metadata:         p.metadata,
		JoinedAt:         p.joinedAt.Unix(),
		JoinedAtMs:       p.joinedAt.UnixMilli(),
		Name:             p.name,
		Version:          p.version,
		Permission:       p.grants.Video.ToPermission(),
		IsPublisher:      len(p.published) > 0,
		Kind:             p.grants.GetParticipantKind(),
		Attributes:       maps.Clone(p.attributes),
		DisconnectReason: p.reason,
		ClientProtocol:   p.params.clientProtocol,
	}
	for _, t := range p.published {
		pi.Tracks = append(pi.Tracks, proto.CloneOf(t.info))
	}
	return pi
}

// changed bumps the info's version; mu must be held.
func (p *participant) changedLocked() { p.version++ }

// readLoop reads the client's requests until the connection ends.
func (p *participant) readLoop(conn *signalConn) {
	for {
		req, err := conn.read()
		if err != nil {
			switch {
			case errors.Is(err, errFlood):
				p.log.Warn().Int("rate", requestRate).Msg("signalling flood; disconnecting the participant")
				conn.close(leaveResponse(livekit.DisconnectReason_UNKNOWN_REASON, livekit.LeaveRequest_DISCONNECT), websocket.StatusPolicyViolation, "too many signal requests")
				p.close(livekit.DisconnectReason_UNKNOWN_REASON, false)
			case errors.Is(err, errMalformed), errors.Is(err, errFrameType), errors.Is(err, errFrameTooBig):
				p.log.Warn().Err(err).Msg("closing the signalling connection")
				conn.close(nil, websocket.StatusInvalidFramePayloadData, "malformed signal request")
			default:
				p.log.Debug().Err(err).Msg("signalling connection ended")
				conn.abort()
			}
			p.signalClosed(conn)
			return
		}
		switch m := req.Message.(type) {
		case nil:
			p.log.Debug().Msg("ignoring a signal request of an unknown type")
		case *livekit.SignalRequest_Ping:
			conn.send(&livekit.SignalResponse{Message: &livekit.SignalResponse_Pong{Pong: time.Now().UnixMilli()}})
		case *livekit.SignalRequest_PingReq:
			conn.send(&livekit.SignalResponse{Message: &livekit.SignalResponse_PongResp{PongResp: &livekit.Pong{
				LastPingTimestamp: m.PingReq.GetTimestamp(),
				Timestamp:         time.Now().UnixMilli(),
			}}})
		default:
			p.do(func() { p.handle(req) })
		}
	}
}

// handle applies one request; it runs on the participant's goroutine.
func (p *participant) handle(req *livekit.SignalRequest) {
	if p.isClosed() {
		return
	}
	switch m := req.Message.(type) {
	case *livekit.SignalRequest_Offer:
		p.onOffer(m.Offer)
	case *livekit.SignalRequest_Answer:
		p.onAnswer(m.Answer)
	case *livekit.SignalRequest_Trickle:
		p.onTrickle(m.Trickle)
	case *livekit.SignalRequest_AddTrack:
		p.onAddTrack(m.AddTrack)
	case *livekit.SignalRequest_Mute:
		p.onMute(m.Mute)
	case *livekit.SignalRequest_Subscription:
		p.onSubscription(m.Subscription)
	case *livekit.SignalRequest_TrackSetting:
		p.onTrackSetting(m.TrackSetting)
	case *livekit.SignalRequest_Leave:
		p.log.Info().Str("reason", m.Leave.GetReason().String()).Msg("client left")
		p.close(livekit.DisconnectReason_CLIENT_INITIATED, false)
	case *livekit.SignalRequest_SyncState:
		p.onSyncState(m.SyncState)
	case *livekit.SignalRequest_UpdateMetadata:
		p.onUpdateMetadata(m.UpdateMetadata)
	case *livekit.SignalRequest_UpdateAudioTrack:
		p.onUpdateAudioTrack(m.UpdateAudioTrack)
	case *livekit.SignalRequest_UpdateVideoTrack:
		p.onUpdateVideoTrack(m.UpdateVideoTrack)
	case *livekit.SignalRequest_PublishDataTrackRequest:
		p.requestResponse(0, livekit.RequestResponse_UNSUPPORTED_TYPE, "data tracks are not supported",
			&livekit.RequestResponse_PublishDataTrack{PublishDataTrack: m.PublishDataTrackRequest})
	case *livekit.SignalRequest_UnpublishDataTrackRequest:
		p.requestResponse(0, livekit.RequestResponse_UNSUPPORTED_TYPE, "data tracks are not supported",
			&livekit.RequestResponse_UnpublishDataTrack{UnpublishDataTrack: m.UnpublishDataTrackRequest})
	case *livekit.SignalRequest_StoreDataBlobRequest:
		p.requestResponse(m.StoreDataBlobRequest.GetRequestId(), livekit.RequestResponse_UNSUPPORTED_TYPE, "data blobs are not supported", nil)
	case *livekit.SignalRequest_GetDataBlobRequest:
		p.requestResponse(m.GetDataBlobRequest.GetRequestId(), livekit.RequestResponse_UNSUPPORTED_TYPE, "data blobs are not supported", nil)
	default:
		// update_layers (deprecated), subscription_permission (everyone
		// may subscribe to everything), simulate, update_data_subscription.
		p.log.Debug().Str("request", requestName(req)).Msg("ignoring an unsupported signal request")
	}
}

// requestResponse answers a request that carried a request ID or needs a
// refusal the client can see.
func (p *participant) requestResponse(id uint32, reason livekit.RequestResponse_Reason, msg string, request any) {
	rr := &livekit.RequestResponse{RequestId: id, Reason: reason, Message: msg}
	switch r := request.(type) {
	case *livekit.RequestResponse_AddTrack:
		rr.Request = r
	case *livekit.RequestResponse_Mute:
		rr.Request = r
	case *livekit.RequestResponse_UpdateMetadata:
		rr.Request = r
	case *livekit.RequestResponse_Trickle:
		rr.Request = r
	case *livekit.RequestResponse_PublishDataTrack:
		rr.Request = r
	case *livekit.RequestResponse_UnpublishDataTrack:
		rr.Request = r
	}
	p.send(&livekit.SignalResponse{Message: &livekit.SignalResponse_RequestResponse{RequestResponse: rr}})
}

// onTrickle adds a remote candidate, or holds it until the connection
// has the description it belongs to.
func (p *participant) onTrickle(t *livekit.TrickleRequest) {
	var init webrtc.ICECandidateInit
	if err := json.Unmarshal([]byte(t.GetCandidateInit()), &init); err != nil {
		p.log.Debug().Err(err).Msg("ignoring a malformed candidate")
		return
	}
	pc, held, wait := p.pub, &p.pubCands, false
	if t.GetTarget() == livekit.SignalTarget_SUBSCRIBER {
		// While an offer is out, the client's candidates may belong to its
		// answer (after an ICE restart, to new credentials), which can
		// overtake them: they wait for it.
		pc, held, wait = p.sub, &p.subCands, p.offerOut
	}
	if pc.RemoteDescription() == nil || wait {
		if len(*held) < maxCandidates {
			*held = append(*held, init)
		}
		return
	}
	if err := pc.AddICECandidate(init); err != nil {
		p.log.Debug().Err(err).Str("candidate", init.Candidate).Msg("rejected a remote candidate")
	}
}

// flushCandidates adds the candidates held for pc.
func (p *participant) flushCandidates(pc *webrtc.PeerConnection, held *[]webrtc.ICECandidateInit) {
	for _, c := range *held {
		if err := pc.AddICECandidate(c); err != nil {
			p.log.Debug().Err(err).Str("candidate", c.Candidate).Msg("rejected a remote candidate")
		}
	}
	*held = nil
}

// sendCandidate trickles one of the focus's candidates to the client.
func (p *participant) sendCandidate(c *webrtc.ICECandidate, target livekit.SignalTarget) {
	if c == nil {
		return // gathering is complete; LiveKit sends no end marker
	}
	b, err := json.Marshal(c.ToJSON())
	if err != nil {
		return
	}
	p.send(&livekit.SignalResponse{Message: &livekit.SignalResponse_Trickle{Trickle: &livekit.TrickleRequest{
		CandidateInit: string(b),
		Target:        target,
	}}})
}

// connectionState follows the PeerConnections: the primary one
// connecting makes the participant active; a failed one with the client
// away ends the participant without waiting for the reconnect window.
func (p *participant) connectionState(target livekit.SignalTarget, st webrtc.PeerConnectionState) {
	p.log.Debug().Str("pc", target.String()).Str("state", st.String()).Msg("connection state")
	primary := target == livekit.SignalTarget_SUBSCRIBER
	if !p.canSubscribe() {
		primary = target == livekit.SignalTarget_PUBLISHER
	}
	switch st {
	case webrtc.PeerConnectionStateConnected:
		p.mu.Lock()
		p.connected = true
		changed := primary && p.state != livekit.ParticipantInfo_ACTIVE && !p.closed
		if changed {
			p.state = livekit.ParticipantInfo_ACTIVE
			p.changedLocked()
		}
		p.mu.Unlock()
		if changed {
			p.s.broadcast(p.room, p, true)
		}
	case webrtc.PeerConnectionStateFailed:
		p.mu.Lock()
		away := p.conn == nil && !p.closed
		p.mu.Unlock()
		if away {
			p.log.Info().Str("pc", target.String()).Msg("connection failed while the client is away")
			p.closeAsync(livekit.DisconnectReason_CONNECTION_TIMEOUT)
		}
	}
}

// joined marks the participant as having negotiated.
func (p *participant) joined() {
	p.mu.Lock()
	changed := p.state == livekit.ParticipantInfo_JOINING
	if changed {
		p.state = livekit.ParticipantInfo_JOINED
		p.changedLocked()
	}
	p.mu.Unlock()
	if changed {
		p.s.broadcast(p.room, p, false)
	}
}

// sendRefreshToken gives the client a fresh token, so that a resume
// after its first token expired still authenticates. It keeps the first
// token's expiry when that is further away, as LiveKit does.
func (p *participant) sendRefreshToken() {
	valid := refreshMinValidity
	if rem := time.Until(p.expires); rem > valid {
		valid = rem
	}
	p.mu.Lock()
	name, metadata, attrs := p.name, p.metadata, maps.Clone(p.attributes)
	p.mu.Unlock()
	at := auth.NewAccessToken(p.s.opts.APIKey, p.s.opts.APISecret).
		SetIdentity(p.identity).
		SetName(name).
		SetKind(p.grants.GetParticipantKind()).
		SetValidFor(valid).
		SetMetadata(metadata).
		SetAttributes(attrs).
		SetVideoGrant(p.grants.Video.Clone())
	jwt, err := at.ToJWT()
	if err != nil {
		p.log.Warn().Err(err).Msg("mint a refresh token")
		return
	}
	p.send(&livekit.SignalResponse{Message: &livekit.SignalResponse_RefreshToken{RefreshToken: jwt}})
}

func (p *participant) isClosed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed
}

// canResume reports whether the participant is still there to resume.
func (p *participant) canResume() bool { return !p.isClosed() }

// signalClosed handles the end of the client's connection conn. A
// participant whose media never connected cannot be resumed by the
// client (it joins afresh), so it goes at once; the others wait for the
// reconnect window.
func (p *participant) signalClosed(conn *signalConn) {
	p.mu.Lock()
	if p.conn != conn || p.closed {
		p.mu.Unlock()
		return
	}
	p.conn = nil
	connected := p.connected
	if connected {
		window := p.s.opts.ReconnectWindow
		p.grace = time.AfterFunc(window, func() {
			p.do(func() {
				p.mu.Lock()
				expired := p.conn == nil
				p.mu.Unlock()
				if expired {
					p.log.Info().Dur("window", window).Msg("the client did not come back")
					p.close(livekit.DisconnectReason_SIGNAL_CLOSE, false)
				}
			})
		})
	}
	p.mu.Unlock()
	if !connected {
		p.log.Info().Msg("signalling closed before media connected; the participant leaves")
		p.close(livekit.DisconnectReason_SIGNAL_CLOSE, false)
		return
	}
	p.log.Info().Dur("window", p.s.opts.ReconnectWindow).Msg("signalling dropped; waiting for the client to resume")
}

// resume attaches the client's new connection after a drop: the
// reconnect response, the room as it is now, and an ICE restart of the
// subscriber connection (the client restarts its publisher one).
func (p *participant) resume(conn *signalConn) bool {
	r := p.room
	r.bmu.Lock()
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		r.bmu.Unlock()
		return false
	}
	old := p.conn
	p.conn = conn
	if p.grace != nil {
		p.grace.Stop()
		p.grace = nil
	}
	p.mu.Unlock()
	if old != nil {
		old.close(nil, websocket.StatusNormalClosure, "resumed on another connection")
	}
	ice := make([]*livekit.ICEServer, 0, len(p.s.opts.ICEServers))
	for _, is := range p.s.opts.ICEServers {
		ice = append(ice, &livekit.ICEServer{Urls: is.URLs, Username: is.Username, Credential: is.Credential})
	}
	conn.send(&livekit.SignalResponse{Message: &livekit.SignalResponse_Reconnect{Reconnect: &livekit.ReconnectResponse{
		IceServers: ice,
		ServerInfo: &livekit.ServerInfo{Edition: livekit.ServerInfo_Standard, Version: p.s.opts.Version, Protocol: ProtocolVersion, NodeId: "focus"},
	}}})
	// Everyone as they are now, the departed the client may have missed
	// first, then itself.
	infos := r.departedSince(time.Now().Add(-2*p.s.opts.ReconnectWindow), p.s.members(r))
	infos = append(infos, p.s.others(r, p)...)
	infos = append(infos, p.info())
	conn.send(updateResponse(infos...))
	r.bmu.Unlock()
	p.log.Info().Msg("participant resumed")
	p.do(func() {
		// Speaker and stream state updates sent while the client was
		// away went nowhere.
		p.resendSpeakers()
		p.resendStreamStates()
		// An offer sent while the client was away went nowhere.
		p.offerOut = false
		if p.canSubscribe() {
			p.negotiate(true)
		}
	})
	return true
}

// discard ends a participant that never joined its room.
func (p *participant) discard() { p.close(livekit.DisconnectReason_JOIN_FAILURE, false) }

// close ends the participant: it leaves the room and the core, its
// connections close, and the others are told. sendLeave tells the client
// why first. It is safe to call more than once and from any goroutine,
// the participant's own included.
func (p *participant) close(reason livekit.DisconnectReason, sendLeave bool) {
	p.closeOnce.Do(func() {
		p.mu.Lock()
		p.closed = true
		p.state = livekit.ParticipantInfo_DISCONNECTED
		p.reason = reason
		p.changedLocked()
		conn := p.conn
		p.conn = nil
		if p.grace != nil {
			p.grace.Stop()
		}
		p.mu.Unlock()

		p.opsMu.Lock()
		p.opsClosed = true
		p.ops = nil
		p.opsMu.Unlock()
		close(p.stop)

		p.s.unregister(p)
		if conn != nil {
			var leave *livekit.SignalResponse
			if sendLeave {
				leave = leaveResponse(reason, livekit.LeaveRequest_DISCONNECT)
			}
			conn.close(leave, websocket.StatusNormalClosure, reason.String())
		}
		info := p.info()
		p.part.Leave()
		p.s.setSession(p.part.ID(), false)
		if err := p.pub.Close(); err != nil {
			p.log.Debug().Err(err).Msg("close publisher connection")
		}
		if err := p.sub.Close(); err != nil {
			p.log.Debug().Err(err).Msg("close subscriber connection")
		}
		if r := p.room; r != nil {
			if !p.hidden() {
				r.departed(info)
			}
			p.s.broadcastLeft(r, p, info)
		}
		p.receivers.Wait()
		p.mu.Lock()
		locals := p.locals
		p.mu.Unlock()
		for _, lt := range locals {
			lt.Wait()
		}
		if p.room != nil {
			p.log.Info().Str("reason", reason.String()).Msg("participant left")
		}
	})
}
